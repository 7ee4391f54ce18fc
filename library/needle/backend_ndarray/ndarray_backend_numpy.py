"""The numpy reference backend: the executable spec of a needle kernel backend.

A backend is a narrow module of free functions on flat float32 buffers (``Array``). All layout
logic (shapes, strides, offsets, broadcasting, permutations) stays in Python's ``NDArray``; a
kernel only sees

- flat buffers, read from position 0, and
- for the three strided kernels (``compact``, ``ewise_setitem``, ``scalar_setitem``) a shape,
  strides counted in ELEMENTS (possibly negative or zero) and an offset into the buffer.

The C++ (``ndarray_backend_cpu``) and CUDA (``ndarray_backend_cuda``) backends export the same
names with the same meaning; when one of them disagrees with this file, this file is right.
Each docstring gives the kernel as a tiny pseudo-loop over flat indices. ``KERNELS``, at the end,
lists every kernel (name, kind, parameters and a numpy oracle of its meaning): the one table the
compiled backends (``src/kernel_list.h``) and the contract test (``test_kernel_contract.py``)
follow.

Element-wise and reduction kernels assume their inputs are compact (row-major, offset 0) and the
sizes the docstring states; ``NDArray`` guarantees that before it calls them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


# ---- the kernel table -----------------------------------------------------------------------
#
# Every kernel of the backend contract, in one place. The C++ and CUDA modules register theirs
# from src/kernel_list.h, which mirrors this table, and tests/test_kernel_contract.py checks
# every backend against each entry's ``oracle``: numpy code written from the kernel's meaning,
# independent of the functions above.

KernelKind = Literal[
    "fill",
    "gather",
    "scatter",
    "map",
    "zip",
    "zip_strided",
    "scalar",
    "reduce",
    "matmul",
    "matmul_strided",
    "reduce_columns",
]

_STRIDED = ("shape", "strides", "offset")
# The parameters of each kind of kernel (a kind's kernels differ only in their math).
KERNEL_ARGS: dict[str, tuple[str, ...]] = {
    "fill": ("out", "val"),
    "gather": ("a", "out", *_STRIDED),
    "scatter": ("a", "out", *_STRIDED),  # scalar_setitem: ("size", "val", "out", *_STRIDED)
    "map": ("a", "out"),
    "zip": ("a", "b", "out"),
    "zip_strided": ("a", "b", "out", *_STRIDED),
    "scalar": ("a", "val", "out"),
    "reduce": ("a", "out", "reduce_size"),
    "matmul": ("a", "b", "out", "m", "n", "p"),
    "matmul_strided": ("a", "b", "out", *_STRIDED, "split", "p"),
    "reduce_columns": ("a", "out", "reduce_size"),
}


@dataclass(frozen=True)
class Kernel:
    """One kernel of the backend contract.

    Kinds (the loop family; the C++ and CUDA backends write each family once):

    - ``fill``: every element of ``out``;
    - ``gather``: a strided view (``shape``, ``strides``, ``offset``) of ``a`` into compact ``out``;
    - ``scatter``: compact ``a`` (or the scalar ``val``) into a strided view of ``out``;
    - ``map`` / ``zip`` / ``scalar``: ``out[i] = f(a[i])`` / ``f(a[i], b[i])`` / ``f(a[i], val)``;
    - ``zip_strided``: ``out[i] = f(a[i], v[i])`` for the strided view ``v`` (``shape``,
      ``strides``, ``offset``) of ``b``, in row-major order (a broadcast needs no compact copy);
    - ``reduce``: ``out[i]`` = f of the i-th block of ``reduce_size`` consecutive elements of ``a``;
    - ``matmul``: ``out (m x p) = a (m x n) @ b (n x p)``;
    - ``matmul_strided``: ``out = V @ b (n x p)`` for the strided view ``V`` of ``a`` seen as a
      matrix, its first ``split`` axes making the rows and the others the n columns.
    - ``reduce_columns``: ``out[j]`` = f of column ``j`` of ``a`` seen as a row-major
      ``(reduce_size, out.size)`` matrix (a sum over leading axes, without a transposed copy).

    ``oracle`` states what the kernel computes, in plain numpy: it takes the kernel's arguments
    by name (buffers as 1-D float64 arrays, ``out`` holding what it holds before the call) and
    returns what ``out`` holds after it.

    Attributes:
        name: the function every backend module exports.
        kind: the loop family (above).
        args: the kernel's parameters, in order (``KERNEL_ARGS[kind]`` but for scalar_setitem).
        oracle: the kernel's meaning in numpy (above).
        required: False for an optional fast path that a backend may leave out.
        domain: the range random inputs ``a`` are drawn from in tests (``log`` wants x > 0).
        rtol: allowed error, relative to ``|expected|`` for element-wise kinds and to the
            oracle of the absolute values (the size of the terms summed) for ``reduce`` and
            ``matmul``; 0 means exact. Polynomial ``exp``/``log``/``tanh`` and sums taken in
            another order need a little.
        tiled: ``a``, ``b`` and ``out`` of a matmul are in the tiled layout [r/T][c/T][T][T], T
            being the backend's ``__tile_size__`` (the oracle then also takes ``tile=T``).
    """

    name: str
    kind: KernelKind
    oracle: Callable[..., np.ndarray] = field(repr=False)
    args: tuple[str, ...] = ()
    required: bool = True
    domain: tuple[float, float] = (-3.0, 3.0)
    rtol: float = 0.0
    tiled: bool = False

    def __post_init__(self) -> None:
        if not self.args:  # the kind's parameters
            object.__setattr__(self, "args", KERNEL_ARGS[self.kind])

    @property
    def arity(self) -> int:
        """How many input buffers the kernel reads (``a``, ``b``)."""
        return sum(arg in ("a", "b") for arg in self.args)


def _positions(shape: Sequence[int], strides: Sequence[int], offset: int) -> np.ndarray:
    """Buffer position of each element of a view: offset + sum_k index_k * strides[k]."""
    index = np.indices(tuple(shape), dtype=np.int64)
    return offset + sum(
        (index[k] * stride for k, stride in enumerate(strides)), np.zeros(shape, np.int64)
    )


def _compact_oracle(a, out, shape, strides, offset):
    return a[_positions(shape, strides, offset)].reshape(-1)


def _ewise_setitem_oracle(a, out, shape, strides, offset):
    positions = _positions(shape, strides, offset)
    result = out.copy()
    result[positions] = a[: positions.size].reshape(positions.shape)
    return result


def _scalar_setitem_oracle(size, val, out, shape, strides, offset):
    result = out.copy()
    result[_positions(shape, strides, offset)] = val
    return result


def _binary(name: str, op: Callable[..., Any], **options: Any) -> tuple[Kernel, Kernel]:
    """The pair ``ewise_<name>(a, b, out)`` and ``scalar_<name>(a, val, out)`` of numpy's op."""

    def ewise_oracle(a, b, out):
        return np.asarray(op(a, b), dtype=np.float64)

    def scalar_oracle(a, val, out):
        return np.asarray(op(a, val), dtype=np.float64)

    return (
        Kernel(f"ewise_{name}", "zip", ewise_oracle, **options),
        Kernel(f"scalar_{name}", "scalar", scalar_oracle, **options),
    )


