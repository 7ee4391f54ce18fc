"""The differentiable primitives of needle: one class per op, forward and gradient together.

Every op has two halves:

- ``compute(*arrays)`` works on raw arrays through ``array_api``, which is numpy
  (``NEEDLE_BACKEND=np``) or needle's own ``backend_ndarray`` (``nd``). Only functions that
  both modules offer with numpy's names and meaning are used, so one body serves both.
- ``gradient(out_grad, node)`` returns the adjoint of each input, built from needle ops
  only, never from raw arrays. That way the gradient is itself a graph and can be
  differentiated again (``x.grad.backward()``).

Each op class has a lowercase helper (``exp(a)`` for ``Exp()(a)``), which is how ops are
normally called. Binary element-wise ops never broadcast implicitly: both operands must have
the same shape, and ``broadcast_to`` makes the broadcast explicit (and differentiable).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence, Tuple, Union

import numpy

from ..autograd import Tensor, TensorOp, TensorTuple, TensorTupleOp, deferred
from ..backend_selection import array_api
from .ops_tuple import make_tuple

Axes = int | tuple[int, ...] | None
Shape = Tuple[int, ...]


# ---- small provided helpers ----------------------------------------------------------------


def _python_scalar(value):
    """``value`` as a plain Python number.

    numpy scalars are "strong" in numpy's type promotion: ``float32_array * np.float64(2)`` is
    float64, while ``float32_array * 2.0`` stays float32. Scalar ops keep Python numbers so the
    result keeps the array's dtype on both backends. A numpy array with exactly one element
    (``np.array(2.0)``, ``np.array([2.0])``) counts as a scalar too, as in the course.
    """
    if type(value) is float or type(value) is int:  # the common case, checked first: it is hot
        return value
    if isinstance(value, (numpy.generic, numpy.ndarray)) and numpy.size(value) == 1:
        value = numpy.asarray(value).reshape(()).item()
    if not isinstance(value, numbers.Number) or isinstance(value, complex):
        raise TypeError(f"expected a real number, got {type(value).__name__}: {value!r}")
    return value


def _check_same_shape(op_name: str, a, b) -> None:
    """Element-wise binary ops need equal shapes. ``op_name`` is the name the user called
    (``add``, ``subtract``, ``multiply``, ``divide``, ``power``), not the op class."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{op_name}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; use broadcast_to "
            "to give both operands one shape (needle does not broadcast implicitly)"
        )


def _normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim


def _normalize_axes(axes: Axes, ndim: int) -> Tuple[int, ...]:
    """``axes`` (None = all, an int, or a tuple) as a sorted tuple of non-negative axes."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, numbers.Integral)):
        axes = (int(axes),)
    return tuple(sorted({_normalize_axis(int(axis), ndim) for axis in axes}))


def _strides_of(a) -> Shape:
    """``a``'s strides in ELEMENTS (numpy counts them in bytes, needle's NDArray in elements)."""
    if array_api is numpy:
        return tuple(stride // a.itemsize for stride in a.strides)
    return tuple(a.strides)


def _as_strided(a, shape: Shape, strides: Shape):
    """A view of ``a``'s memory with the given shape and strides, in ELEMENTS, starting at
    ``a``'s first element: ``a`` may be any view (strides from ``_strides_of(a)`` then walk
    its elements). The view shares ``a``'s memory: treat it as read-only."""
    if array_api is numpy:
        byte_strides = tuple(stride * a.itemsize for stride in strides)
        return numpy.lib.stride_tricks.as_strided(a, shape, byte_strides, writeable=False)
    return array_api.as_strided(a, shape, strides)


def _memory_order(a):
    """For a transposed view of a whole compact buffer (NDArray, as NCHW seen as NHWC is): its
    axes in the order they lie in memory (``NDArray.memory_order``); None for any other array."""
    if array_api is numpy or a.is_compact():
        return None
    return a.memory_order()


def _view_matmul(view, split: int, b):
    """``reshape(view, (rows, cols)) @ b``, the first ``split`` axes of ``view`` making the
    rows: without copying the view out first where the backend can (``matmul_view``)."""
    if hasattr(array_api, "matmul_view"):
        return array_api.matmul_view(view, split, b)
    rows = math.prod(view.shape[:split])
    return array_api.matmul(array_api.reshape(view, (rows, -1)), b)


def _pad_or_crop(a, pad_width: Sequence[Tuple[int, int]]):
    """Zero-pad ``a`` by ``pad_width[i] = (before, after)`` on axis ``i``; a negative amount
    removes that many entries from that side instead (conv gradients need both)."""
    crop = tuple(
        slice(max(-before, 0), n - max(-after, 0)) for n, (before, after) in zip(a.shape, pad_width)
    )
    if any(s.start > 0 or s.stop < n for s, n in zip(crop, a.shape)):
        a = a[crop]
    positive = tuple((max(before, 0), max(after, 0)) for before, after in pad_width)
    if any(before or after for before, after in positive):
        order = _memory_order(a)
        if order is None or order[-1] < len(order) - 2 or a.shape[order[-1]] < 32:
            return array_api.pad(a, positive)
        # A transposed view whose rows in memory are long and run along one of its last two
        # axes (an NCHW image batch seen as NHWC, the width) is padded in the order its axes
        # lie in memory, a copy of contiguous runs instead of a transposing one, and handed
        # back transposed the same way: the result is that view of a compact padded buffer.
        # A convolution reading it gathers neighbouring pixels from neighbouring floats. (For
        # rows of a few pixels the runs are too short; for a view whose contiguous axis comes
        # first, the convolution's reads would be scattered: both get a compact copy.)
        padded = array_api.pad(array_api.transpose(a, order), tuple(positive[i] for i in order))
        a = array_api.transpose(padded, tuple(order.index(axis) for axis in range(len(order))))
    return a


