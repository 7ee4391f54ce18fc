"""Public tests of hw1: op forwards and gradients, topological sort, reverse-mode AD, and the
two-layer network trained with needle.

Run them all with ``make check``, or one part with e.g. ``python -m pytest tests -k backward``.
Expected values come from numpy (forwards) and from central finite differences in float64
(gradients), never from needle itself.
"""

from __future__ import annotations

import math

import needle as ndl
import numpy as np
import pytest

pytestmark = pytest.mark.hw1


# ---------------------------------------------------------------------------------------------
# helpers


def tensor(array, requires_grad=True) -> ndl.Tensor:
    return ndl.Tensor(np.asarray(array, dtype=np.float32), requires_grad=requires_grad)


def rand(*shape, low=-1.0, high=1.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    return rng.uniform(low, high, size=shape).astype(np.float32)


def check_forward(op, numpy_fn, *arrays, rtol=1e-6, atol=1e-6):
    """Compare the op's result with numpy's on the same float32 inputs."""
    result = op(*[tensor(a) for a in arrays])
    assert isinstance(result, ndl.Tensor), f"expected a needle Tensor, got {type(result)}"
    expected = numpy_fn(*arrays)
    got = result.numpy()
    assert got.shape == np.shape(expected), f"shape: expected {np.shape(expected)}, got {got.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def numerical_vjp(numpy_fn, arrays, cotangent, eps=1e-6):
    """d/d(each input) of sum(numpy_fn(*inputs) * cotangent), by central differences in float64."""
    inputs = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for x in inputs:
        grad = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            saved = x[index]
            x[index] = saved + eps
            plus = np.sum(numpy_fn(*inputs) * cotangent)
            x[index] = saved - eps
            minus = np.sum(numpy_fn(*inputs) * cotangent)
            x[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def check_gradient(op, numpy_fn, *arrays, rtol=1e-4, atol=1e-4, seed=0):
    """Check ``op``'s gradient rule alone: ``node.op.gradient_as_tuple(cotangent, node)``.

    The rule is called directly (not through ``backward()``), so these tests do not depend on
    your reverse-mode AD; a random cotangent catches transposed or mis-broadcast results.
    """
    inputs = [tensor(a) for a in arrays]
    node = op(*inputs)
    cotangent = np.random.default_rng(seed).standard_normal(node.shape).astype(np.float32)
    grads = node.op.gradient_as_tuple(tensor(cotangent, requires_grad=False), node)
    expected = numerical_vjp(numpy_fn, arrays, cotangent.astype(np.float64))
    assert len(grads) == len(arrays), f"expected {len(arrays)} gradients, got {len(grads)}"
    for i, (grad, want) in enumerate(zip(grads, expected)):
        assert isinstance(grad, ndl.Tensor), (
            f"gradient {i} must be a needle Tensor built with needle ops, got {type(grad)}"
        )
        assert grad.shape == want.shape, (
            f"gradient {i} must have its input's shape {want.shape}, got {grad.shape}"
        )
        np.testing.assert_allclose(
            grad.numpy(), want, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}"
        )


def check_backward(build, numpy_fn, *arrays, rtol=1e-4, atol=1e-4):
    """Full reverse mode: ``build(*tensors).backward()`` then every input's ``.grad``."""
    inputs = [tensor(a) for a in arrays]
    build(*inputs).backward()
    expected = numerical_vjp(lambda *xs: np.sum(numpy_fn(*xs)), arrays, np.float64(1.0))
    for i, (x, want) in enumerate(zip(inputs, expected)):
        assert x.grad is not None, f"input {i} has no .grad after backward()"
        assert isinstance(x.grad, ndl.Tensor), f"input {i}: .grad must be a Tensor"
        np.testing.assert_allclose(
            x.grad.numpy(), want, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}"
        )


def swap(axes):
    def numpy_fn(a):
        order = list(range(a.ndim))
        i, j = axes if axes is not None else (-2, -1)
        order[i], order[j] = order[j], order[i]
        return np.transpose(a, order)

    return numpy_fn


# ---------------------------------------------------------------------------------------------
# Question 1: forward computations


def test_power_scalar_forward():
    a = rand(3, 4, low=0.5, high=2.0)
    check_forward(lambda x: ndl.power_scalar(x, 3), lambda x: x**3, a)
    check_forward(lambda x: x**0.5, np.sqrt, a)
    check_forward(lambda x: ndl.power_scalar(x, -1), lambda x: 1 / x, a)


