"""Numerically stable log-sum-exp and log-softmax.

``log Σ exp(z)`` overflows float32 as soon as some ``z > 88``. Both ops subtract the maximum
first, ``log Σ exp(z) = max z + log Σ exp(z - max z)``: every exponent is then ``<= 0`` and
the largest term is exactly 1, so neither overflow nor ``log 0`` can happen.
"""

from __future__ import annotations

from ..autograd import Tensor, TensorOp
from ..backend_selection import array_api
from .ops_mathematic import Axes, _normalize_axes, broadcast_to, exp, reshape, summation


class LogSumExp(TensorOp):
    """``log Σ_{axes} exp(z)``, computed stably; the summed axes disappear from the shape.

    Args:
        axes: None (all axes), an int, or a tuple of ints, as for ``summation``.

    Gradient: ``g`` (broadcast back over the summed axes) times ``softmax(z)`` over those
    axes, formed as ``exp(z - m) * (g / Σ exp(z - m))`` with ``m`` the maximum. Not
    ``exp(z - logsumexp(z))``: for huge logits the output rounds away its ``log Σ`` part (in
    float32, ``1e10 + log 2`` is ``1e10``), and two tied maxima would then each get 1, not 1/2.
    """

    def __init__(self, axes: Axes = None):
        self.axes = axes

    def compute(self, Z):
        ### BEGIN YOUR SOLUTION (hw2)
        axes = _normalize_axes(self.axes, Z.ndim)
        if not axes:  # a sum of one term: log(exp(z)) = z
            return Z
        max_kept = array_api.max(Z, axis=axes, keepdims=True)
        # Negating the few maxima before broadcasting them leaves one full-size pass (the add).
        shifted = Z + array_api.broadcast_to(-max_kept, Z.shape)
        total = array_api.sum(array_api.exp(shifted), axis=axes)
        return array_api.log(total) + array_api.reshape(max_kept, total.shape)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw2)
        z = node.inputs[0]
        axes = _normalize_axes(self.axes, z.ndim)
        if not axes:  # the forward is the identity
            return out_grad
        kept = tuple(1 if i in axes else n for i, n in enumerate(z.shape))
        # The maximum is a constant read from the data: softmax(z - m) = softmax(z) for any
        # fixed m, so the result (and its own gradient) is exact, and every exponent is <= 0.
        z_max = array_api.max(z.realize_cached_data(), axis=axes, keepdims=True)
        exps = exp(z + broadcast_to(Tensor.make_const(-z_max), z.shape))
        # g * softmax = exps * (g / Σ exps): the division is done on the reduced shape, so
        # only one full-size product follows the exponentials.
        scale = reshape(out_grad / summation(exps, axes), kept)
        return exps * broadcast_to(scale, z.shape)
        ### END YOUR SOLUTION


def logsumexp(a: Tensor, axes: Axes = None) -> Tensor:
    return LogSumExp(axes=axes)(a)


class LogSoftmax(TensorOp):
    """``log softmax(z) = z - logsumexp(z)`` over the last axis (the classes of a
    ``(batch, classes)`` input), computed stably.

    Gradient: ``g - softmax(z) * Σ_classes g``, with ``softmax(z) = exp(output)``.
    """

    def compute(self, Z):
        ### BEGIN YOUR SOLUTION (hw2)
        if Z.ndim < 1:
            raise ValueError("LogSoftmax needs at least one axis (the classes)")
        last = Z.ndim - 1
        max_kept = array_api.max(Z, axis=last, keepdims=True)
        shifted = Z - array_api.broadcast_to(max_kept, Z.shape)
        lse = array_api.log(array_api.sum(array_api.exp(shifted), axis=last, keepdims=True))
        return shifted - array_api.broadcast_to(lse, Z.shape)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw2)
        shape = node.shape
        kept = shape[:-1] + (1,)
        row_sums = broadcast_to(reshape(summation(out_grad, len(shape) - 1), kept), shape)
        return out_grad - exp(node) * row_sums
        ### END YOUR SOLUTION


def logsoftmax(a: Tensor) -> Tensor:
    return LogSoftmax()(a)