# ---- element-wise arithmetic ---------------------------------------------------------------


class EWiseAdd(TensorOp):
    """``a + b`` for two tensors of the same shape. Gradient: ``(g, g)``.

    ``name`` is what a shape error calls the op: ``a - b`` is ``EWiseAdd(name="subtract")``
    applied to ``a`` and ``-b``, so its error names ``subtract``, the operation written.
    """

    def __init__(self, name: str = "add"):
        self.name = name

    def compute(self, a, b):
        _check_same_shape(self.name, a, b)
        return a + b

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad, out_grad


def add(a: Tensor, b: Tensor) -> Tensor:
    return EWiseAdd()(a, b)


class AddScalar(TensorOp):
    """``a + c`` for a scalar ``c``. Gradient: ``g``."""

    def __init__(self, scalar: float):
        self.scalar = _python_scalar(scalar)

    def compute(self, a):
        return a + self.scalar

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad


def add_scalar(a: Tensor, scalar: float) -> Tensor:
    return AddScalar(scalar)(a)


class EWiseMul(TensorOp):
    """``a * b`` element-wise, same shapes. Gradient: ``(g * b, g * a)``."""

    def compute(self, a, b):
        _check_same_shape("multiply", a, b)
        return a * b

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs
        # The adjoint of an input that needs none (a mask, a one-hot matrix) is deferred:
        # computed only if something reads it, which backward() does not.
        return (
            out_grad * b if a.requires_grad else deferred(EWiseMul(), out_grad, b),
            out_grad * a if b.requires_grad else deferred(EWiseMul(), out_grad, a),
        )


def multiply(a: Tensor, b: Tensor) -> Tensor:
    return EWiseMul()(a, b)


class MulScalar(TensorOp):
    """``a * c`` for a scalar ``c``. Gradient: ``g * c``."""

    def __init__(self, scalar: float):
        self.scalar = _python_scalar(scalar)

    def compute(self, a):
        return a * self.scalar

    def gradient(self, out_grad: Tensor, node: Tensor):
        return out_grad * self.scalar


def mul_scalar(a: Tensor, scalar: float) -> Tensor:
    return MulScalar(scalar)(a)


class PowerScalar(TensorOp):
    """``a ** c`` for a scalar exponent ``c`` (any real: negative and fractional too).

    Gradient: ``g * c * a ** (c - 1)``.
    """

    def __init__(self, scalar: float):
        self.scalar = _python_scalar(scalar)

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return a**self.scalar
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        (a,) = node.inputs
        if self.scalar == 0:  # d(a**0)/da = 0, also where a = 0 (0 * 0**-1 would be nan)
            return out_grad * 0
        return out_grad * (power_scalar(a, self.scalar - 1) * self.scalar)
        ### END YOUR SOLUTION


def power_scalar(a: Tensor, scalar: float) -> Tensor:
    return PowerScalar(scalar)(a)


class EWisePow(TensorOp):
    """``a ** b`` element-wise, same shapes.

    Gradient: ``(g * b * a ** (b - 1), g * a ** b * log(a))`` (the second needs ``a > 0``).
    """

    def compute(self, a, b):
        ### BEGIN YOUR SOLUTION (hw1)
        _check_same_shape("power", a, b)
        return array_api.power(a, b)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        a, b = node.inputs
        grad_a = out_grad * b * power(a, b - 1)
        grad_b = out_grad * node * log(a)
        return grad_a, grad_b
        ### END YOUR SOLUTION


def power(a: Tensor, b: Tensor) -> Tensor:
    return EWisePow()(a, b)


class EWiseDiv(TensorOp):
    """``a / b`` element-wise, same shapes. Gradient: ``(g / b, -g * a / b**2)``."""

    def compute(self, a, b):
        ### BEGIN YOUR SOLUTION (hw1)
        _check_same_shape("divide", a, b)
        return a / b
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        a, b = node.inputs
        return out_grad / b, -(out_grad * a / (b * b))
        ### END YOUR SOLUTION


def divide(a: Tensor, b: Tensor) -> Tensor:
    return EWiseDiv()(a, b)


class DivScalar(TensorOp):
    """``a / c`` for a scalar ``c``. Gradient: ``g / c``."""

    def __init__(self, scalar: float):
        self.scalar = _python_scalar(scalar)

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return a / self.scalar
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return out_grad / self.scalar
        ### END YOUR SOLUTION


def divide_scalar(a: Tensor, scalar: float) -> Tensor:
    return DivScalar(scalar)(a)


class Negate(TensorOp):
    """``-a``. Gradient: ``-g``."""

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return -a
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return negate(out_grad)
        ### END YOUR SOLUTION


def negate(a: Tensor) -> Tensor:
    return Negate()(a)


class Log(TensorOp):
    """Natural logarithm ``ln a``. Gradient: ``g / a``."""

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return array_api.log(a)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return out_grad / node.inputs[0]
        ### END YOUR SOLUTION


def log(a: Tensor) -> Tensor:
    return Log()(a)


class Exp(TensorOp):
    """``e ** a``. Gradient: ``g * e ** a``, i.e. ``g`` times the output itself."""

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return array_api.exp(a)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return out_grad * node
        ### END YOUR SOLUTION


def exp(a: Tensor) -> Tensor:
    return Exp()(a)


class ReLU(TensorOp):
    """``max(a, 0)``. Gradient: ``g * 1[a > 0]`` (the slope at 0 is taken as 0).

    The mask ``1[a > 0]`` is a constant read from the input's data: the only place an op's
    gradient may touch raw arrays, and harmless because the mask's own derivative is 0
    almost everywhere.
    """

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return array_api.maximum(a, 0)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        a = node.inputs[0].realize_cached_data()
        return out_grad * Tensor.make_const((a > 0).astype(a.dtype))
        ### END YOUR SOLUTION