def test_ewisepow_forward():
    a, b = rand(3, 4, low=0.5, high=2.0), rand(3, 4, seed=1)
    check_forward(ndl.power, np.power, a, b, rtol=1e-5)


def test_divide_forward():
    a, b = rand(3, 4), rand(3, 4, low=0.5, high=2.0, seed=1)
    check_forward(ndl.divide, np.divide, a, b)
    check_forward(lambda x, y: x / y, np.divide, a, b)


def test_divide_scalar_forward():
    a = rand(5, 2)
    check_forward(lambda x: ndl.divide_scalar(x, 4.5), lambda x: x / np.float32(4.5), a)
    check_forward(lambda x: x / 2, lambda x: x / 2, a)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((5, 4), (4, 3)), ((6, 5, 4), (6, 4, 3)), ((5, 4), (6, 4, 3)), ((6, 5, 4), (4, 3))],
    ids=["2d", "batched", "2d@3d", "3d@2d"],
)
def test_matmul_forward(shape_a, shape_b):
    check_forward(ndl.matmul, np.matmul, rand(*shape_a), rand(*shape_b, seed=1), rtol=1e-5)


@pytest.mark.parametrize("axes", [None, 1, 0, (0, 2), (2,)], ids=str)
def test_summation_forward(axes):
    a = rand(4, 3, 5)
    check_forward(lambda x: ndl.summation(x, axes), lambda x: np.sum(x, axis=axes), a, rtol=1e-5)


@pytest.mark.parametrize(
    "shape, target",
    [((3, 1), (3, 3)), ((1, 3), (3, 3)), ((1,), (3, 3, 3)), ((), (3, 3)), ((5, 4, 1), (5, 4, 3))],
    ids=str,
)
def test_broadcast_to_forward(shape, target):
    check_forward(
        lambda x: ndl.broadcast_to(x, target), lambda x: np.broadcast_to(x, target), rand(*shape)
    )


@pytest.mark.parametrize(
    "shape, target", [((5, 4), (4, 5)), ((2, 3, 4), (6, 4)), ((6,), (2, 1, 3))]
)
def test_reshape_forward(shape, target):
    check_forward(lambda x: ndl.reshape(x, target), lambda x: np.reshape(x, target), rand(*shape))


def test_negate_forward():
    check_forward(ndl.negate, np.negative, rand(3, 4))
    check_forward(lambda x: -x, np.negative, rand(2, 2, seed=1))


@pytest.mark.parametrize("axes", [None, (0, 1), (1, 2), (0, 2)], ids=str)
def test_transpose_forward(axes):
    a = rand(3, 4, 5)
    check_forward(lambda x: ndl.transpose(x, axes), swap(axes), a)


def test_transpose_forward_4d():
    check_forward(lambda x: ndl.transpose(x, (2, 3)), swap((2, 3)), rand(2, 3, 4, 5))


def test_log_forward():
    check_forward(ndl.log, np.log, rand(3, 4, low=0.1, high=3.0), rtol=1e-5)


def test_exp_forward():
    check_forward(ndl.exp, np.exp, rand(3, 4), rtol=1e-5)


def test_relu_forward():
    a = np.array([[-1.5, 0.0, 2.0], [3.0, -0.1, 0.5]], dtype=np.float32)
    check_forward(ndl.relu, lambda x: np.maximum(x, 0), a)


# ---------------------------------------------------------------------------------------------
# Question 2: gradients (each op's rule alone)


def test_power_scalar_backward():
    a = rand(3, 4, low=0.5, high=2.0)
    check_gradient(lambda x: ndl.power_scalar(x, 3), lambda x: x**3, a)
    check_gradient(lambda x: ndl.power_scalar(x, -0.5), lambda x: x**-0.5, a)


def test_ewisepow_backward():
    a, b = rand(3, 4, low=0.5, high=2.0), rand(3, 4, seed=1)
    check_gradient(ndl.power, np.power, a, b)


def test_divide_backward():
    a, b = rand(3, 5), rand(3, 5, low=0.5, high=2.0, seed=1)
    check_gradient(ndl.divide, np.divide, a, b)


def test_divide_scalar_backward():
    check_gradient(lambda x: ndl.divide_scalar(x, 3.5), lambda x: x / 3.5, rand(3, 5))