def _unary(name: str, op: Callable[..., Any], **options: Any) -> Kernel:
    """``ewise_<name>(a, out)`` of numpy's op."""
    return Kernel(f"ewise_{name}", "map", lambda a, out: op(a), **options)


def _reduce(name: str, op: Callable[..., Any], **options: Any) -> Kernel:
    """``reduce_<name>(a, out, reduce_size)`` of numpy's reduction ``op(blocks, axis=1)``."""

    def oracle(a, out, reduce_size):
        return op(a[: out.size * reduce_size].reshape(out.size, reduce_size), axis=1)

    return Kernel(f"reduce_{name}", "reduce", oracle, **options)


def _matmul_oracle(a, b, out, m, n, p):
    return (a[: m * n].reshape(m, n) @ b[: n * p].reshape(n, p)).reshape(-1)


def _matmul_tiled_oracle(a, b, out, m, n, p, tile):
    def untile(x, rows, cols):
        tiles = x[: rows * cols].reshape(rows // tile, cols // tile, tile, tile)
        return tiles.transpose(0, 2, 1, 3).reshape(rows, cols)

    product = untile(a, m, n) @ untile(b, n, p)
    return product.reshape(m // tile, tile, p // tile, tile).transpose(0, 2, 1, 3).reshape(-1)


def _zip_strided(name: str, op: Callable[..., Any]) -> Kernel:
    """``ewise_<name>_strided(a, b, out, shape, strides, offset)``: ``op`` of ``a`` and a
    strided view of ``b`` (optional: only the C++ backend has it)."""

    def oracle(a, b, out, shape, strides, offset):
        view = b[_positions(shape, strides, offset)].reshape(-1)
        return op(a[: view.size], view)

    return Kernel(f"ewise_{name}_strided", "zip_strided", oracle, required=False, rtol=1e-6)


def _matmul_strided_oracle(a, b, out, shape, strides, offset, split, p):
    rows, cols = math.prod(shape[:split]), math.prod(shape[split:])
    view = a[_positions(shape, strides, offset)].reshape(rows, cols)
    return (view @ b[: cols * p].reshape(cols, p)).reshape(-1)


def _reduce_sum_columns_oracle(a, out, reduce_size):
    return a[: reduce_size * out.size].reshape(reduce_size, out.size).sum(axis=0)


KERNELS: tuple[Kernel, ...] = (
    Kernel("fill", "fill", lambda out, val: np.full(out.shape, val)),
    Kernel("compact", "gather", _compact_oracle),
    Kernel("ewise_setitem", "scatter", _ewise_setitem_oracle),
    Kernel("scalar_setitem", "scatter", _scalar_setitem_oracle, ("size", "val", "out", *_STRIDED)),
    *_binary("add", np.add),
    *_binary("mul", np.multiply),
    *_binary("div", np.divide),
    *_binary("power", np.power, domain=(0.1, 3.0), rtol=1e-5),
    *_binary("maximum", np.maximum),
    *_binary("eq", np.equal),
    *_binary("ge", np.greater_equal),
    _unary("log", np.log, domain=(0.01, 5.0), rtol=1e-6),
    _unary("exp", np.exp, rtol=1e-6),
    _unary("tanh", np.tanh, rtol=1e-6),
    _reduce("max", np.max),
    _reduce("sum", np.sum, rtol=1e-5),
    Kernel("matmul", "matmul", _matmul_oracle, rtol=1e-4),
    # Only the C++ backend has it (NDArray uses it when a backend sets __matmul_tiled_preferred__).
    Kernel("matmul_tiled", "matmul", _matmul_tiled_oracle, required=False, rtol=1e-4, tiled=True),
    # Only the C++ backend has them (NDArray uses them for a broadcast operand when present).
    _zip_strided("add", np.add),
    _zip_strided("mul", np.multiply),
    _zip_strided("div", np.divide),
    # Only the C++ backend has it (NDArray's matmul_view uses it for im2col views when present).
    Kernel("matmul_strided", "matmul_strided", _matmul_strided_oracle, required=False, rtol=1e-4),
    # Only the C++ backend has it (NDArray sums over leading axes with it when present).
    Kernel(
        "reduce_sum_columns",
        "reduce_columns",
        _reduce_sum_columns_oracle,
        required=False,
        rtol=1e-5,
    ),
)
"""Every kernel a backend exports, in the order of ``src/kernel_list.h``."""