def relu(a: Tensor) -> Tensor:
    return ReLU()(a)


class Tanh(TensorOp):
    """``tanh a``. Gradient: ``g * (1 - tanh(a)**2)``, reusing the output."""

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        return array_api.tanh(a)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return out_grad * (1 - node**2)
        ### END YOUR SOLUTION


def tanh(a: Tensor) -> Tensor:
    return Tanh()(a)


class Sigmoid(TensorOp):
    """The logistic function ``σ(a) = 1 / (1 + e**-a)``. Gradient: ``g * σ(a) * (1 - σ(a))``.

    Computed as ``(1 + tanh(a / 2)) / 2``, the same function written without ``e**-a``, which
    overflows for large negative ``a``.
    """

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        return (array_api.tanh(a * 0.5) + 1) * 0.5
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return out_grad * node * (1 - node)
        ### END YOUR SOLUTION


def sigmoid(a: Tensor) -> Tensor:
    return Sigmoid()(a)


# ---- shapes: transpose, reshape, broadcast, sum ---------------------------------------------


def _sum_to_shape(x: Tensor, shape: Shape) -> Tensor:
    """Undo numpy broadcasting for gradients: sum ``x`` down to ``shape``.

    When ``shape`` was broadcast to ``x.shape``, every axis that broadcasting added in front
    and every axis that grew from 1 to n received the same input value several times, so its
    adjoint is the sum over that axis.
    """
    ### BEGIN YOUR SOLUTION (hw1)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    added = x.ndim - len(shape)
    grown = tuple(added + i for i, n in enumerate(shape) if n == 1 and x.shape[added + i] != 1)
    return reshape(summation(x, tuple(range(added)) + grown), shape)
    ### END YOUR SOLUTION


class Transpose(TensorOp):
    """Swap two axes (by default the last two); not a general permutation.

    Gradient: the same swap applied to ``g``.
    """

    def __init__(self, axes: Tuple[int, int] | None = None):
        if axes is not None and len(axes) != 2:
            raise ValueError(f"Transpose swaps exactly two axes, got {axes}")
        self.axes = axes

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        if a.ndim < 2:
            raise ValueError(f"Transpose needs at least 2 dimensions, got shape {a.shape}")
        first, second = self.axes if self.axes is not None else (-2, -1)
        order = list(range(a.ndim))
        first, second = _normalize_axis(first, a.ndim), _normalize_axis(second, a.ndim)
        order[first], order[second] = order[second], order[first]
        return array_api.transpose(a, tuple(order))
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return transpose(out_grad, self.axes)
        ### END YOUR SOLUTION


def transpose(a: Tensor, axes: Tuple[int, int] | None = None) -> Tensor:
    return Transpose(axes)(a)


class Permute(TensorOp):
    """Reorder all axes: axis ``k`` of the result is axis ``axes[k]`` of the input (numpy's
    ``transpose(a, axes)``). Provided, not part of the course's op set: one node for what two
    or more ``transpose`` swaps do, as NCHW <-> NHWC needs (``(0, 2, 3, 1)`` and back with
    ``(0, 3, 1, 2)``). Gradient: ``g`` permuted by the inverse order."""

    def __init__(self, axes: Tuple[int, ...]):
        self.axes = tuple(axes)
        if sorted(self.axes) != list(range(len(self.axes))):
            raise ValueError(f"Permute needs an order of all axes, got {self.axes}")

    def compute(self, a):
        if a.ndim != len(self.axes):
            raise ValueError(f"Permute: order {self.axes} for an array of shape {a.shape}")
        return array_api.transpose(a, self.axes)

    def gradient(self, out_grad: Tensor, node: Tensor):
        inverse = tuple(self.axes.index(axis) for axis in range(len(self.axes)))
        return permute(out_grad, inverse)


def permute(a: Tensor, axes: Tuple[int, ...]) -> Tensor:
    return Permute(axes)(a)


class Reshape(TensorOp):
    """The same elements (row-major order) in a new shape. Gradient: ``g`` reshaped back."""

    def __init__(self, shape: Shape):
        self.shape = tuple(shape)

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return array_api.reshape(a, self.shape)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return reshape(out_grad, node.inputs[0].shape)
        ### END YOUR SOLUTION


def reshape(a: Tensor, shape: Shape) -> Tensor:
    return Reshape(shape)(a)


class BroadcastTo(TensorOp):
    """numpy-style broadcast to ``shape``: size-1 axes repeat, new axes may be prepended.

    Gradient: ``g`` summed over the repeated and prepended axes, reshaped to the input.
    """

    def __init__(self, shape: Shape):
        self.shape = tuple(shape)

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        return array_api.broadcast_to(a, self.shape)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        return _sum_to_shape(out_grad, node.inputs[0].shape)
        ### END YOUR SOLUTION


def broadcast_to(a: Tensor, shape: Shape) -> Tensor:
    return BroadcastTo(shape)(a)


class Summation(TensorOp):
    """Sum over ``axes`` (None: all; an int; or a tuple), which disappear from the shape.

    Gradient: every summed element gets ``g``: reshape ``g`` with the summed axes kept as
    size 1, then broadcast it to the input's shape.
    """

    def __init__(self, axes: Axes = None):
        self.axes = axes

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw1)
        axes = _normalize_axes(self.axes, a.ndim)
        if not axes:  # sum over no axis: nothing to add up
            return a
        return array_api.sum(a, axis=axes)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        input_shape = node.inputs[0].shape
        axes = _normalize_axes(self.axes, len(input_shape))
        kept = tuple(1 if i in axes else n for i, n in enumerate(input_shape))
        return broadcast_to(reshape(out_grad, kept), input_shape)
        ### END YOUR SOLUTION