def test_matmul_simple_backward():
    check_gradient(ndl.matmul, np.matmul, rand(5, 4), rand(4, 3, seed=1))


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((6, 6, 5, 4), (6, 6, 4, 3)), ((6, 6, 5, 4), (4, 3)), ((5, 4), (6, 6, 4, 3))],
    ids=["4d@4d", "4d@2d", "2d@4d"],
)
def test_matmul_batched_backward(shape_a, shape_b):
    check_gradient(ndl.matmul, np.matmul, rand(*shape_a), rand(*shape_b, seed=1))


def test_reshape_backward():
    check_gradient(lambda x: ndl.reshape(x, (4, 5)), lambda x: x.reshape(4, 5), rand(5, 4))
    check_gradient(lambda x: ndl.reshape(x, (6, 4)), lambda x: x.reshape(6, 4), rand(2, 3, 4))


def test_negate_backward():
    check_gradient(ndl.negate, np.negative, rand(2, 3, 4))


@pytest.mark.parametrize("axes", [None, (0, 1), (1, 2)], ids=str)
def test_transpose_backward(axes):
    check_gradient(lambda x: ndl.transpose(x, axes), swap(axes), rand(3, 5, 4))


@pytest.mark.parametrize(
    "shape, target",
    [
        ((3, 1), (3, 3)),
        ((1, 3), (3, 3)),
        ((1,), (3, 3, 3)),
        ((), (3, 3, 3)),
        ((5, 4, 1), (5, 4, 3)),
    ],
    ids=str,
)
def test_broadcast_to_backward(shape, target):
    check_gradient(
        lambda x: ndl.broadcast_to(x, target), lambda x: np.broadcast_to(x, target), rand(*shape)
    )


@pytest.mark.parametrize(
    "shape, axes",
    [((5, 4), (1,)), ((5, 4), (0,)), ((5, 4), (0, 1)), ((5, 4, 1), (0, 1)), ((5, 4), None)],
    ids=str,
)
def test_summation_backward(shape, axes):
    check_gradient(lambda x: ndl.summation(x, axes), lambda x: np.sum(x, axis=axes), rand(*shape))


def test_log_backward():
    check_gradient(ndl.log, np.log, rand(5, 4, low=0.5, high=3.0))


def test_exp_backward():
    check_gradient(ndl.exp, np.exp, rand(5, 4))


def test_relu_backward():
    a = rand(5, 4)
    a[np.abs(a) < 0.05] = 0.5  # keep finite differences away from the kink at 0
    check_gradient(ndl.relu, lambda x: np.maximum(x, 0), a)


# ---------------------------------------------------------------------------------------------
# Question 3: topological sort


def test_topo_sort_chain_and_shared_input():
    a, b = tensor([1.0]), tensor([2.0])
    c = a * b
    d = c + a
    order = ndl.autograd.find_topo_sort([d])
    assert [id(n) for n in order] == [id(a), id(b), id(c), id(d)], (
        "expected the post-order of a depth-first search from d that visits inputs in order: "
        "a, b, c, d"
    )


def test_topo_sort_diamond():
    x1, x2, x3 = tensor([1.0]), tensor([2.0]), tensor([3.0])
    y = x1 + x2
    z = y * x3
    w = z + y
    out = w * x1
    order = ndl.autograd.find_topo_sort([out])
    names = {
        id(n): name for n, name in zip([x1, x2, x3, y, z, w, out], "x1 x2 x3 y z w out".split())
    }
    got = [names.get(id(n), "?") for n in order]
    assert got == ["x1", "x2", "y", "x3", "z", "w", "out"], f"got order {got}"


def test_topo_sort_several_outputs():
    a, b = tensor([1.0]), tensor([2.0])
    c = ndl.exp(a)
    d = b + c
    e = c * a
    order = ndl.autograd.find_topo_sort([d, e])
    names = {id(n): name for n, name in zip([a, b, c, d, e], "abcde")}
    got = [names.get(id(n), "?") for n in order]
    assert got == ["b", "a", "c", "d", "e"], f"each node must appear once, in DFS post-order: {got}"


def test_topo_sort_deep_graph():
    x = tensor([1.0])
    y = x
    for _ in range(3000):
        y = y + 1
    order = ndl.autograd.find_topo_sort([y])
    assert len(order) == 3001 and order[0] is x and order[-1] is y, (
        "a chain of 3000 ops must sort (a recursive search hits Python's recursion limit: "
        "use an explicit stack)"
    )


# ---------------------------------------------------------------------------------------------
# Question 4: reverse-mode automatic differentiation


