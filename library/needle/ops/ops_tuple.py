"""Ops that build and take apart tuples of tensors.

A ``TensorTuple`` is one graph node holding several arrays (e.g. the pieces of ``split``).
``make_tuple`` packs tensors into one, ``tuple_get_item`` takes one out again. Their gradients
just route the adjoints: the adjoint of a tuple is a tuple of adjoints, one per element.
"""

from __future__ import annotations

from ..autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp, Value
from ..backend_selection import array_api


def _zeros_like_array(array):
    """A zero array with the shape, dtype and device of ``array`` (any backend)."""
    return array_api.zeros(array.shape, dtype=array.dtype, device=array.device)


class MakeTensorTuple(TensorTupleOp):
    """Pack tensors into one ``TensorTuple`` node: ``(a_0, ..., a_{n-1})``.

    The gradient hands element ``i`` of the tuple's adjoint to input ``i``.
    """

    def compute(self, *args):
        return tuple(args)

    def gradient(self, out_grad: TensorTuple, node: Value):
        assert isinstance(out_grad, TensorTuple), "the adjoint of a tuple is a TensorTuple"
        return tuple(out_grad[i] for i in range(len(out_grad)))


def make_tuple(*args: Tensor) -> TensorTuple:
    return MakeTensorTuple()(*args)


class TupleGetItem(TensorOp):
    """Element ``index`` of a ``TensorTuple``.

    The gradient is a tuple that carries ``out_grad`` at ``index`` and zeros elsewhere.
    """

    def __init__(self, index: int):
        self.index = index

    def __call__(self, a: TensorTuple, fold_const: bool = True) -> Tensor:
        assert isinstance(a, TensorTuple), f"expected a TensorTuple, got {type(a).__name__}"
        # make_tuple(x, y)[0] is just x: skip the pack/unpack pair instead of recording it.
        if fold_const and isinstance(a.op, MakeTensorTuple):
            return a.inputs[self.index]
        return Tensor.make_from_op(self, [a])

    def compute(self, a):
        return a[self.index]

    def gradient(self, out_grad: Tensor, node: Tensor):
        elements = node.inputs[0].realize_cached_data()
        # One zero array per shape, shared by the positions that get no adjoint; they are
        # recorded in ``zero_parts`` so that summing the adjoints of the elements (one
        # TupleGetItem each, as in ``unstack``) adds nothing for them (``TensorTuple.__add__``).
        zeros: dict = {}

        def zero_like(element):
            key = tuple(element.shape)
            if key not in zeros:
                zeros[key] = _zeros_like_array(element)
            return zeros[key]

        zero_parts = frozenset(i for i in range(len(elements)) if i != self.index)
        if not out_grad.requires_grad:  # the usual backward pass: no graph to record
            arrays = tuple(
                out_grad.realize_cached_data() if i == self.index else zero_like(element)
                for i, element in enumerate(elements)
            )
            adjoint = TensorTuple.make_const(arrays)
        else:
            parts = [
                out_grad if i == self.index else Tensor.make_const(zero_like(element))
                for i, element in enumerate(elements)
            ]
            adjoint = MakeTensorTuple()(*parts)
        adjoint.zero_parts = zero_parts
        return adjoint


def tuple_get_item(value: TensorTuple, index: int) -> Tensor:
    return TupleGetItem(index)(value)


class FusedAddScalars(TensorTupleOp):
    """Two results from one input: ``(a + c0, a + c1)``.

    A small example of an op with several outputs: both outputs depend on ``a`` with slope 1,
    so ``a``'s adjoint is the sum of the two output adjoints.
    """

    def __init__(self, c0: float, c1: float):
        self.c0 = c0
        self.c1 = c1

    def compute(self, a):
        return a + self.c0, a + self.c1

    def gradient(self, out_grad: TensorTuple, node: Value):
        return out_grad[0] + out_grad[1]


def fused_add_scalars(x: Tensor, c0: float, c1: float) -> TensorTuple:
    return FusedAddScalars(c0, c1)(x)