def summation(a: Tensor, axes: Axes = None) -> Tensor:
    return Summation(axes)(a)


class MatMul(TensorOp):
    """Matrix product ``a @ b`` of operands with at least 2 dimensions.

    Leading (batch) dimensions broadcast as in numpy, so ``(m, k) @ (B, k, n)`` and
    ``(B1, B2, m, k) @ (k, n)`` both work. Gradient: ``(g @ bᵀ, aᵀ @ g)``, each summed over
    the batch dimensions its operand was broadcast along.
    """

    def compute(self, a, b):
        ### BEGIN YOUR SOLUTION (hw1)
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(
                f"MatMul needs operands with at least 2 dimensions, got {a.shape} @ {b.shape}; "
                "reshape a vector to (1, n) or (n, 1)"
            )
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"MatMul: inner dimensions differ in {a.shape} @ {b.shape}")
        return array_api.matmul(a, b)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw1)
        a, b = node.inputs
        # An input that needs no gradient (a batch of data, a one-hot matrix) gets None, as
        # in Conv: its product would be computed only to be thrown away.
        grad_a = _sum_to_shape(matmul(out_grad, transpose(b)), a.shape) if a.requires_grad else None
        grad_b = _sum_to_shape(matmul(transpose(a), out_grad), b.shape) if b.requires_grad else None
        return grad_a, grad_b
        ### END YOUR SOLUTION


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return MatMul()(a, b)


# ---- stacking and splitting -----------------------------------------------------------------


class Stack(TensorOp):
    """Stack tensors of equal shape along a NEW axis ``axis``.

    Input: one ``TensorTuple`` (use the ``stack(list, axis)`` helper). Gradient:
    ``split(g, axis)``, one slice per input.
    """

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, args):
        ### BEGIN YOUR SOLUTION (hw4)
        if len(args) == 0:
            raise ValueError("Stack needs at least one tensor")
        shape = tuple(args[0].shape)
        for i, arg in enumerate(args):
            if tuple(arg.shape) != shape:
                raise ValueError(
                    f"Stack needs tensors of one shape: element 0 is {shape}, "
                    f"element {i} is {tuple(arg.shape)}"
                )
        return array_api.stack(tuple(args), axis=_normalize_axis(self.axis, len(shape) + 1))
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return split(out_grad, self.axis)
        ### END YOUR SOLUTION


def stack(args: Union[Sequence[Tensor], TensorTuple], axis: int) -> Tensor:
    """Stack a list of equal-shape tensors (or a ``TensorTuple``) along a new axis."""
    if not isinstance(args, TensorTuple):
        args = make_tuple(*args)
    return Stack(axis)(args)


class Split(TensorTupleOp):
    """Cut a tensor into its slices along ``axis``, which disappears: a ``TensorTuple`` of
    ``a.shape[axis]`` tensors. Inverse of ``Stack``; gradient: ``stack(g, axis)``."""

    def __init__(self, axis: int):
        self.axis = axis

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        return tuple(array_api.unstack(a, axis=_normalize_axis(self.axis, a.ndim)))
        ### END YOUR SOLUTION

    def gradient(self, out_grad: TensorTuple, node: TensorTuple):
        ### BEGIN YOUR SOLUTION (hw4)
        return stack(out_grad, self.axis)
        ### END YOUR SOLUTION


def split(a: Tensor, axis: int) -> TensorTuple:
    return Split(axis)(a)


# ---- convolution and its helpers ----------------------------------------------------------


class Flip(TensorOp):
    """Reverse the order of elements along ``axes`` (an int or a tuple).

    Gradient: flip ``g`` along the same axes.
    """

    def __init__(self, axes: Axes):
        self.axes = axes

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        return array_api.flip(a, _normalize_axes(self.axes, a.ndim))
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return flip(out_grad, self.axes)
        ### END YOUR SOLUTION


def flip(a: Tensor, axes: Axes) -> Tensor:
    return Flip(axes)(a)


def _dilated_axes(axes: int | Tuple[int, ...], ndim: int) -> Tuple[int, ...]:
    """The axes a dilation applies to: out-of-range axes are ignored (as in the course)."""
    if isinstance(axes, (int, numbers.Integral)):
        axes = (int(axes),)
    return tuple(sorted({axis % ndim for axis in axes if -ndim <= axis < ndim}))


class Dilate(TensorOp):
    """Insert ``dilation`` zeros after every element along each of ``axes``.

    An axis of length n becomes n * (dilation + 1) long (so the zeros trail the last element
    too). Axes beyond the tensor's dimensions are ignored. Gradient: ``undilate(g)``.
    Example: ``dilate([1, 2], axes=(0,), dilation=1) = [1, 0, 2, 0]``.
    """

    def __init__(self, axes: Tuple[int, ...], dilation: int):
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0, got {dilation}")
        self.axes = axes
        self.dilation = dilation

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        axes = _dilated_axes(self.axes, a.ndim)
        if self.dilation == 0 or not axes:
            return a
        step = self.dilation + 1
        shape = tuple(n * step if i in axes else n for i, n in enumerate(a.shape))
        out = array_api.zeros(shape, dtype=a.dtype, device=a.device)
        out[tuple(slice(None, None, step) if i in axes else slice(None) for i in range(a.ndim))] = a
        return out
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return undilate(out_grad, self.axes, self.dilation)
        ### END YOUR SOLUTION


def dilate(a: Tensor, axes: Tuple[int, ...], dilation: int) -> Tensor:
    return Dilate(axes, dilation)(a)


