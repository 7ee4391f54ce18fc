"""Public tests of hw0 (``src/simple_ml.py`` and ``src/simple_ml_ext.cpp``).

Run them all with ``make check``, or one part with e.g. ``python -m pytest tests -k nn_epoch``.
Gradients are checked against central finite differences of the loss (in float64), so a
failure means the update your code makes is not a gradient step of the softmax loss.
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import simple_ml

pytestmark = pytest.mark.hw0


# ---------------------------------------------------------------------------------------------
# helpers (oracles written independently of the code under test)


def reference_loss(Z: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax loss, row by row in float64 with the max-shift (slow but plain)."""
    total = 0.0
    for row, label in zip(np.asarray(Z, dtype=np.float64), y):
        top = row.max()
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[label]
    return total / len(y)


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x`` (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = f(x)
        x[index] = saved - eps
        minus = f(x)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=1, keepdims=True)


def minibatches(m: int, batch: int):
    """Row slices of an epoch in order: full batches, then the smaller remainder (if any)."""
    bounds = list(range(0, m, batch)) + [m]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def expected_softmax_epoch(X, y, theta, lr, batch) -> np.ndarray:
    """The documented epoch of softmax regression, written out in float64 with one-hot I_y."""
    theta = np.array(theta, dtype=np.float64)
    k = theta.shape[1]
    for rows in minibatches(X.shape[0], batch):
        X_b = np.asarray(X[rows], dtype=np.float64)
        one_hot = np.eye(k)[y[rows]]
        theta = theta - lr * X_b.T @ (softmax_rows(X_b @ theta) - one_hot) / X_b.shape[0]
    return theta


def expected_nn_epoch(X, y, W1, W2, lr, batch) -> tuple[np.ndarray, np.ndarray]:
    """The documented epoch of the two-layer network, in float64."""
    W1, W2 = np.array(W1, dtype=np.float64), np.array(W2, dtype=np.float64)
    k = W2.shape[1]
    for rows in minibatches(X.shape[0], batch):
        X_b = np.asarray(X[rows], dtype=np.float64)
        hidden = np.maximum(X_b @ W1, 0)
        G2 = softmax_rows(hidden @ W2) - np.eye(k)[y[rows]]
        G1 = (hidden > 0) * (G2 @ W2.T)
        size = X_b.shape[0]
        W1, W2 = W1 - lr * X_b.T @ G1 / size, W2 - lr * hidden.T @ G2 / size
    return W1, W2


