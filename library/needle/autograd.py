"""The autodiff engine: values, ops, tensors, and reverse-mode differentiation.

A computation is a graph of ``Value`` nodes. A node made by an op remembers the op and its
input nodes; calling an op (``EWiseAdd()(a, b)``) creates the node and, in eager mode,
computes its array (``cached_data``) at once. ``Tensor.backward()`` walks the graph from the
output back to the leaves in reverse topological order and asks each op for the gradients of
its inputs. Those gradients are themselves built out of ops, so a gradient is a Tensor with a
graph of its own, and it can be differentiated again.

Nothing here knows the math of any particular op: ops live in ``needle.ops`` and are reached
through ``needle.ops`` at call time, which keeps this module free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Iterable, Optional, Sequence, Tuple, TypeVar, Union

import numpy

import needle
from needle.backend_selection import array_api, default_device

if TYPE_CHECKING:
    from needle.backend_selection import Device

# Eager (False) computes every node as it is created; lazy (True) waits until data is needed.
LAZY_MODE = False
# Live Tensor objects, for tests that check an optimizer builds no graph.
TENSOR_COUNTER = 0

Shape = Tuple[int, ...]

# The kind of node an op makes: Tensor (TensorOp) or TensorTuple (TensorTupleOp).
NodeT = TypeVar("NodeT", bound="Value")
ValueT = TypeVar("ValueT", bound="Value")
TensorT = TypeVar("TensorT", bound="Tensor")
# An adjoint: the gradient of a Tensor node is a Tensor, of a TensorTuple node a TensorTuple.
AdjointT = TypeVar("AdjointT", "Tensor", "TensorTuple")


class Op(Generic[NodeT]):
    """An operator: ``compute`` on raw arrays, ``gradient`` with needle ops.

    Generic over the node type it makes, ``NodeT``: ``TensorOp`` is ``Op[Tensor]`` (so its
    ``gradient`` receives Tensors) and ``TensorTupleOp`` is ``Op[TensorTuple]``.
    """

    def __call__(self, *args: Any) -> NodeT:
        raise NotImplementedError()

    def compute(self, *args: Any) -> Any:
        """Compute the output array from the input arrays (``NDArray``s; no graph, no Tensors).

        A ``TensorOp`` returns one array, a ``TensorTupleOp`` a tuple of arrays."""
        raise NotImplementedError()

    def gradient(self, out_grad: NodeT, node: NodeT) -> Union[Value, Tuple[Value, ...]]:
        """Partial adjoints of the inputs of ``node``, given the adjoint ``out_grad`` of its
        output. Must be built from needle ops so that it is itself differentiable."""
        raise NotImplementedError()

    def gradient_as_tuple(self, out_grad: NodeT, node: NodeT) -> Tuple[Value, ...]:
        """``gradient``, always as a tuple (one entry per input), each Tensor entry in its
        input's dtype (the numpy backend can mix float32 and float64 tensors)."""
        output = self.gradient(out_grad, node)
        if isinstance(output, tuple):
            grads = output
        elif isinstance(output, list):
            grads = tuple(output)
        else:
            grads = (output,)
        if array_api is numpy:  # the NDArray backends hold float32 only: nothing to cast
            grads = tuple(_as_dtype_of(grad, x) for grad, x in zip(grads, node.inputs))
        return grads


class TensorOp(Op["Tensor"]):
    """An op whose output is a single Tensor."""

    def __call__(self, *args: Any) -> Tensor:
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op["TensorTuple"]):
    """An op whose output is a tuple of tensors (a ``TensorTuple``)."""

    def __call__(self, *args: Any) -> TensorTuple:
        return TensorTuple.make_from_op(self, args)


class _CastTo(TensorOp):
    """Convert a Tensor to ``dtype`` (numpy backend). Gradient: ``g`` converted back."""

    def __init__(self, dtype):
        self.dtype = dtype

    def compute(self, a):
        return a.astype(self.dtype)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return _CastTo(node.inputs[0].dtype)(out_grad)


