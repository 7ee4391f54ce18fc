"""CIFAR-10 read from the "python version" batches (``cifar-10-batches-py``).

Each batch file is a Python pickle of a dict with (among others) ``b"data"``, a uint8 array of
shape ``(10000, 3072)`` whose rows are images stored plane by plane (1024 red values, then 1024
green, then 1024 blue, each plane 32 x 32 row-major), and ``b"labels"``, a list of 10000 ints
in 0-9. The training set is ``data_batch_1`` ... ``data_batch_5``, the test set ``test_batch``.
"""

from __future__ import annotations

import os
import pickle
from typing import Callable, Sequence

import numpy as np

from ..data_basic import Dataset

TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCHES = ("test_batch",)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches but refuses anything else.

    A pickle can name any Python callable and have it run while loading, so a tampered batch
    file could execute code. The real batches only need numpy's array reconstruction (and
    ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for ``bytes``), so only
    those names are allowed.
    """

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"CIFAR-10 batch refers to {module}.{name}, which a real batch never does; "
                "refusing to load it"
            )
        return super().find_class(module, name)


def load_batch(path: str | os.PathLike) -> dict:
    """Load one CIFAR-10 batch file as its dict (keys are ``bytes``, e.g. ``b"data"``)."""
    with open(path, "rb") as f:
        # The batches were pickled by Python 2: ``encoding="bytes"`` keeps str keys as bytes.
        return _BatchUnpickler(f, encoding="bytes").load()


class CIFAR10Dataset(Dataset):
    """The CIFAR-10 images (3 x 32 x 32 colour, 10 classes) with their labels.

    Args:
        base_folder: the ``cifar-10-batches-py`` folder (``ndl.data.cifar10_dir()`` finds it).
        train: the 50,000 training images (``data_batch_1..5``) if true, else the 10,000 test
            images (``test_batch``).
        p: unused; kept so that code written for the course's signature still runs.
        transforms: applied to each image; they see it as ``(32, 32, 3)`` (height, width,
            channels, the layout the transforms in ``data_transforms`` are written for) and the
            result is turned back to ``(3, 32, 32)``.

    Attributes:
        X: float32 ``(N, 3, 32, 32)``, pixel values divided by 255.
        y: uint8 ``(N,)`` labels.

    Shape:
        - ``ds[i]`` -> ``(image (3, 32, 32) float32, label)``.
        - ``ds[slice]`` or ``ds[index_array]`` -> ``(images (k, 3, 32, 32), labels (k,))``.
    """

    def __init__(
        self,
        base_folder: str,
        train: bool,
        p: float | None = 0.5,
        transforms: Sequence[Callable] | None = None,
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__(transforms)
        names = TRAIN_BATCHES if train else TEST_BATCHES
        batches = [load_batch(os.path.join(base_folder, name)) for name in names]
        data = np.concatenate([np.asarray(batch[b"data"], dtype=np.uint8) for batch in batches])
        labels = np.concatenate([np.asarray(batch[b"labels"]) for batch in batches])
        if data.shape != (len(labels), 3 * 32 * 32):
            raise ValueError(
                f"CIFAR-10 batches in {base_folder} hold data {data.shape} and "
                f"{len(labels)} labels; expected (N, 3072) and N"
            )
        self.X = (data.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
        self.y = labels.astype(np.uint8)
        ### END YOUR SOLUTION

    def __getitem__(self, index) -> tuple:
        ### BEGIN YOUR SOLUTION (hw4)
        images, labels = self.X[index], self.y[index]
        if self.transforms:
            # Transforms work on height x width x channels; the data are channels first.
            def transform(image):
                return self.apply_transforms(image.transpose(1, 2, 0)).transpose(2, 0, 1)

            if images.ndim == 3:
                images = transform(images)
            elif len(images):
                images = np.stack([transform(image) for image in images])
        return images, labels
        ### END YOUR SOLUTION

    def __len__(self) -> int:
        ### BEGIN YOUR SOLUTION (hw4)
        return self.X.shape[0]
        ### END YOUR SOLUTION