class UnDilate(TensorOp):
    """Keep every ``(dilation + 1)``-th element along ``axes``: the inverse of ``Dilate``.

    Each such axis must have a length divisible by ``dilation + 1`` (as ``dilate`` makes);
    axes beyond the tensor's dimensions are ignored. Gradient: ``dilate(g)``.
    """

    def __init__(self, axes: Tuple[int, ...], dilation: int):
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0, got {dilation}")
        self.axes = axes
        self.dilation = dilation

    def compute(self, a):
        ### BEGIN YOUR SOLUTION (hw4)
        axes = _dilated_axes(self.axes, a.ndim)
        if self.dilation == 0 or not axes:
            return a
        step = self.dilation + 1
        for axis in axes:
            if a.shape[axis] % step:
                raise ValueError(
                    f"UnDilate: axis {axis} has length {a.shape[axis]}, not a multiple of "
                    f"dilation + 1 = {step} (undilate inverts dilate)"
                )
        return a[
            tuple(slice(None, None, step) if i in axes else slice(None) for i in range(a.ndim))
        ]
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        return dilate(out_grad, self.axes, self.dilation)
        ### END YOUR SOLUTION


def undilate(a: Tensor, axes: Tuple[int, ...], dilation: int) -> Tensor:
    return UnDilate(axes, dilation)(a)


Padding = Union[int, Tuple[Tuple[int, int], Tuple[int, int]]]


def _spatial_padding(padding: Padding) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """``padding`` as ``((top, bottom), (left, right))``."""
    if isinstance(padding, (int, numbers.Integral)):
        return (int(padding), int(padding)), (int(padding), int(padding))
    (top, bottom), (left, right) = padding
    return (int(top), int(bottom)), (int(left), int(right))


