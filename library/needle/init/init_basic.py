"""Basic tensor constructors: random, constant and one-hot tensors.

Every random draw goes through numpy's global generator (``np.random.rand`` / ``randn``,
called by the device), so ``np.random.seed(k)`` before building a model fixes its parameters.
The order in which a model calls these functions is therefore part of its seeded behaviour.

All constructors return leaf Tensors with ``requires_grad=False`` unless asked otherwise, on
``device`` (default: ``default_device()``, the same device ``Tensor(...)`` uses).
"""

from __future__ import annotations

import numpy as np

import needle
from needle.backend_selection import BACKEND, default_device


def _device_or_default(device):
    return default_device() if device is None else device


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False):
    """Uniform samples from ``[low, high)``.

    Args:
        *shape: the tensor's shape, as separate ints.
        low, high: the interval.
        device: where the tensor lives (default ``default_device()``).
        dtype: element type (float32).
        requires_grad: whether the result is a trainable leaf.
    """
    device = _device_or_default(device)
    array = device.rand(*shape) * (high - low) + low
    return needle.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False):
    """Normal samples ``mean + std * N(0, 1)``."""
    device = _device_or_default(device)
    array = device.randn(*shape) * std + mean
    return needle.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    """A tensor filled with the value ``c``."""
    device = _device_or_default(device)
    array = device.full(shape, c, dtype=dtype)
    return needle.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of ones."""
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    """A tensor of zeros."""
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def randb(*shape, p=0.5, device=None, dtype="bool", requires_grad=False):
    """Bernoulli samples: 1 (True) with probability ``p``, i.e. where ``uniform <= p``.

    The NDArray backend stores float32 only, so there the mask holds 0.0 / 1.0 whatever
    ``dtype`` says; multiplying by it works the same on both backends.
    """
    device = _device_or_default(device)
    mask = device.rand(*shape) <= p
    if BACKEND == "nd":
        dtype = "float32"
        mask = mask.astype("float32")
    return needle.Tensor(mask, device=device, dtype=dtype, requires_grad=requires_grad)


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """Rows of the ``n x n`` identity matrix picked by the integer labels ``i``.

    Args:
        n: number of classes.
        i: labels, a Tensor or array of any shape holding integers in ``[0, n)``.

    Shape:
        ``i.shape + (n,)``.
    """
    device = _device_or_default(device)
    labels = i.numpy() if isinstance(i, needle.Tensor) else np.asarray(i)
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(
            f"one_hot: labels must lie in [0, {n}), got [{labels.min()}, {labels.max()}]"
        )
    # Set one entry per row rather than indexing an n x n identity matrix: for a 10,000-word
    # vocabulary the identity alone would be 400 MB.
    flat = labels.reshape(-1)
    rows = np.zeros((flat.size, n), dtype=np.float32)
    rows[np.arange(flat.size), flat] = 1.0
    array = rows.reshape(labels.shape + (n,))
    return needle.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros_like(array, *, device=None, requires_grad=False):
    """Zeros with the shape and dtype of ``array`` (on its device unless told otherwise)."""
    device = device if device else array.device
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    """Ones with the shape and dtype of ``array`` (on its device unless told otherwise)."""
    device = device if device else array.device
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)
