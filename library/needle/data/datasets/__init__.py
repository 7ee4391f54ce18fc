"""Concrete data sets: in-memory arrays, MNIST-style IDX images, CIFAR-10 and Penn Treebank."""

from .cifar10_dataset import CIFAR10Dataset
from .mnist_dataset import MNISTDataset, read_idx
from .ndarray_dataset import NDArrayDataset
from .ptb_dataset import Corpus, Dictionary, batchify, get_batch

__all__ = [
    "CIFAR10Dataset",
    "Corpus",
    "Dictionary",
    "MNISTDataset",
    "NDArrayDataset",
    "batchify",
    "get_batch",
    "read_idx",
]
