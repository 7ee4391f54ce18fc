"""Picking rows of a matrix by integer ids, and its adjoint.

``take_rows(weight, ids)`` is what an embedding layer computes: row ``ids[k]`` of ``weight``
for every id. The course builds it as ``one_hot(ids) @ weight``, which is correct and
teaches why the gradient reaches exactly the looked-up rows, but costs a
``(len(ids), num_rows)`` matrix and two products with it per step: for a 10,000-word
vocabulary, 0.7 GFLOP each and a 22 MB one-hot matrix for a batch of 560 tokens. Picking
the rows copies ``len(ids) * dim`` numbers; the gradient adds the rows of ``g`` back into
the rows they came from (``scatter_add_rows``), and each op is the other's adjoint, so
gradients of gradients work.

The ids are data, not a Tensor (nothing differentiates with respect to an index). The rows
are gathered and scattered on the host with numpy, which works on every backend; only the
looked-up rows and the weight's gradient cross to and from the device.
"""

from __future__ import annotations

# The student release of hw4 leaves this module empty (its exercise builds the lookup as a
# one-hot product); releases with hw4 given keep it.
### BEGIN REFERENCE ONLY (hw4)
import numpy as np

from ..autograd import Tensor, TensorOp
from ..backend_selection import array_api


def _as_ids(ids, num_rows: int) -> np.ndarray:
    """The ids as an int64 array, each checked to lie in ``[0, num_rows)``."""
    if isinstance(ids, Tensor):
        ids = ids.numpy()
    values = np.asarray(ids)
    as_int = values.astype(np.int64)
    if values.size and not np.array_equal(as_int, values):
        raise ValueError("take_rows: ids must be whole numbers")
    if as_int.size and (as_int.min() < 0 or as_int.max() >= num_rows):
        raise ValueError(
            f"take_rows: ids must lie in [0, {num_rows}), got [{as_int.min()}, {as_int.max()}]"
        )
    return as_int


def _host(array) -> np.ndarray:
    """The values of a backend array as a numpy array."""
    return array if isinstance(array, np.ndarray) else array.numpy()


def _on_device_of(values: np.ndarray, like):
    """``values`` as an array of ``like``'s backend, device and dtype."""
    if array_api is np:
        return values.astype(like.dtype, copy=False)
    return array_api.array(values, device=like.device)


class TakeRows(TensorOp):
    """``out[k] = a[ids[k]]`` for a 2-D ``a`` and constant integer ``ids`` of any shape.

    Shape: ``a (num_rows, dim)`` → ``ids.shape + (dim,)``.
    Gradient: ``scatter_add_rows(g, ids, num_rows)``.
    """

    def __init__(self, ids):
        self.ids = np.asarray(ids)

    def compute(self, a):
        if a.ndim != 2:
            raise ValueError(f"take_rows needs a 2-D matrix, got shape {tuple(a.shape)}")
        ids = _as_ids(self.ids, a.shape[0])
        rows = _host(a)[ids.reshape(-1)]
        return _on_device_of(rows.reshape(ids.shape + (a.shape[1],)), a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return scatter_add_rows(out_grad, self.ids, node.inputs[0].shape[0])


def take_rows(a: Tensor, ids) -> Tensor:
    """Rows ``ids`` of the matrix ``a`` (an embedding lookup)."""
    return TakeRows(ids)(a)


class ScatterAddRows(TensorOp):
    """The adjoint of ``take_rows``: a ``(num_rows, dim)`` matrix of zeros into which row
    ``k`` of ``g`` (``g`` of shape ``ids.shape + (dim,)``) is added at row ``ids[k]``; an id
    that occurs twice gets the sum.

    Gradient: ``take_rows(g, ids)``.
    """

    def __init__(self, ids, num_rows: int):
        self.ids = np.asarray(ids)
        self.num_rows = num_rows

    def compute(self, g):
        ids = _as_ids(self.ids, self.num_rows)
        dim = g.shape[-1]
        if tuple(g.shape) != ids.shape + (dim,):
            raise ValueError(
                f"scatter_add_rows: expected rows of shape {ids.shape} + (dim,), got {g.shape}"
            )
        rows = _host(g).reshape(-1, dim)
        total = np.zeros((self.num_rows, dim), dtype=rows.dtype)
        np.add.at(total, ids.reshape(-1), rows)
        return _on_device_of(total, g)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return take_rows(out_grad, self.ids)


def scatter_add_rows(g: Tensor, ids, num_rows: int) -> Tensor:
    return ScatterAddRows(ids, num_rows)(g)


### END REFERENCE ONLY