def test_compute_gradient_matmul_chain():
    a, b, c = rand(5, 4), rand(4, 3, seed=1), rand(5, 3, seed=2)
    check_backward(
        lambda x, y, z: ndl.summation((x @ y) * z),
        lambda x, y, z: np.sum((x @ y) * z),
        a,
        b,
        c,
    )


def test_compute_gradient_reused_node():
    # x feeds three consumers: its adjoint is the sum of the three partial adjoints.
    check_backward(
        lambda x: ndl.summation(x * x + x / 3 + ndl.exp(x)),
        lambda x: np.sum(x * x + x / 3 + np.exp(x)),
        rand(4, 3),
    )


def test_compute_gradient_log_broadcast():
    a, b = rand(4, 1, low=0.5, high=2.0), rand(4, 3, seed=1)
    check_backward(
        lambda x, y: ndl.summation(ndl.log(ndl.broadcast_to(x, (4, 3)) + y * y)),
        lambda x, y: np.sum(np.log(np.broadcast_to(x, (4, 3)) + y * y)),
        a,
        b,
    )


def test_compute_gradient_second_order():
    x2, x3 = tensor(rand(3, 2)), tensor(rand(3, 2, seed=1))
    y = ndl.summation(x2 * x2 + x2 * x3)
    y.backward()
    grad_x2, grad_x3 = x2.grad, x3.grad
    np.testing.assert_allclose(grad_x2.numpy(), 2 * x2.numpy() + x3.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_x3.numpy(), x2.numpy(), rtol=1e-6)
    assert grad_x2.op is not None, (
        "x.grad must be built from needle ops (a graph node), so that it can be differentiated"
    )
    # d/dx2 sum(2 x2 + x3) = 2 and d/dx3 = 1, by differentiating the gradient itself.
    ndl.summation(grad_x2).backward()
    np.testing.assert_allclose(x2.grad.numpy(), np.full((3, 2), 2.0), rtol=1e-6)
    np.testing.assert_allclose(x3.grad.numpy(), np.full((3, 2), 1.0), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Questions 5 and 6: softmax loss and a two-layer network, with needle


def simple_ml():
    from apps import simple_ml as module  # imported here: a broken file fails only Q5/Q6

    return module


def one_hot(y, k=10):
    matrix = np.zeros((y.shape[0], k), dtype=np.float32)
    matrix[np.arange(y.shape[0]), y] = 1
    return matrix


def reference_loss(Z, y):
    total = 0.0
    for row, label in zip(np.asarray(Z, dtype=np.float64), y):
        top = row.max()
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[label]
    return total / len(y)


@pytest.fixture(scope="module")
def mnist():
    from needle.data import locate

    images, labels = locate.mnist_paths("train")
    X, y = simple_ml().parse_mnist(images, labels)
    return X[:2000], y[:2000]


def test_softmax_loss_ndl_values(mnist):
    X, y = mnist
    loss = simple_ml().softmax_loss(tensor(np.zeros((100, 10))), tensor(one_hot(y[:100])))
    assert isinstance(loss, ndl.Tensor), "softmax_loss must return a needle Tensor"
    assert float(loss.numpy()) == pytest.approx(math.log(10), rel=1e-6)
    Z = np.random.default_rng(0).standard_normal((100, 10)).astype(np.float32)
    loss = simple_ml().softmax_loss(tensor(Z), tensor(one_hot(y[:100])))
    assert float(loss.numpy()) == pytest.approx(reference_loss(Z, y[:100]), rel=1e-5)


def test_softmax_loss_ndl_gradient(mnist):
    _, y = mnist
    labels = one_hot(y[:20])
    Z = np.random.default_rng(1).standard_normal((20, 10)).astype(np.float32)
    check_backward(
        lambda z: simple_ml().softmax_loss(z, tensor(labels, requires_grad=False)),
        lambda z: reference_loss(z, y[:20]),
        Z,
    )


def two_layer_numpy_loss(X, y, hidden):
    def loss(weights):
        W1 = weights[: X.shape[1] * hidden].reshape(X.shape[1], hidden)
        W2 = weights[X.shape[1] * hidden :].reshape(hidden, -1)
        return reference_loss(np.maximum(X @ W1, 0) @ W2, y)

    return loss


def test_nn_epoch_ndl_gradient_step():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=50).astype(np.uint8)
    W1_0 = (rng.standard_normal((5, 10)) / np.sqrt(10)).astype(np.float32)
    W2_0 = (rng.standard_normal((10, 3)) / np.sqrt(3)).astype(np.float32)
    weights = np.concatenate([W1_0.ravel(), W2_0.ravel()])
    gradient = numerical_vjp(two_layer_numpy_loss(X, y, 10), [weights], np.float64(1.0))[0]
    W1, W2 = simple_ml().nn_epoch(X, y, tensor(W1_0), tensor(W2_0), lr=1.0, batch=50)
    assert isinstance(W1, ndl.Tensor) and isinstance(W2, ndl.Tensor), "return (W1, W2) Tensors"
    np.testing.assert_allclose(
        W1.numpy(),
        W1_0 - gradient[:50].reshape(5, 10),
        rtol=1e-4,
        atol=1e-5,
        err_msg="W1 after one full-batch step with lr=1",
    )
    np.testing.assert_allclose(
        W2.numpy(),
        W2_0 - gradient[50:].reshape(10, 3),
        rtol=1e-4,
        atol=1e-5,
        err_msg="W2 after one full-batch step with lr=1",
    )


