"""The numpy reference backend: the executable spec of a needle kernel backend.

A backend is a narrow module of free functions on flat float32 buffers (``Array``). All layout
logic (shapes, strides, offsets, broadcasting, permutations) stays in Python's ``NDArray``; a
kernel only sees

- flat buffers, read from position 0, and
- for the three strided kernels (``compact``, ``ewise_setitem``, ``scalar_setitem``) a shape,
  strides counted in ELEMENTS (possibly negative or zero) and an offset into the buffer.

The C++ (``ndarray_backend_cpu``) and CUDA (``ndarray_backend_cuda``) backends export the same
names with the same meaning; when one of them disagrees with this file, this file is right.
Each docstring gives the kernel as a tiny pseudo-loop over flat indices.

Element-wise and reduction kernels assume their inputs are compact (row-major, offset 0) and the
sizes the docstring states; ``NDArray`` guarantees that before it calls them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__device_name__ = "cpu_numpy"
# The tiled matmul path is only taken by backends that export ``matmul_tiled``; this one does not.
__tile_size__ = 1

_ITEMSIZE = np.dtype(np.float32).itemsize


class Array:
    """A flat buffer of ``size`` float32 values (contents undefined until written)."""

    __slots__ = ("array",)

    def __init__(self, size: int):
        self.array = np.empty(size, dtype=np.float32)

    @property
    def size(self) -> int:
        return self.array.size

    def ptr(self) -> int:
        """The address of the first element (tests use it to check that views share memory)."""
        return self.array.ctypes.data


def _strided_view(
    a: Array, shape: Sequence[int], strides: Sequence[int], offset: int
) -> np.ndarray:
    """A numpy view of ``a`` with element ``[i0, i1, ...]`` at ``offset + sum(i_k * strides[k])``.

    numpy counts strides in bytes; needle counts them in elements. A view may step backwards
    (negative strides, as made by flip). numpy checks that every element lies in the buffer.
    """
    shape = tuple(shape)
    if 0 in shape:  # no element to read or write; the offset may point past the end
        return np.empty(shape, dtype=np.float32)
    return np.ndarray(
        shape,
        dtype=np.float32,
        buffer=a.array,
        offset=offset * _ITEMSIZE,
        strides=tuple(stride * _ITEMSIZE for stride in strides),
    )


def to_numpy(a: Array, shape: Sequence[int], strides: Sequence[int], offset: int) -> np.ndarray:
    """A new (owning, compact) numpy array holding the strided view of ``a``.

    for each index tuple (i0, ..., ik) in row-major order:
        result[i0, ..., ik] = a[offset + i0 * strides[0] + ... + ik * strides[k]]
    """
    return _strided_view(a, shape, strides, offset).copy()


def from_numpy(a: np.ndarray, out: Array) -> None:
    """Copy the values of numpy array ``a`` (read in row-major order) into ``out``.

    for i in range(a.size): out[i] = a.flat[i]
    """
    out.array[:] = np.asarray(a, dtype=np.float32).reshape(-1)


def fill(out: Array, val: float) -> None:
    """Set every element of the buffer to ``val``.

    for i in range(out.size): out[i] = val
    """
    out.array.fill(val)


def compact(
    a: Array, out: Array, shape: Sequence[int], strides: Sequence[int], offset: int
) -> None:
    """Gather the strided view of ``a`` into the compact (row-major) buffer ``out``.

    cnt = 0
    for each index tuple (i0, ..., ik) in row-major order over ``shape``:
        out[cnt] = a[offset + i0 * strides[0] + ... + ik * strides[k]]
        cnt += 1
    """
    out.array[:] = _strided_view(a, shape, strides, offset).reshape(-1)


def ewise_setitem(
    a: Array, out: Array, shape: Sequence[int], strides: Sequence[int], offset: int
) -> None:
    """Scatter the compact buffer ``a`` into the strided view of ``out`` ("compact in reverse").

    cnt = 0
    for each index tuple (i0, ..., ik) in row-major order over ``shape``:
        out[offset + i0 * strides[0] + ... + ik * strides[k]] = a[cnt]
        cnt += 1
    """
    view = _strided_view(out, shape, strides, offset)
    view[...] = a.array[: view.size].reshape(view.shape)


def scalar_setitem(
    size: int, val: float, out: Array, shape: Sequence[int], strides: Sequence[int], offset: int
) -> None:
    """Set the ``size`` elements of the strided view of ``out`` to ``val``.

    for each index tuple (i0, ..., ik) over ``shape``:
        out[offset + i0 * strides[0] + ... + ik * strides[k]] = val
    """
    _strided_view(out, shape, strides, offset)[...] = val


# ---- element-wise kernels: out[i] = f(a[i], b[i]) or f(a[i], val) for i in range(out.size) -----


def ewise_add(a: Array, b: Array, out: Array) -> None:
    """out[i] = a[i] + b[i]"""
    np.add(a.array, b.array, out=out.array)


def scalar_add(a: Array, val: float, out: Array) -> None:
    """out[i] = a[i] + val"""
    np.add(a.array, np.float32(val), out=out.array)


def ewise_mul(a: Array, b: Array, out: Array) -> None:
    """out[i] = a[i] * b[i]"""
    np.multiply(a.array, b.array, out=out.array)


def scalar_mul(a: Array, val: float, out: Array) -> None:
    """out[i] = a[i] * val"""
    np.multiply(a.array, np.float32(val), out=out.array)


def ewise_div(a: Array, b: Array, out: Array) -> None:
    """out[i] = a[i] / b[i]   (IEEE: x / 0 is +-inf or nan, no error)"""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(a.array, b.array, out=out.array)


def scalar_div(a: Array, val: float, out: Array) -> None:
    """out[i] = a[i] / val"""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(a.array, np.float32(val), out=out.array)


def ewise_power(a: Array, b: Array, out: Array) -> None:
    """out[i] = a[i] ** b[i]   (C's powf: a negative base with a fractional exponent gives nan)"""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.power(a.array, b.array, out=out.array)


def scalar_power(a: Array, val: float, out: Array) -> None:
    """out[i] = a[i] ** val"""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.power(a.array, np.float32(val), out=out.array)


def ewise_maximum(a: Array, b: Array, out: Array) -> None:
    """out[i] = max(a[i], b[i])"""
    np.maximum(a.array, b.array, out=out.array)


def scalar_maximum(a: Array, val: float, out: Array) -> None:
    """out[i] = max(a[i], val)"""
    np.maximum(a.array, np.float32(val), out=out.array)


def ewise_eq(a: Array, b: Array, out: Array) -> None:
    """out[i] = 1.0 if a[i] == b[i] else 0.0"""
    np.equal(a.array, b.array, out=out.array)


def scalar_eq(a: Array, val: float, out: Array) -> None:
    """out[i] = 1.0 if a[i] == val else 0.0"""
    np.equal(a.array, np.float32(val), out=out.array)


def ewise_ge(a: Array, b: Array, out: Array) -> None:
    """out[i] = 1.0 if a[i] >= b[i] else 0.0"""
    np.greater_equal(a.array, b.array, out=out.array)


def scalar_ge(a: Array, val: float, out: Array) -> None:
    """out[i] = 1.0 if a[i] >= val else 0.0"""
    np.greater_equal(a.array, np.float32(val), out=out.array)


def ewise_log(a: Array, out: Array) -> None:
    """out[i] = ln(a[i])   (ln 0 = -inf, ln of a negative number = nan)"""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(a.array, out=out.array)


def ewise_exp(a: Array, out: Array) -> None:
    """out[i] = e ** a[i]"""
    with np.errstate(over="ignore"):
        np.exp(a.array, out=out.array)


def ewise_tanh(a: Array, out: Array) -> None:
    """out[i] = tanh(a[i])"""
    np.tanh(a.array, out=out.array)


# ---- matmul and reductions ------------------------------------------------------------------


def matmul(a: Array, b: Array, out: Array, m: int, n: int, p: int) -> None:
    """out (m x p) = a (m x n) @ b (n x p), all compact row-major.

    for i in range(m):
        for j in range(p):
            out[i * p + j] = sum(a[i * n + k] * b[k * p + j] for k in range(n))
    """
    a_matrix = a.array[: m * n].reshape(m, n)
    b_matrix = b.array[: n * p].reshape(n, p)
    np.matmul(a_matrix, b_matrix, out=out.array[: m * p].reshape(m, p))


def reduce_max(a: Array, out: Array, reduce_size: int) -> None:
    """The maximum of each consecutive block of ``reduce_size`` elements.

    for i in range(out.size):
        out[i] = max(a[i * reduce_size + k] for k in range(reduce_size))
    """
    blocks = a.array[: out.size * reduce_size].reshape(out.size, reduce_size)
    np.max(blocks, axis=1, out=out.array)


def reduce_sum(a: Array, out: Array, reduce_size: int) -> None:
    """The sum of each consecutive block of ``reduce_size`` elements.

    for i in range(out.size):
        out[i] = sum(a[i * reduce_size + k] for k in range(reduce_size))
    """
    blocks = a.array[: out.size * reduce_size].reshape(out.size, reduce_size)
    np.sum(blocks, axis=1, out=out.array)
