"""MNIST-style image data sets (MNIST, Fashion-MNIST) read from IDX files.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header followed by the raw
values in row-major order::

    bytes 0-1  zero
    byte  2    value type (0x08 = uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
               0x0E float64)
    byte  3    number of dimensions d
    then       d uint32 sizes (images: count, rows, cols; labels: count)
    then       the values

so MNIST's magic numbers 2051 (0x00000803) and 2049 (0x00000801) say "uint8, 3-D" and
"uint8, 1-D". The files are usually gzip-compressed (``.gz``); both forms are read.
"""

from __future__ import annotations

import gzip
import os
from typing import Callable, Sequence

import numpy as np

from ..data_basic import Dataset

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into a numpy array of its shape and type.

    Args:
        path: an ``*-idx?-ubyte`` file, optionally ``.gz``.

    Returns:
        e.g. MNIST images ``(N, 28, 28)`` uint8, labels ``(N,)`` uint8.

    Raises:
        ValueError: the file is not IDX, or is shorter/longer than its header says.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (header bytes {raw[:4].hex()})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes of data) "
            f"but the file has {len(raw) - header_size}; is it truncated?"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    # Native byte order and a writable array the caller owns.
    return values.astype(dtype.newbyteorder("="))


class MNISTDataset(Dataset):
    """MNIST (or Fashion-MNIST) images with their labels, read from IDX files.

    Images are scaled to float32 in ``[0, 1]`` (``pixel / 255``) and kept as ``H x W x 1``
    arrays, the layout the transforms in ``data_transforms`` expect. That layout is also what
    ``__getitem__`` returns (the course left the returned shape unspecified); models that want
    784-vectors flatten the batch, e.g. ``X.reshape((X.shape[0], 784))`` or ``nn.Flatten()``.

    Args:
        image_filename: path of the ``*-images-idx3-ubyte[.gz]`` file.
        label_filename: path of the ``*-labels-idx1-ubyte[.gz]`` file.
        transforms: applied to each image (``(28, 28, 1)`` array) when it is read.

    Shape:
        - ``ds[i]`` -> ``(image (28, 28, 1) float32, label)`` with a uint8 label.
        - ``ds[slice]`` or ``ds[index_array]`` -> ``(images (k, 28, 28, 1), labels (k,))``.

    Example:
        >>> train = MNISTDataset(*ndl.data.mnist_paths("train"))
        >>> image, label = train[0]
    """

    def __init__(
        self,
        image_filename: str,
        label_filename: str,
        transforms: Sequence[Callable] | None = None,
    ):
        ### BEGIN YOUR SOLUTION (hw2)
        super().__init__(transforms)
        images = read_idx(image_filename)
        labels = read_idx(label_filename)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, H, W) and labels (N,), got {images.shape} from "
                f"{image_filename} and {labels.shape} from {label_filename}"
            )
        self.images = (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
        self.labels = labels
        ### END YOUR SOLUTION

    def __getitem__(self, index) -> tuple:
        ### BEGIN YOUR SOLUTION (hw2)
        images, labels = self.images[index], self.labels[index]
        if self.transforms:
            if images.ndim == 3:  # an int index selected one H x W x 1 image
                images = self.apply_transforms(images)
            elif len(images):
                images = np.stack([self.apply_transforms(image) for image in images])
        return images, labels
        ### END YOUR SOLUTION

    def __len__(self) -> int:
        ### BEGIN YOUR SOLUTION (hw2)
        return self.images.shape[0]
        ### END YOUR SOLUTION