def expected_nn_epoch(X, y, W1, W2, lr, batch):
    """One epoch of the two-layer network written out in numpy (float64): minibatches in
    order, the last one possibly smaller, each step averaged over its own rows."""
    W1, W2 = np.array(W1, dtype=np.float64), np.array(W2, dtype=np.float64)
    for start in range(0, X.shape[0], batch):
        X_b, y_b = np.asarray(X[start : start + batch], dtype=np.float64), y[start : start + batch]
        hidden = np.maximum(X_b @ W1, 0)
        logits = hidden @ W2
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        G2 = (probs - one_hot(y_b, W2.shape[1])) / X_b.shape[0]
        G1 = (hidden > 0) * (G2 @ W2.T)
        W1, W2 = W1 - lr * X_b.T @ G1, W2 - lr * hidden.T @ G2
    return W1, W2


def test_nn_epoch_ndl_minibatches_in_order():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((35, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=35).astype(np.uint8)
    W1_0 = (rng.standard_normal((5, 8)) * 0.3).astype(np.float32)
    W2_0 = (rng.standard_normal((8, 3)) * 0.3).astype(np.float32)
    W1, W2 = simple_ml().nn_epoch(X, y, tensor(W1_0), tensor(W2_0), lr=0.3, batch=10)
    E1, E2 = expected_nn_epoch(X, y, W1_0, W2_0, lr=0.3, batch=10)  # 10, 10, 10, then 5 rows
    message = "batches in order, the last (smaller) one included and averaged over its size"
    np.testing.assert_allclose(W1.numpy(), E1, rtol=1e-4, atol=1e-5, err_msg=f"W1: {message}")
    np.testing.assert_allclose(W2.numpy(), E2, rtol=1e-4, atol=1e-5, err_msg=f"W2: {message}")


def graph_size(*tensors) -> int:
    """How many graph nodes the tensors reach through ``.inputs``."""
    seen, stack = set(), list(tensors)
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.inputs)
    return len(seen)


def test_nn_epoch_ndl_builds_no_graph_across_steps():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=60).astype(np.uint8)
    W1_0 = (rng.standard_normal((5, 8)) * 0.3).astype(np.float32)
    W2_0 = (rng.standard_normal((8, 3)) * 0.3).astype(np.float32)
    sizes = {}
    for steps in (1, 6):
        W1, W2 = simple_ml().nn_epoch(
            X[: 10 * steps], y[: 10 * steps], tensor(W1_0), tensor(W2_0), lr=0.1, batch=10
        )
        sizes[steps] = graph_size(W1, W2)
    assert sizes[6] <= sizes[1], (
        f"the returned weights reach {sizes[1]} graph nodes after 1 step but {sizes[6]} after "
        "6: each update keeps the previous graph (W = W - lr * W.grad), so every backward pass "
        "walks the whole history; build the new weights from the values (numpy() / detach())"
    )


def test_nn_epoch_ndl_learns_mnist(mnist):
    X, y = mnist
    rng = np.random.default_rng(0)
    W1 = tensor(rng.standard_normal((784, 100)) / np.sqrt(100))
    W2 = tensor(rng.standard_normal((100, 10)) / np.sqrt(10))
    W1, W2 = simple_ml().nn_epoch(X, y, W1, W2, lr=0.2, batch=100)
    logits = np.maximum(X @ W1.numpy(), 0) @ W2.numpy()
    error = np.mean(logits.argmax(axis=1) != y)
    assert error < 0.25, f"after one epoch the training error should be below 25%, got {error:.1%}"