def _as_dtype_of(grad: Any, x: Any) -> Any:
    """``grad`` in ``x``'s dtype when both are realized Tensors of different dtypes: a float32
    input of a float64 computation gets a float32 gradient, as its optimiser update needs."""
    if (
        isinstance(grad, Tensor)
        and isinstance(x, Tensor)
        and grad.cached_data is not None
        and x.cached_data is not None
        and grad.cached_data.dtype != x.cached_data.dtype
        and numpy.issubdtype(grad.cached_data.dtype, numpy.floating)
        and numpy.issubdtype(x.cached_data.dtype, numpy.floating)
    ):
        return _CastTo(x.cached_data.dtype)(grad)
    return grad


class Value:
    """A node of the computational graph."""

    op: Optional[Op[Any]]
    # Tensor or TensorTuple nodes; typed Any so that an op's gradient can use Tensor's methods
    # on the inputs of its (Tensor) node without casts.
    inputs: Tuple[Any, ...]
    cached_data: Any
    requires_grad: bool
    # The adjoint that backward() sets: a Tensor, or a TensorTuple for a TensorTuple node.
    grad: Any

    def realize_cached_data(self):
        """The node's array, computing it (and any unrealized ancestors) if needed."""
        if self.cached_data is not None:
            return self.cached_data
        inputs = [x.cached_data for x in self.inputs]
        if self.op is not None and all(data is not None for data in inputs):  # the eager case
            self.cached_data = self.op.compute(*inputs)  # one compute, no search
            return self.cached_data
        # Lazy mode can leave long chains unrealized: realize them in topological order,
        # without recursion, so deep graphs cannot overflow the stack.
        for node in _unrealized_topo_order(self):
            node.cached_data = node.op.compute(*[x.cached_data for x in node.inputs])
        return self.cached_data

    def is_leaf(self) -> bool:
        return self.op is None

    def __del__(self):
        global TENSOR_COUNTER
        TENSOR_COUNTER -= 1

    def _init(
        self,
        op: Optional[Op],
        inputs: Iterable[Value],
        *,
        num_outputs: int = 1,
        cached_data: Any = None,
        requires_grad: Optional[bool] = None,
    ):
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1
        inputs = tuple(inputs)
        if requires_grad is None:
            requires_grad = any(x.requires_grad for x in inputs)
        self.op = op
        self.inputs = inputs
        self.num_outputs = num_outputs
        self.cached_data = cached_data
        self.requires_grad = requires_grad

    @classmethod
    def make_const(cls: type[ValueT], data: Any, *, requires_grad: bool = False) -> ValueT:
        value = cls.__new__(cls)
        value._init(None, (), cached_data=data, requires_grad=requires_grad)
        return value

    @classmethod
    def make_from_op(cls: type[ValueT], op: Op[Any], inputs: Sequence[Value]) -> ValueT:
        # The hot path of every op call: one pass over the inputs for the device check, the
        # gradient flag and their arrays, and the compute, with no intermediate lists.
        global TENSOR_COUNTER
        inputs = tuple(inputs)
        if len(inputs) > 1:
            _check_same_device(op, inputs)
        requires_grad = False
        for x in inputs:
            if x.requires_grad:
                requires_grad = True
                break
        value = cls.__new__(cls)
        TENSOR_COUNTER += 1
        value.num_outputs = 1
        value.requires_grad = requires_grad
        value.op, value.inputs, value.cached_data = op, inputs, None
        if LAZY_MODE:
            return value
        if len(inputs) == 1:  # (one and two inputs, most ops, without building a list)
            array = inputs[0].cached_data
            if array is None:  # an input left unrealized by lazy mode
                value.realize_cached_data()
            else:
                value.cached_data = op.compute(array)
        elif len(inputs) == 2:
            a, b = inputs[0].cached_data, inputs[1].cached_data
            if a is None or b is None:
                value.realize_cached_data()
            else:
                value.cached_data = op.compute(a, b)
        else:
            arrays = [x.cached_data for x in inputs]
            if any(array is None for array in arrays):
                value.realize_cached_data()
            else:
                value.cached_data = op.compute(*arrays)
        if not requires_grad:
            # Nothing upstream needs a gradient: keep the result, drop the graph.
            value.op, value.inputs = None, ()
        return value


