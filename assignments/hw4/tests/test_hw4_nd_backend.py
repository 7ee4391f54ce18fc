"""Public tests of hw4, part 1 (``new_nd_backend``): needle's ops on the NDArray backend and
the three new ops ``Tanh``, ``Stack`` and ``Split`` (plus ``Sigmoid``).

Run them with ``make check K=new_nd_backend`` or ``python -m pytest tests -k new_nd_backend``.
Forward results are compared with PyTorch, gradients with PyTorch's autograd on the same
float32 inputs and the same output adjoint.
"""

from __future__ import annotations

import needle as ndl
import numpy as np
import pytest
from hw4_support import assert_close, assert_on_device, rand, tensor

pytestmark = pytest.mark.hw4


def torch_grads(torch, fn, arrays, adjoint):
    """Gradients of ``sum(fn(*inputs) * adjoint)`` w.r.t. each input, by PyTorch."""
    inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(torch.tensor(adjoint))
    return out.detach().numpy(), [x.grad.numpy() for x in inputs]


# ---------------------------------------------------------------------------------------------
# Tanh and Sigmoid


SHAPES = [(5,), (3, 4), (2, 3, 4)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_new_nd_backend_tanh_forward(device, torch, shape):
    x = rand(*shape, low=-3, high=3, seed=1)
    got = ndl.tanh(tensor(x, device))
    assert_on_device(got, device, "tanh(x)")
    assert_close(got, torch.tanh(torch.tensor(x)), what="tanh(x)")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_new_nd_backend_tanh_backward(device, torch, shape):
    x, adjoint = rand(*shape, low=-3, high=3, seed=2), rand(*shape, seed=3)
    xt = tensor(x, device)
    ndl.tanh(xt).backward(tensor(adjoint, device, requires_grad=False))
    _, (expected,) = torch_grads(torch, torch.tanh, [x], adjoint)
    assert xt.grad is not None, "tanh's gradient did not reach its input"
    assert_close(xt.grad, expected, what="d tanh(x)/dx * adjoint = adjoint * (1 - tanh(x)^2)")


def test_new_nd_backend_tanh_saturates(device):
    x = np.array([-60.0, -20.0, 0.0, 20.0, 60.0], dtype=np.float32)
    got = ndl.tanh(tensor(x, device)).numpy()
    assert np.all(np.isfinite(got)), f"tanh of large inputs must stay finite, got {got}"
    assert_close(got, [-1, -1, 0, 1, 1], rtol=0, atol=1e-6, what="tanh saturates at +-1")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_new_nd_backend_sigmoid_forward_and_backward(device, torch, shape):
    x, adjoint = rand(*shape, low=-6, high=6, seed=4), rand(*shape, seed=5)
    xt = tensor(x, device)
    out = ndl.sigmoid(xt)
    assert_on_device(out, device, "sigmoid(x)")
    expected_out, (expected_grad,) = torch_grads(torch, torch.sigmoid, [x], adjoint)
    assert_close(out, expected_out, what="sigmoid(x) = 1 / (1 + exp(-x))")
    out.backward(tensor(adjoint, device, requires_grad=False))
    assert_close(xt.grad, expected_grad, what="d sigmoid/dx = s * (1 - s)")


def test_new_nd_backend_sigmoid_of_large_inputs_is_finite(device):
    x = np.array([-200.0, -50.0, 0.0, 50.0, 200.0], dtype=np.float32)
    got = ndl.sigmoid(tensor(x, device)).numpy()
    assert np.all(np.isfinite(got)), f"sigmoid must not overflow, got {got}"
    assert_close(got, [0, 0, 0.5, 1, 1], rtol=0, atol=1e-6, what="sigmoid at the extremes")


# ---------------------------------------------------------------------------------------------
# Stack and Split


STACK_CASES = [
    ((5,), 3, 0),
    ((5,), 3, 1),
    ((3, 4), 2, 0),
    ((3, 4), 4, 1),
    ((3, 4), 3, 2),
    ((2, 3, 4), 5, 1),
    ((2, 3, 4), 2, 3),
    ((4,), 1, 0),
]


@pytest.mark.parametrize("shape, count, axis", STACK_CASES, ids=str)
def test_new_nd_backend_stack_forward(device, torch, shape, count, axis):
    arrays = [rand(*shape, seed=10 + i) for i in range(count)]
    got = ndl.stack([tensor(a, device) for a in arrays], axis=axis)
    assert_on_device(got, device, f"stack(..., axis={axis})")
    expected = torch.stack([torch.tensor(a) for a in arrays], dim=axis)
    assert_close(got, expected, rtol=0, atol=0, what=f"stack of {count} arrays on axis {axis}")


@pytest.mark.parametrize("shape, count, axis", STACK_CASES, ids=str)
def test_new_nd_backend_stack_backward(device, torch, shape, count, axis):
    arrays = [rand(*shape, seed=20 + i) for i in range(count)]
    inputs = [tensor(a, device) for a in arrays]
    out = ndl.stack(inputs, axis=axis)
    adjoint = rand(*out.shape, seed=30)
    out.backward(tensor(adjoint, device, requires_grad=False))
    _, expected = torch_grads(torch, lambda *xs: torch.stack(xs, dim=axis), arrays, adjoint)
    for i, (x, want) in enumerate(zip(inputs, expected)):
        assert x.grad is not None, f"stack's gradient did not reach input {i}"
        assert_close(x.grad, want, rtol=0, atol=0, what=f"gradient of stacked input {i}")


def test_new_nd_backend_stack_accepts_a_tensor_tuple(device):
    a, b = rand(2, 3, seed=40), rand(2, 3, seed=41)
    pair = ndl.make_tuple(tensor(a, device), tensor(b, device))
    assert_close(ndl.stack(pair, axis=1), np.stack([a, b], axis=1), rtol=0, atol=0)


SPLIT_CASES = [((4,), 0), ((3, 5), 0), ((3, 5), 1), ((2, 3, 4), 1), ((2, 3, 4), 2), ((1, 3), 0)]


@pytest.mark.parametrize("shape, axis", SPLIT_CASES, ids=str)
def test_new_nd_backend_split_forward(device, shape, axis):
    x = rand(*shape, seed=50)
    pieces = ndl.split(tensor(x, device), axis=axis)
    assert isinstance(pieces, ndl.TensorTuple), (
        f"split returns a TensorTuple (one tensor per slice), got {type(pieces).__name__}"
    )
    assert len(pieces) == shape[axis], f"expected {shape[axis]} slices, got {len(pieces)}"
    for i in range(shape[axis]):
        assert_on_device(pieces[i], device, f"slice {i}")
        assert_close(
            pieces[i],
            np.take(x, i, axis=axis),
            rtol=0,
            atol=0,
            what=f"slice {i} along axis {axis} (the axis is removed)",
        )


@pytest.mark.parametrize("shape, axis", SPLIT_CASES, ids=str)
def test_new_nd_backend_split_backward(device, shape, axis):
    x = rand(*shape, seed=60)
    xt = tensor(x, device)
    pieces = ndl.split(xt, axis=axis)
    weights = [rand(*pieces[i].shape, seed=70 + i) for i in range(len(pieces))]
    # loss = sum_i <piece_i, weight_i>, so d loss / dx is the weights stacked on `axis`.
    loss = None
    for i, w in enumerate(weights):
        term = ndl.summation(pieces[i] * tensor(w, device, requires_grad=False))
        loss = term if loss is None else loss + term
    loss.backward()
    assert xt.grad is not None, "split's gradient did not reach its input"
    assert_close(
        xt.grad,
        np.stack(weights, axis=axis),
        rtol=0,
        atol=0,
        what=f"gradient of split(x, {axis}): the slices' adjoints stacked back on axis {axis}",
    )


def test_new_nd_backend_split_then_stack_is_identity(device):
    x = rand(3, 4, 2, seed=80)
    xt = tensor(x, device)
    rebuilt = ndl.stack(ndl.split(xt, axis=1), axis=1)
    assert_close(rebuilt, x, rtol=0, atol=0, what="stack(split(x, 1), 1)")
    rebuilt.backward(tensor(np.ones_like(x), device, requires_grad=False))
    assert_close(xt.grad, np.ones_like(x), rtol=0, atol=0, what="gradient of the round trip")
