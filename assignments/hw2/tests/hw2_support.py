"""Helpers shared by hw2's public tests: inputs, numpy oracles and finite differences."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import needle as ndl
import numpy as np


def tensor(array, requires_grad=True) -> ndl.Tensor:
    return ndl.Tensor(np.asarray(array, dtype=np.float32), requires_grad=requires_grad)


def rand(*shape, low=-1.0, high=1.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed * 1000 + 31 * len(shape) + sum(shape))
    return rng.uniform(low, high, size=shape).astype(np.float32)


def numerical_gradients(f, arrays, eps=1e-5):
    """Central differences of the scalar ``f(*arrays)`` w.r.t. each array (float64)."""
    inputs = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for x in inputs:
        grad = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            saved = x[index]
            x[index] = saved + eps
            plus = f(*inputs)
            x[index] = saved - eps
            minus = f(*inputs)
            x[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def assert_close(got, expected, rtol=1e-5, atol=1e-5, what="result"):
    got = got.numpy() if isinstance(got, ndl.Tensor) else np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {got.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)


def logsumexp_np(z, axis=None, keepdims=False):
    top = np.max(z, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(z - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def softmax_loss_np(logits, labels):
    rows = np.arange(logits.shape[0])
    return np.mean(logsumexp_np(logits, axis=1) - logits[rows, labels])


def batchnorm_train_np(x, weight, bias, eps=1e-5):
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return weight * (x - mean) / np.sqrt(var + eps) + bias


def layernorm_np(x, weight, bias, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return weight * (x - mean) / np.sqrt(var + eps) + bias


def embedded_mnist_dir() -> Path:
    """The MNIST sample shipped inside needle (10,000 training and 10,000 test images)."""
    return Path(ndl.data.__file__).resolve().parent / "embedded" / "mnist"


def read_idx_oracle(path) -> np.ndarray:
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip'd IDX file (magic 0x0000 08 <ndim>)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def small_mnist(folder: Path, train: int = 300, test: int = 100) -> Path:
    """A small MNIST-format copy (first images of each split) written to ``folder``."""
    source = embedded_mnist_dir()
    for split, count in (("train", train), ("t10k", test)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte.gz"
            write_idx(folder / name, read_idx_oracle(source / name)[:count])
    return folder


def _norm_np(h, weight, bias, train, eps=1e-5):
    if train:
        return batchnorm_train_np(h, weight.reshape(-1), bias.reshape(-1), eps)
    # eval mode with fresh running statistics (mean 0, variance 1)
    return weight.reshape(-1) * h / math.sqrt(1 + eps) + bias.reshape(-1)


def residual_block_numpy(x, params, train=True):
    """numpy forward of ResidualBlock with dropout off; params in construction order."""
    W1, b1, g1, be1, W2, b2, g2, be2 = (np.asarray(p, dtype=np.float64) for p in params)
    inner = np.maximum(_norm_np(x @ W1 + b1, g1, be1, train), 0)
    return np.maximum(x + _norm_np(inner @ W2 + b2, g2, be2, train), 0)


def mlp_numpy(x, params, num_blocks, train=True):
    """numpy forward of MLPResNet with dropout off; params in construction order."""
    params = [p.numpy().astype(np.float64) for p in params]
    h = np.maximum(x @ params[0] + params[1], 0)
    for block in range(num_blocks):
        h = residual_block_numpy(h, params[2 + 8 * block : 10 + 8 * block], train)
    return h @ params[-2] + params[-1]