def deferred(op: TensorOp, *inputs: Tensor) -> Tensor:
    """``op(*inputs)`` as a node whose array is computed the first time something reads it
    (``realize_cached_data``), as lazy mode does for every node.

    For a value that may never be used: the adjoint of an input that needs no gradient (a
    dropout mask, a one-hot matrix) is not read by ``compute_gradient_of_variables``, so a
    gradient that returns it deferred never pays for it; code that does read it gets the
    right values.
    """
    value = Tensor.__new__(Tensor)
    value._init(op, inputs)
    return value


def _unrealized_topo_order(root: Value) -> list:
    """Unrealized ancestors of ``root`` (itself included), inputs before outputs."""
    order, visited = [], {id(root)}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child.cached_data is None and id(child) not in visited:
                visited.add(id(child))
                stack.append((child, iter(child.inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _check_same_device(op: Op[Any], inputs: Tuple[Value, ...]) -> None:
    if len(inputs) < 2:
        return
    if len(inputs) == 2:  # the common case, without building a list of devices
        a, b = inputs
        data_a, data_b = a.cached_data, b.cached_data
        if (
            data_a is not None
            and data_b is not None
            and getattr(data_a, "device", None) is getattr(data_b, "device", 0)
        ):
            return
    devices = [x.device for x in inputs if isinstance(x, Tensor)]
    if any(d != devices[0] for d in devices[1:]):
        names = ", ".join(str(d) for d in devices)
        raise ValueError(
            f"{type(op).__name__} got inputs on different devices ({names}); "
            "move them to one device first, e.g. Tensor(x, device=ndl.cpu())"
        )


class TensorTuple(Value):
    """A tuple of tensors produced by one op (e.g. ``split``)."""

    # Positions whose element is known to be all zeros (an adjoint that has not reached them).
    zero_parts: frozenset = frozenset()

    def __len__(self) -> int:
        return len(self.realize_cached_data())

    def __getitem__(self, index: int):
        return needle.ops.tuple_get_item(self, index)

    def tuple(self):
        return tuple(self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return "needle.TensorTuple" + str(self.tuple())

    def __str__(self) -> str:
        return self.__repr__()

    def __add__(self, other: TensorTuple) -> TensorTuple:
        """Element-wise sum. Elements known to be zero (``zero_parts``, set by the gradient
        of ``tuple_get_item``) are not added, so the adjoint of an n-way ``split`` costs n
        additions of arrays, not n²."""
        assert isinstance(other, TensorTuple) and len(self) == len(other)
        zeros_a, zeros_b = self.zero_parts, other.zero_parts
        if not (self.requires_grad or other.requires_grad):  # no graph to record
            arrays = tuple(
                b if i in zeros_a else a if i in zeros_b else a + b
                for i, (a, b) in enumerate(
                    zip(self.realize_cached_data(), other.realize_cached_data())
                )
            )
            total = TensorTuple.make_const(arrays)
        else:
            total = needle.ops.make_tuple(
                *[
                    other[i] if i in zeros_a else self[i] if i in zeros_b else self[i] + other[i]
                    for i in range(len(self))
                ]
            )
        total.zero_parts = zeros_a & zeros_b
        return total

    @property
    def device(self):
        return self[0].device if len(self) else default_device()

    def detach(self) -> TensorTuple:
        return TensorTuple.make_const(self.realize_cached_data())


class Tensor(Value):
    """An n-dimensional array that records the ops applied to it."""

    grad: Optional[Tensor]

    # numpy defers to Tensor's reflected operators: ``np.array([2.0]) * x`` calls
    # ``x.__rmul__`` (a scalar op) instead of building an object array of Tensors.
    __array_ufunc__ = None

    def __init__(
        self,
        array,
        *,
        device: Optional[Device] = None,
        dtype: Optional[str] = None,
        requires_grad: bool = True,
    ):
        if isinstance(array, Tensor):
            if device is None:
                device = array.device
            if dtype is None:
                dtype = array.dtype
            if device == array.device and dtype == array.dtype:
                cached_data = array.realize_cached_data()
            else:
                cached_data = Tensor._array_from_numpy(array.numpy(), device=device, dtype=dtype)
        else:
            device = device if device else default_device()
            cached_data = Tensor._array_from_numpy(array, device=device, dtype=dtype)
        self._init(None, (), cached_data=cached_data, requires_grad=requires_grad)

    @staticmethod
    def _array_from_numpy(numpy_array, device, dtype):
        if array_api is numpy:
            if dtype is None:
                # numpy backend, as in the course: a numpy array (or numpy scalar) keeps its
                # dtype, so float64 inputs give float64 results and gradients; Python numbers
                # and lists get the library's default, float32.
                is_numpy = isinstance(numpy_array, (numpy.ndarray, numpy.generic))
                dtype = None if is_numpy else "float32"
            return numpy.array(numpy_array, dtype=dtype)
        return array_api.array(numpy_array, device=device, dtype=dtype or "float32")

    @classmethod
    def make_const(cls: type[TensorT], data: Any, requires_grad: bool = False) -> TensorT:
        if isinstance(data, Tensor):
            data = data.realize_cached_data()
        return super().make_const(data, requires_grad=requires_grad)

    # ---- data access -------------------------------------------------------------------
    @property
    def data(self) -> Tensor:
        """The same values as a new leaf that records no history."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor):
        assert isinstance(value, Tensor), f"expected a Tensor, got {type(value).__name__}"
        assert value.dtype == self.dtype, f"dtype mismatch: {value.dtype} vs {self.dtype}"
        self.cached_data = value.realize_cached_data()

    def detach(self) -> Tensor:
        """A new leaf Tensor sharing this one's array, outside any graph."""
        return Tensor.make_const(self.realize_cached_data())

    @property
    def shape(self) -> Shape:
        return tuple(self.realize_cached_data().shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self):
        return self.realize_cached_data().dtype

    @property
    def device(self):
        data = self.realize_cached_data()
        if array_api is numpy:
            return default_device()
        return data.device

    def numpy(self) -> numpy.ndarray:
        data = self.realize_cached_data()
        if array_api is numpy:
            return data
        return data.numpy()

    def backward(self, out_grad: Optional[Tensor] = None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every ancestor.

        ``out_grad`` defaults to ones, i.e. the gradient of ``self.sum()``.

        Every node keeps its ``grad``, as in the course; an intermediate node keeps the values
        only, detached from the graph that computed them (a leaf keeps its graph, so that
        ``x.grad`` can be differentiated again). An intermediate adjoint is usually built from
        the node itself (the gradient of ``exp(x)`` reads ``exp(x)``): kept with its graph, it
        would tie each step's graph into reference cycles, whose arrays then wait for Python's
        cycle collector, long after the step, instead of being freed as soon as the step's
        graph is dropped. (``compute_gradient_of_variables`` called directly keeps every
        graph.)
        """
        if out_grad is None:
            out_grad = Tensor.make_const(self.device.ones(*self.shape, dtype=self.dtype))
        compute_gradient_of_variables(self, out_grad)
        _detach_intermediate_grads(self)

    def __repr__(self) -> str:
        return "needle.Tensor(" + str(self.realize_cached_data()) + ")"

    def __str__(self) -> str:
        return self.realize_cached_data().__str__()

    # ---- operators: tensor forms pick element-wise ops, scalar forms the *Scalar ops -----
    def __add__(self, other):
        if isinstance(other, Tensor):
            return needle.ops.EWiseAdd()(self, other)
        return needle.ops.AddScalar(other)(self)

    def __mul__(self, other):
        if isinstance(other, Tensor):
            return needle.ops.EWiseMul()(self, other)
        return needle.ops.MulScalar(other)(self)

    def __pow__(self, other):
        if isinstance(other, Tensor):
            return needle.ops.EWisePow()(self, other)
        return needle.ops.PowerScalar(other)(self)

    def __rpow__(self, other):
        # c ** x = exp(x * ln c), for a positive scalar c
        return needle.ops.exp(self * float(numpy.log(numpy.asarray(other).reshape(()))))

    def __sub__(self, other):
        if isinstance(other, Tensor):
            # a - b is a + (-b); the add's shape check names the operation the user wrote.
            return needle.ops.EWiseAdd(name="subtract")(self, needle.ops.Negate()(other))
        return needle.ops.AddScalar(-other)(self)

    def __rsub__(self, other):
        return needle.ops.AddScalar(other)(needle.ops.Negate()(self))

    def __truediv__(self, other):
        if isinstance(other, Tensor):
            return needle.ops.EWiseDiv()(self, other)
        return needle.ops.DivScalar(other)(self)

    def __rtruediv__(self, other):
        return needle.ops.MulScalar(other)(needle.ops.PowerScalar(-1)(self))

    def __matmul__(self, other):
        return needle.ops.MatMul()(self, other)

    def __rmatmul__(self, other):
        return needle.ops.MatMul()(other, self)

    def __neg__(self):
        return needle.ops.Negate()(self)

    __radd__ = __add__
    __rmul__ = __mul__

    def matmul(self, other):
        return needle.ops.MatMul()(self, other)

    def sum(self, axes=None):
        return needle.ops.Summation(axes)(self)

    def broadcast_to(self, shape):
        return needle.ops.BroadcastTo(shape)(self)

    def reshape(self, shape):
        return needle.ops.Reshape(shape)(self)

    def transpose(self, axes=None):
        return needle.ops.Transpose(axes)(self)


def _constant_of(value: ValueT) -> ValueT:
    """A constant of ``value``'s type holding its array: ``make_const`` without its checks
    (backward makes one per intermediate node)."""
    global TENSOR_COUNTER
    constant = type(value).__new__(type(value))
    TENSOR_COUNTER += 1
    constant.op, constant.inputs, constant.num_outputs = None, (), 1
    constant.cached_data, constant.requires_grad = value.cached_data, False
    return constant


def _detach_intermediate_grads(root: Value) -> None:
    """Replaces ``grad`` on every non-leaf node that ``root`` depends on by a constant holding
    the same array (a lazily computed one that is not realized yet keeps its graph)."""
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.op is None:  # a leaf keeps its gradient's graph, and has no inputs
            continue
        grad = node.grad
        if grad is not None and grad.op is not None and grad.cached_data is not None:
            node.grad = _constant_of(grad)
        for child in node.inputs:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)


def find_topo_sort(node_list: list[Value]) -> list[Value]:
    """All nodes that ``node_list`` depends on, in topological order (inputs first).

    The order is that of a post-order depth-first search which visits each node's inputs
    in order, starting from each node of ``node_list`` in turn; each node appears once.
    An explicit stack replaces recursion, so graphs of any depth can be sorted.
    """
    ### BEGIN YOUR SOLUTION (hw1)
    visited: set[int] = set()
    topo_order: list[Value] = []
    for root in node_list:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack = [(root, iter(root.inputs))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if id(child) not in visited:
                    visited.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:  # every input is placed: the node itself comes next
                stack.pop()
                topo_order.append(node)
    return topo_order
    ### END YOUR SOLUTION


def compute_gradient_of_variables(output_tensor: Tensor, out_grad: Tensor) -> None:
    """Reverse-mode differentiation: set ``node.grad`` on every node ``output_tensor``
    depends on, given the adjoint ``out_grad`` of the output.

    Each node's adjoint is the sum of the partial adjoints its consumers sent it; the node
    then sends each of its inputs ``op.gradient`` of that adjoint. Adjoints are Tensors built
    from ops, so ``x.grad`` can itself be differentiated.
    """
    ### BEGIN YOUR SOLUTION (hw1)
    partial_adjoints: dict[int, list[Any]] = {id(output_tensor): [out_grad]}
    for node in reversed(find_topo_sort([output_tensor])):
        contributions = partial_adjoints.pop(id(node), None)
        if contributions is None:  # nothing downstream of this node reaches the output
            continue
        node.grad = sum_node_list(contributions)
        if node.op is None:  # a leaf
            continue
        input_grads = node.op.gradient_as_tuple(node.grad, node)
        for input_node, grad in zip(node.inputs, input_grads):
            if input_node.requires_grad:
                partial_adjoints.setdefault(id(input_node), []).append(grad)
    ### END YOUR SOLUTION


def sum_node_list(node_list: Sequence[AdjointT]) -> AdjointT:
    """The sum of a non-empty list of nodes, without creating a redundant zero node."""
    total = node_list[0]
    for node in node_list[1:]:
        total = total + node
    return total
