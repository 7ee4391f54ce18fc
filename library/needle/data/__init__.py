"""Data loading: datasets, transforms, the mini-batch ``DataLoader`` and where data live.

- ``Dataset``, ``DataLoader`` (``data_basic``): indexing returns numpy arrays; the loader yields
  tuples of ``Tensor`` batches on a chosen device.
- ``RandomFlipHorizontal``, ``RandomCrop`` (``data_transforms``): augmentations of ``H x W x C``
  images driven by numpy's global generator.
- ``NDArrayDataset``, ``MNISTDataset``, ``CIFAR10Dataset``, and the Penn Treebank helpers
  ``Dictionary``, ``Corpus``, ``batchify``, ``get_batch`` (``datasets``).
- ``mnist_paths``, ``fashion_mnist_paths``, ``ptb_dir``, ``cifar10_dir`` (``locate``): the files
  to pass to those loaders on this machine (``$NEEDLE_DATA``, downloads, the shared folder, or
  the embedded samples). ``python -m needle.data.download NAME`` fetches the full sets.
"""

from .data_basic import DataLoader, Dataset
from .data_transforms import RandomCrop, RandomFlipHorizontal, Transform
from .datasets import (
    CIFAR10Dataset,
    Corpus,
    Dictionary,
    MNISTDataset,
    NDArrayDataset,
    batchify,
    get_batch,
    read_idx,
)
from .locate import (
    DataNotFoundError,
    DataPath,
    cifar10_dir,
    fashion_mnist_paths,
    mnist_paths,
    ptb_dir,
)

__all__ = [
    "CIFAR10Dataset",
    "Corpus",
    "DataLoader",
    "DataNotFoundError",
    "DataPath",
    "Dataset",
    "Dictionary",
    "MNISTDataset",
    "NDArrayDataset",
    "RandomCrop",
    "RandomFlipHorizontal",
    "Transform",
    "batchify",
    "cifar10_dir",
    "fashion_mnist_paths",
    "get_batch",
    "mnist_paths",
    "ptb_dir",
    "read_idx",
]