def _reads_input(size: int, first: int, step: int, count: int) -> bool:
    """Whether one of the rows ``first + step * k`` (k < count, step > 0) is one of the input's
    ``size`` rows ``0 .. size - 1`` rather than padding."""
    lowest = max(0, -(first // step))  # the first k with first + step * k >= 0
    highest = min(count - 1, (size - 1 - first) // step)  # the last k with a row < size
    return lowest <= highest


def _live_taps(size: int, before: int, kernel: int, stride: int, dilation: int, out: int):
    """The first and last kernel tap, along one axis, that reads at least one element of the
    input rather than padding: tap ``t`` of output ``i`` reads input row
    ``i * stride + t * dilation - before``."""

    def live(tap):
        return _reads_input(size, tap * dilation - before, stride, out)

    first = next((tap for tap in range(kernel) if live(tap)), None)
    if first is None:
        return 0, kernel - 1
    last = next(tap for tap in range(kernel - 1, first - 1, -1) if live(tap))
    return first, last


def _drop_dead_taps(shape, b, pad_h, pad_w, stride: int, dilation: int):
    """The weights ``b`` without the leading and trailing kernel rows and columns that only
    ever multiply padding, and the padding that goes with them; the output does not change.

    A 3x3 kernel on a 1x1 image with padding 1 is its centre tap alone: ResNet9's last block
    (and the input gradients of every convolution, padded by K - 1) would otherwise multiply
    nine times as many zeros as numbers."""
    (top, bottom), (left, right) = pad_h, pad_w
    kernel_h, kernel_w = b.shape[0], b.shape[1]
    out_h = (shape[1] + top + bottom - (kernel_h - 1) * dilation - 1) // stride + 1
    out_w = (shape[2] + left + right - (kernel_w - 1) * dilation - 1) // stride + 1
    if out_h <= 0 or out_w <= 0:  # the caller reports it
        return b, pad_h, pad_w
    first_h, last_h = _live_taps(shape[1], top, kernel_h, stride, dilation, out_h)
    first_w, last_w = _live_taps(shape[2], left, kernel_w, stride, dilation, out_w)
    if (first_h, last_h, first_w, last_w) == (0, kernel_h - 1, 0, kernel_w - 1):
        return b, pad_h, pad_w
    b = b[first_h : last_h + 1, first_w : last_w + 1]
    pad_h = (top - first_h * dilation, bottom - (kernel_h - 1 - last_h) * dilation)
    pad_w = (left - first_w * dilation, right - (kernel_w - 1 - last_w) * dilation)
    return b, pad_h, pad_w


def _live_outputs(size: int, before: int, kernel: int, stride: int, dilation: int, out: int):
    """The first and last output, along one axis, with at least one tap on the input rather
    than on padding (output ``i``, tap ``t`` reads row ``i * stride + t * dilation - before``),
    or None when there is none."""

    def live(i):
        return _reads_input(size, i * stride - before, dilation, kernel)

    first = next((i for i in range(out) if live(i)), None)
    if first is None:
        return None
    return first, next(i for i in range(out - 1, first - 1, -1) if live(i))


def _skip_dead_outputs(shape, kernel_hw, pad_h, pad_w, stride: int, dilation: int):
    """For outputs that read only padding, hence are zero: the padding that leaves them out,
    and the zero border that puts them back, ``(pad_h, pad_w, border)``; ``border`` is None
    when every output reads the input.

    The weight gradient of a 3x3 convolution on ResNet9's 1x1 images is a convolution whose
    3x3 output has one such entry in the middle and eight zeros around it."""
    windows = []
    for size, (before, after), kernel in zip(shape[1:3], (pad_h, pad_w), kernel_hw):
        out = (size + before + after - (kernel - 1) * dilation - 1) // stride + 1
        live = _live_outputs(size, before, kernel, stride, dilation, out) if out > 0 else None
        if live is None:
            return pad_h, pad_w, None
        windows.append((before, kernel, out, live))
    if all(live == (0, out - 1) for _, _, out, live in windows):
        return pad_h, pad_w, None
    padding, border = [], [(0, 0)]
    for size, (before, kernel, out, (first, last)) in zip(shape[1:3], windows):
        new_before = before - first * stride
        # Just enough after the input for the outputs first..last (negative: a crop).
        new_after = (last - first) * stride + (kernel - 1) * dilation + 1 - size - new_before
        padding.append((new_before, new_after))
        border.append((first, out - 1 - last))
    return padding[0], padding[1], tuple(border + [(0, 0)])


class Conv(TensorOp):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    ``out[n, i, j, o] = Σ_{di, dj, c} x[n, i*s + di*d, j*s + dj*d, c] * w[di, dj, c, o]``,
    where ``x`` is the input zero-padded by ``padding``, ``s`` the stride and ``d`` the
    dilation (the spacing of the kernel taps; 1 for an ordinary convolution).

    Args:
        stride: step between neighbouring output positions.
        padding: zeros added around H and W, either one int for all four sides or
            ``((top, bottom), (left, right))``; a negative amount crops instead (the
            gradients use that).
        dilation: step between neighbouring kernel taps. The gradients need it: the weight
            gradient of a stride-``s`` convolution is a convolution with dilation ``s``, and
            the input gradient of a dilation-``d`` one has dilation ``d``; so the op is closed
            under differentiation and gradients of gradients work.

    Shape:
        input ``(N, H, W, C_in)`` (NHWC), weight ``(K_h, K_w, C_in, C_out)``, output
        ``(N, (H + top + bottom - (K_h - 1) * d - 1) // s + 1, ..., C_out)`` (W alike).
    """

    def __init__(self, stride: int = 1, padding: Padding = 0, dilation: int = 1):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def compute(self, a, b):
        ### BEGIN YOUR SOLUTION (hw4)
        if a.ndim != 4 or b.ndim != 4:
            raise ValueError(
                f"Conv takes an NHWC input and (K, K, C_in, C_out) weights, got {a.shape} "
                f"and {b.shape}"
            )
        kernel_h, kernel_w, channels_in, channels_out = b.shape
        if a.shape[3] != channels_in:
            raise ValueError(f"Conv: input has {a.shape[3]} channels, weights {channels_in}")
        pad_h, pad_w = _spatial_padding(self.padding)
        b, pad_h, pad_w = _drop_dead_taps(a.shape, b, pad_h, pad_w, self.stride, self.dilation)
        kernel_h, kernel_w = b.shape[0], b.shape[1]
        pad_h, pad_w, zero_border = _skip_dead_outputs(
            a.shape, (kernel_h, kernel_w), pad_h, pad_w, self.stride, self.dilation
        )
        a = _pad_or_crop(a, ((0, 0), pad_h, pad_w, (0, 0)))
        batch, height, width, _ = a.shape
        # The kernel's extent on the input once its taps are `dilation` apart.
        span_h = (kernel_h - 1) * self.dilation + 1
        span_w = (kernel_w - 1) * self.dilation + 1
        if height < span_h or width < span_w:
            raise ValueError(
                f"Conv: padded input {height}x{width} is smaller than the kernel "
                f"{kernel_h}x{kernel_w}"
                + (f" dilated by {self.dilation}" if self.dilation > 1 else "")
            )
        out_h = (height - span_h) // self.stride + 1
        out_w = (width - span_w) // self.stride + 1
        # im2col without copying: a 6-D view whose entry (n, i, j, di, dj, c) is the input
        # pixel under kernel tap (di, dj) at output position (i, j). Strides in elements of
        # the padded input, whatever its layout (a transposed view is fine); the stride of the
        # conv is a bigger step over i and j, the dilation a bigger step over di and dj.
        stride_n, stride_h, stride_w, stride_c = _strides_of(a)
        patches = _as_strided(
            a,
            (batch, out_h, out_w, kernel_h, kernel_w, channels_in),
            (
                stride_n,
                stride_h * self.stride,
                stride_w * self.stride,
                stride_h * self.dilation,
                stride_w * self.dilation,
                stride_c,
            ),
        )
        patch_size = kernel_h * kernel_w * channels_in
        # One matmul, each row one output pixel's receptive field. Reshaping the view to
        # (pixels, patch_size) would copy it; _view_matmul reads it in place where it can.
        out = _view_matmul(patches, 3, array_api.reshape(b, (patch_size, channels_out)))
        out = array_api.reshape(out, (batch, out_h, out_w, channels_out))
        return out if zero_border is None else _pad_or_crop(out, zero_border)
        ### END YOUR SOLUTION

    def gradient(self, out_grad: Tensor, node: Tensor):
        ### BEGIN YOUR SOLUTION (hw4)
        x, weight = node.inputs
        kernel_h, kernel_w, _, _ = weight.shape
        (top, bottom), (left, right) = _spatial_padding(self.padding)
        stride, dilation = self.stride, self.dilation
        reach_h, reach_w = (kernel_h - 1) * dilation, (kernel_w - 1) * dilation
        # Rows (columns) of the padded input past the last output's receptive field: the
        # forward pass never reads them.
        unread_h = (x.shape[1] + top + bottom - reach_h - 1) % stride
        unread_w = (x.shape[2] + left + right - reach_w - 1) % stride

        # d/dx: padded input row p gets g[i] * w[t] for every i*s + t*d = p. Put the adjoint
        # back on the input grid (dilate: g[i] at row i*s) and correlate it with the kernel
        # flipped in space and with its channels swapped, taps d apart, with "full" padding
        # (K - 1) * d; then remove the forward padding again (negative padding crops). dilate
        # leaves s - 1 zeros after the last row; `extra` of them fall beyond the padded input.
        # Skipped when x needs no gradient (a batch of images): for a strided first layer it
        # is the most expensive part of backward.
        # (With taps 1 apart, _ConvOfDilated computes the same without the dilated zeros.)
        grad_x = None
        if x.requires_grad:
            extra_h, extra_w = stride - 1 - unread_h, stride - 1 - unread_w
            flipped = transpose(flip(weight, (0, 1)), (2, 3))  # (K_h, K_w, C_out, C_in)
            padding = (
                (reach_h - top, reach_h - bottom - extra_h),
                (reach_w - left, reach_w - right - extra_w),
            )
            if stride > 1 and dilation == 1:
                grad_x = _ConvOfDilated(stride, padding)(out_grad, flipped)
            else:
                grad = dilate(out_grad, (1, 2), stride - 1) if stride > 1 else out_grad
                grad_x = conv(grad, flipped, stride=1, padding=padding, dilation=dilation)

        # d/dw[t] = Σ_{n, i} x[n, i*s + t*d] g[n, i]: a correlation of the input with the
        # adjoint as the kernel, in which the batch axis plays the role of the channels that
        # get summed; the adjoint's taps are s apart (dilation s, no zeros to multiply) and
        # the weight's taps d apart (stride d). The unread rows are cropped.
        # (_ConvWeightGradient computes the same as one product, without the transposes.)
        if not weight.requires_grad:
            return grad_x, None
        grad_w = _ConvWeightGradient((kernel_h, kernel_w), stride, self.padding, dilation)(
            x, out_grad
        )
        return grad_x, grad_w
        ### END YOUR SOLUTION


def conv(a: Tensor, b: Tensor, stride: int = 1, padding: Padding = 1, dilation: int = 1) -> Tensor:
    """``Conv(stride, padding, dilation)(a, b)``; note the helper's default ``padding=1`` (the
    op's is 0), kept from the course."""
    return Conv(stride, padding, dilation)(a, b)


class _ConvWeightGradient(TensorOp):
    """The weight gradient of ``Conv(stride, padding, dilation)`` with ``kernel`` = (K_h, K_w)
    taps, from its input ``x`` (N, H, W, C_in) and output adjoint ``g`` (N, H', W', C_out):
    ``dw[t, c, o] = Σ_{n, i, j} x_padded[n, i*s + t_h*d, j*s + t_w*d, c] g[n, i, j, o]``.

    The same numbers as Conv.gradient's formula (a convolution of the transposed input with
    the transposed adjoint), as one product ``patches.T @ g`` of the forward pass's im2col view
    with the adjoint as it lies: no transposed copy of the input, of the adjoint or of the
    result. Taps that only ever read padding get zeros without being computed. The gradient is
    the formula's.
    """

    def __init__(self, kernel: Tuple[int, int], stride: int, padding: Padding, dilation: int):
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.dilation = dilation

    def compute(self, x, g):
        stride, dilation = self.stride, self.dilation
        (kernel_h, kernel_w), channels_out = self.kernel, g.shape[3]
        batch, out_h, out_w, _ = g.shape
        channels = x.shape[3]
        (top, bottom), (left, right) = _spatial_padding(self.padding)
        live = [
            _live_taps(size, before, kernel, stride, dilation, out)
            for size, before, kernel, out in (
                (x.shape[1], top, kernel_h, out_h),
                (x.shape[2], left, kernel_w, out_w),
            )
        ]
        (first_h, last_h), (first_w, last_w) = live
        taps_h, taps_w = last_h - first_h + 1, last_w - first_w + 1
        # Only the rows and columns the live taps read: from row first*d - before on.
        reach_h = (out_h - 1) * stride + (taps_h - 1) * dilation + 1
        reach_w = (out_w - 1) * stride + (taps_w - 1) * dilation + 1
        start_h, start_w = first_h * dilation - top, first_w * dilation - left
        x = _pad_or_crop(
            x,
            (
                (0, 0),
                (-start_h, start_h + reach_h - x.shape[1]),
                (-start_w, start_w + reach_w - x.shape[2]),
                (0, 0),
            ),
        )
        stride_n, stride_h, stride_w, stride_c = _strides_of(x)
        # (t_h, t_w, c) x (n, i, j): the forward im2col view, transposed.
        patches_t = _as_strided(
            x,
            (taps_h, taps_w, channels, batch, out_h, out_w),
            (
                stride_h * dilation,
                stride_w * dilation,
                stride_c,
                stride_n,
                stride_h * stride,
                stride_w * stride,
            ),
        )
        adjoint = array_api.reshape(g, (batch * out_h * out_w, channels_out))
        grad = array_api.reshape(
            _view_matmul(patches_t, 3, adjoint), (taps_h, taps_w, channels, channels_out)
        )
        if (taps_h, taps_w) == (kernel_h, kernel_w):
            return grad
        pad = ((first_h, kernel_h - 1 - last_h), (first_w, kernel_w - 1 - last_w), (0, 0), (0, 0))
        return _pad_or_crop(grad, pad)

    def gradient(self, out_grad: Tensor, node: Tensor):
        # Conv.gradient's formula, through a described-only conv node.
        x, g = node.inputs
        (top, bottom), (left, right) = _spatial_padding(self.padding)
        kernel_h, kernel_w = self.kernel
        unread_h = (x.shape[1] + top + bottom - (kernel_h - 1) * self.dilation - 1) % self.stride
        unread_w = (x.shape[2] + left + right - (kernel_w - 1) * self.dilation - 1) % self.stride
        x_t = transpose(x, (0, 3))
        g_t = transpose(transpose(g, (0, 1)), (1, 2))
        padding = ((top, bottom - unread_h), (left, right - unread_w))
        conv_op = Conv(self.dilation, padding, self.stride)
        formula = deferred(conv_op, x_t, g_t)
        grad_x_t, grad_g_t = conv_op.gradient(
            transpose(transpose(out_grad, (1, 2)), (0, 1)), formula
        )
        grad_x = None if grad_x_t is None else transpose(grad_x_t, (0, 3))
        grad_g = None if grad_g_t is None else transpose(transpose(grad_g_t, (1, 2)), (0, 1))
        return grad_x, grad_g


def _subpixel_layout(size: int, before: int, after: int, kernel: int, factor: int):
    """Along one axis of ``conv(dilate(g), w)`` (stride 1, dilation 1; g of length ``size``
    dilated by ``factor``, padded by ``before`` and ``after``, a kernel of ``kernel`` taps):
    output ``a + factor * u`` (phase ``a``) is ``sum over m < span of g[u + m + low] *
    w_a[m]``, where phase a's kernel ``w_a`` holds ``w[first + factor * j]`` at ``m = shift + j``
    (j < taps) and zeros elsewhere: only the taps that land on g's elements, not on the zeros
    between them. Returns ``(out, count, span, low, phases)`` with ``count`` outputs per phase
    (the last ones past ``out`` are dropped) and ``phases`` the ``(a, first, taps, shift)`` of
    each phase that has taps; None when there is no output."""
    out = size * factor + before + after - kernel + 1
    if out <= 0 or size * factor + min(before, 0) + min(after, 0) < 0:
        return None  # (no output, or crops longer than the dilated input: no such phases)
    phases = []
    for a in range(min(factor, out)):
        first = (before - a) % factor
        taps = len(range(first, kernel, factor))
        if taps:
            phases.append((a, first, taps, (a + first - before) // factor))
    low = min((shift for _, _, _, shift in phases), default=0)
    span = max((taps + shift - low for _, _, taps, shift in phases), default=0)
    phases = [(a, first, taps, shift - low) for a, first, taps, shift in phases]
    return out, -(-out // factor), span, low, phases


class _ConvOfDilated(TensorOp):
    """``conv(dilate(g, (1, 2), factor - 1), w, stride=1, padding=padding)``, computed from
    ``g`` without the zeros that dilate puts between its pixels: the input gradient of a
    convolution with stride ``factor`` (Conv.gradient's reference), where most products of
    the plain formula multiply those zeros (3 of 4 at stride 2).

    Each output phase (row mod factor, column mod factor) only meets every factor-th kernel
    tap: it is a stride-1 convolution of ``g`` itself with that slice of the kernel. The
    slices, shifted into one common window of taps, become the columns of one weight matrix,
    so a single product of g's im2col view computes every phase at once (sub-pixel
    convolution); its (phase row, phase column) columns are then interleaved into the
    output's rows and columns. The gradient is the plain formula's.
    """

    def __init__(self, factor: int, padding: Padding):
        self.factor = factor
        self.padding = padding

    def compute(self, g, w):
        factor = self.factor
        (top, bottom), (left, right) = _spatial_padding(self.padding)
        batch, height, width, channels = g.shape
        kernel_h, kernel_w, _, channels_out = w.shape
        layout_h = _subpixel_layout(height, top, bottom, kernel_h, factor)
        layout_w = _subpixel_layout(width, left, right, kernel_w, factor)
        if layout_h is None or layout_w is None:  # the plain convolution's way
            return Conv(1, self.padding).compute(Dilate((1, 2), factor - 1).compute(g), w)
        out_h, count_h, span_h, low_h, phases_h = layout_h
        out_w, count_w, span_w, low_w, phases_w = layout_w
        if not phases_h or not phases_w:  # every tap lands on a zero
            return array_api.zeros(
                (batch, out_h, out_w, channels_out), dtype=g.dtype, device=g.device
            )
        # The weights of every phase: (window taps, channels) x (phase row, phase col, out).
        weights = array_api.zeros(
            (span_h, span_w, channels, factor, factor, channels_out), dtype=w.dtype, device=w.device
        )
        for a, first_h, taps_h, shift_h in phases_h:
            for b, first_w, taps_w, shift_w in phases_w:
                weights[shift_h : shift_h + taps_h, shift_w : shift_w + taps_w, :, a, b, :] = w[
                    first_h::factor, first_w::factor
                ]
        weights = array_api.reshape(
            weights, (span_h * span_w * channels, factor * factor * channels_out)
        )
        # g's im2col view over the common window (padded so that every read is inside).
        pad_h = (max(-low_h, 0), max(count_h + span_h - 2 + low_h - (height - 1), 0))
        pad_w = (max(-low_w, 0), max(count_w + span_w - 2 + low_w - (width - 1), 0))
        g = _pad_or_crop(g, ((0, 0), pad_h, pad_w, (0, 0)))
        stride_n, stride_h, stride_w, stride_c = _strides_of(g)
        patches = _as_strided(
            g[:, low_h + pad_h[0] :, low_w + pad_w[0] :, :],
            (batch, count_h, count_w, span_h, span_w, channels),
            (stride_n, stride_h, stride_w, stride_h, stride_w, stride_c),
        )
        out = array_api.reshape(
            _view_matmul(patches, 3, weights),
            (batch, count_h, count_w, factor, factor, channels_out),
        )
        # (n, u, v, a, b) -> (n, u * factor + a, v * factor + b); past out_h, out_w: dropped.
        out = array_api.reshape(
            array_api.transpose(out, (0, 1, 3, 2, 4, 5)),
            (batch, count_h * factor, count_w * factor, channels_out),
        )
        return out[:, :out_h, :out_w, :]

    def gradient(self, out_grad: Tensor, node: Tensor):
        # The plain formula's gradient; its convolution node is only described, never run.
        g, w = node.inputs
        dilated = dilate(g, (1, 2), self.factor - 1)
        conv_op = Conv(1, self.padding)
        grad_dilated, grad_w = conv_op.gradient(out_grad, deferred(conv_op, dilated, w))
        grad_g = None if grad_dilated is None else undilate(grad_dilated, (1, 2), self.factor - 1)
        return grad_g, grad_w
