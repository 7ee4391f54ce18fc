"""Datasets and the mini-batch loader.

A ``Dataset`` answers ``len(ds)`` and ``ds[index]`` where ``index`` is an int, a slice or an
array of ints, and returns a tuple of numpy arrays (one per field, e.g. ``(images, labels)``).
The ``DataLoader`` turns a dataset into an iterator of tuples of needle ``Tensor``s, one
mini-batch at a time.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..autograd import Tensor
from ..backend_selection import default_device


class Dataset:
    """An abstract data set: subclasses implement ``__getitem__`` and ``__len__``.

    ``__getitem__`` must accept an int, a slice or an array of ints, and return a tuple of numpy
    arrays whose first axis runs over the selected items (for an int index that axis is absent).
    The ``DataLoader`` asks for a whole batch with one array index, so a vectorised
    ``__getitem__`` makes loading fast.

    Args:
        transforms: callables applied in order to each example (see ``apply_transforms``).
    """

    def __init__(self, transforms: Sequence[Callable] | None = None):
        self.transforms = transforms

    def __getitem__(self, index) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def apply_transforms(self, x):
        """Apply ``self.transforms`` to one example ``x``, in order."""
        if self.transforms is not None:
            for transform in self.transforms:
                x = transform(x)
        return x


class DataLoader:
    r"""Iterate over a dataset in mini-batches of ``Tensor``\ s.

    The batches follow ``np.array_split`` of the example order at multiples of ``batch_size``,
    so every batch has ``batch_size`` examples except possibly a smaller last one. With
    ``shuffle=True`` each ``iter(loader)`` (each epoch) draws a fresh order with one call to
    ``np.random.permutation(len(dataset))`` from numpy's global generator; seeded code relies
    on exactly this call.

    Args:
        dataset: a ``Dataset`` (or anything with ``len`` and array indexing).
        batch_size: examples per batch (the last batch may be smaller).
        shuffle: draw a new random order at the start of every iteration.
        device: where the batch tensors are created; default ``ndl.default_device()``, the
            same device ``init.*`` and ``nn`` modules use, so batches and parameters can meet in
            one op without a copy. (The course created them on ``cpu_numpy`` while parameters
            lived on ``cpu``, and training code had to re-wrap every batch.)
        dtype: dtype of every batch tensor (labels included; needle's NDArray is float32 only).

    Yields:
        a tuple with one ``Tensor`` per dataset field, e.g. ``(X, y)``, each of shape
        ``(batch, ...)``; they do not require gradients.

    Example:
        >>> loader = DataLoader(MNISTDataset(*mnist_paths("train")), batch_size=100, shuffle=True)
        >>> for X, y in loader:   # X: (100, 28, 28, 1), y: (100,)
        ...     ...
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = 1,
        shuffle: bool = False,
        device=None,
        dtype: str = "float32",
    ):
        if batch_size is None or int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.device = device if device is not None else default_device()
        self.dtype = dtype
        if not self.shuffle:
            n = len(dataset)
            self.ordering = np.array_split(np.arange(n), range(self.batch_size, n, self.batch_size))

    def __len__(self) -> int:
        """Number of batches per epoch."""
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> DataLoader:
        ### BEGIN YOUR SOLUTION (hw2)
        if self.shuffle:
            n = len(self.dataset)
            order = np.random.permutation(n)
            self.ordering = np.array_split(order, range(self.batch_size, n, self.batch_size))
        self._next_batch = 0
        return self
        ### END YOUR SOLUTION

    def __next__(self) -> tuple[Tensor, ...]:
        ### BEGIN YOUR SOLUTION (hw2)
        if self._next_batch >= len(self.ordering):
            raise StopIteration
        indices = self.ordering[self._next_batch]
        self._next_batch += 1
        # One array index per batch: the dataset gathers all examples with a single numpy
        # fancy-indexing call instead of a Python loop over examples.
        fields = self.dataset[indices]
        if not isinstance(fields, tuple):
            fields = (fields,)
        return tuple(
            Tensor(np.asarray(field), device=self.device, dtype=self.dtype, requires_grad=False)
            for field in fields
        )
        ### END YOUR SOLUTION