def small_problem(seed: int = 0, m: int = 50, n: int = 5, k: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    y = rng.integers(0, k, size=m).astype(np.uint8)
    return X, y


def read_idx_oracle(path) -> np.ndarray:
    """The raw contents of an IDX file as uint8, shaped by its header."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(mnist_dir, split="t10k"):
    return simple_ml.parse_mnist(
        str(mnist_dir / f"{split}-images-idx3-ubyte.gz"),
        str(mnist_dir / f"{split}-labels-idx1-ubyte.gz"),
    )


# ---------------------------------------------------------------------------------------------
# add


def test_add():
    assert simple_ml.add(5, 6) == 11
    result = simple_ml.add(3.2, 1.0)
    assert type(result) is float and result == pytest.approx(4.2)
    np.testing.assert_array_equal(simple_ml.add(np.array([1, 2]), np.array([3, 4])), [4, 6])


# ---------------------------------------------------------------------------------------------
# parse_mnist


def test_parse_mnist_types_and_shapes(mnist_dir):
    X, y = mnist(mnist_dir)
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray)
    assert X.dtype == np.float32, f"X must be float32, got {X.dtype}"
    assert y.dtype == np.uint8, f"y must be uint8, got {y.dtype}"
    assert X.shape == (10000, 784), f"X must be (num_examples, 784), got {X.shape}"
    assert y.shape == (10000,), f"y must be (num_examples,), got {y.shape}"


def test_parse_mnist_values(mnist_dir):
    X, y = mnist(mnist_dir)
    pixels = read_idx_oracle(mnist_dir / "t10k-images-idx3-ubyte.gz").reshape(10000, 784)
    labels = read_idx_oracle(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(y, labels, err_msg="labels differ from the file's")
    per_image = pixels / pixels.max(axis=1, keepdims=True)
    assert not np.allclose(X, per_image, atol=1e-6) or np.allclose(per_image, pixels / 255.0), (
        "X looks normalised image by image; divide every pixel by 255 instead (one global scale)"
    )
    np.testing.assert_allclose(
        X, pixels / 255.0, rtol=1e-6, atol=1e-7, err_msg="pixel values: expected raw / 255"
    )


def test_parse_mnist_train_split(mnist_dir):
    X, y = mnist(mnist_dir, "train")
    labels = read_idx_oracle(mnist_dir / "train-labels-idx1-ubyte.gz")
    assert X.shape == (labels.shape[0], 784)
    np.testing.assert_array_equal(y, labels)


# ---------------------------------------------------------------------------------------------
# softmax_loss


def test_softmax_loss_zero_logits():
    Z = np.zeros((50, 10), dtype=np.float32)
    y = (np.arange(50) % 10).astype(np.uint8)
    assert float(simple_ml.softmax_loss(Z, y)) == pytest.approx(math.log(10), rel=1e-6), (
        "with all-zero logits every class has probability 1/10, so the loss is ln(10)"
    )


def test_softmax_loss_random_logits():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((100, 10)).astype(np.float32)
    y = rng.integers(0, 10, size=100).astype(np.uint8)
    assert float(simple_ml.softmax_loss(Z, y)) == pytest.approx(reference_loss(Z, y), rel=1e-5)


def test_softmax_loss_mnist_scale(mnist_dir):
    X, y = mnist(mnist_dir)
    rng = np.random.default_rng(2)
    Z = (X[:500] @ rng.standard_normal((784, 10)).astype(np.float32) * 0.1).astype(np.float32)
    expected = reference_loss(Z, y[:500])
    assert float(simple_ml.softmax_loss(Z, y[:500])) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# softmax_regression_epoch (numpy)


def test_softmax_regression_epoch_gradient_step():
    X, y = small_problem()
    theta0 = np.random.default_rng(3).standard_normal((5, 3)) * 0.1
    gradient = numerical_gradient(lambda th: reference_loss(X @ th, y), theta0)
    theta = theta0.copy()
    returned = simple_ml.softmax_regression_epoch(X, y, theta, lr=1.0, batch=50)
    assert returned is None, "update theta in place and return None"
    np.testing.assert_allclose(
        theta,
        theta0 - gradient,
        rtol=1e-5,
        atol=1e-7,
        err_msg="one full-batch step with lr=1 must equal theta - (gradient of the mean loss)",
    )


def test_softmax_regression_epoch_minibatches_in_order():
    X, y = small_problem(seed=4, m=47)
    theta0 = np.random.default_rng(5).standard_normal((5, 3)) * 0.1
    theta = theta0.copy()
    simple_ml.softmax_regression_epoch(X, y, theta, lr=0.5, batch=10)
    # 10, 10, 10, 10, then the remaining 7 rows, whose step is averaged over 7 (not 10)
    expected = expected_softmax_epoch(X, y, theta0, lr=0.5, batch=10)
    np.testing.assert_allclose(
        theta,
        expected,
        rtol=1e-6,
        atol=1e-8,
        err_msg="an epoch steps through the batches in order, the last (smaller) one included",
    )
    full = theta0.copy()
    simple_ml.softmax_regression_epoch(X, y, full, lr=0.5, batch=47)
    assert not np.allclose(theta, full), "batch=10 must take several steps, not one"


def test_softmax_regression_epoch_learns_mnist(mnist_dir):
    X, y = mnist(mnist_dir, "train")
    X, y = X[:2000], y[:2000]
    theta = np.zeros((784, 10), dtype=np.float32)
    simple_ml.softmax_regression_epoch(X, y, theta, lr=0.5, batch=100)
    assert theta.dtype == np.float32, "theta must stay float32"
    error = np.mean((X @ theta).argmax(axis=1) != y)
    assert error < 0.2, f"after one epoch the training error should be below 20%, got {error:.1%}"


# ---------------------------------------------------------------------------------------------
# nn_epoch (numpy)


def two_layer_loss(X, y, hidden: int):
    def loss(weights):
        W1 = weights[: X.shape[1] * hidden].reshape(X.shape[1], hidden)
        W2 = weights[X.shape[1] * hidden :].reshape(hidden, -1)
        return reference_loss(np.maximum(X @ W1, 0) @ W2, y)

    return loss


def test_nn_epoch_gradient_step():
    X, y = small_problem(seed=6)
    rng = np.random.default_rng(7)
    W1_0 = rng.standard_normal((5, 10)) / np.sqrt(10)
    W2_0 = rng.standard_normal((10, 3)) / np.sqrt(3)
    gradient = numerical_gradient(
        two_layer_loss(X, y, 10), np.concatenate([W1_0.ravel(), W2_0.ravel()])
    )
    W1, W2 = W1_0.copy(), W2_0.copy()
    returned = simple_ml.nn_epoch(X, y, W1, W2, lr=1.0, batch=50)
    assert returned is None, "update W1 and W2 in place and return None"
    np.testing.assert_allclose(
        W1, W1_0 - gradient[:50].reshape(5, 10), rtol=1e-5, atol=1e-7, err_msg="W1 after one step"
    )
    np.testing.assert_allclose(
        W2, W2_0 - gradient[50:].reshape(10, 3), rtol=1e-5, atol=1e-7, err_msg="W2 after one step"
    )


def test_nn_epoch_minibatches_in_order():
    X, y = small_problem(seed=8, m=35)
    rng = np.random.default_rng(9)
    W1_0, W2_0 = rng.standard_normal((5, 8)) * 0.3, rng.standard_normal((8, 3)) * 0.3
    W1, W2 = W1_0.copy(), W2_0.copy()
    simple_ml.nn_epoch(X, y, W1, W2, lr=0.3, batch=10)
    E1, E2 = expected_nn_epoch(X, y, W1_0, W2_0, lr=0.3, batch=10)  # 10, 10, 10, then 5 rows
    message = "batches in order, the last (smaller) one included and averaged over its size"
    np.testing.assert_allclose(W1, E1, rtol=1e-6, atol=1e-8, err_msg=f"W1: {message}")
    np.testing.assert_allclose(W2, E2, rtol=1e-6, atol=1e-8, err_msg=f"W2: {message}")


def test_nn_epoch_learns_mnist(mnist_dir):
    X, y = mnist(mnist_dir, "train")
    X, y = X[:2000], y[:2000]
    rng = np.random.default_rng(0)
    W1 = (rng.standard_normal((784, 100)) / np.sqrt(100)).astype(np.float32)
    W2 = (rng.standard_normal((100, 10)) / np.sqrt(10)).astype(np.float32)
    simple_ml.nn_epoch(X, y, W1, W2, lr=0.2, batch=100)
    assert W1.dtype == np.float32 and W2.dtype == np.float32, "weights must stay float32"
    error = np.mean((np.maximum(X @ W1, 0) @ W2).argmax(axis=1) != y)
    assert error < 0.25, f"after one epoch the training error should be below 25%, got {error:.1%}"


# ---------------------------------------------------------------------------------------------
# softmax_regression_epoch_cpp (C++)


def test_softmax_regression_epoch_cpp_gradient_step(simple_ml_ext):
    X, y = small_problem(seed=10)
    X = X.astype(np.float32)
    theta0 = (np.random.default_rng(11).standard_normal((5, 3)) * 0.1).astype(np.float32)
    gradient = numerical_gradient(lambda th: reference_loss(X.astype(np.float64) @ th, y), theta0)
    theta = theta0.copy()
    simple_ml_ext.softmax_regression_epoch_cpp(X, y, theta, lr=1.0, batch=50)
    np.testing.assert_allclose(
        theta,
        theta0 - gradient,
        rtol=1e-4,
        atol=1e-5,
        err_msg="one full-batch step with lr=1 must equal theta - (gradient of the mean loss)",
    )


def test_softmax_regression_epoch_cpp_minibatches_in_order(simple_ml_ext):
    X, y = small_problem(seed=12, m=47)
    X = X.astype(np.float32)
    theta0 = (np.random.default_rng(13).standard_normal((5, 3)) * 0.1).astype(np.float32)
    theta = theta0.copy()
    simple_ml_ext.softmax_regression_epoch_cpp(X, y, theta, lr=0.5, batch=10)
    expected = expected_softmax_epoch(X, y, theta0, lr=0.5, batch=10)  # the last batch has 7
    np.testing.assert_allclose(
        theta,
        expected,
        rtol=1e-4,
        atol=1e-5,
        err_msg="an epoch steps through the batches in order, the last (smaller) one included",
    )
    assert not np.allclose(theta, theta0), "theta must change (in place)"


def test_softmax_regression_epoch_cpp_learns_mnist(simple_ml_ext, mnist_dir):
    X, y = mnist(mnist_dir, "train")
    X, y = np.ascontiguousarray(X[:2000]), y[:2000].copy()
    theta = np.zeros((784, 10), dtype=np.float32)
    simple_ml_ext.softmax_regression_epoch_cpp(X, y, theta, lr=0.5, batch=100)
    error = np.mean((X @ theta).argmax(axis=1) != y)
    assert error < 0.2, f"after one epoch the training error should be below 20%, got {error:.1%}"
