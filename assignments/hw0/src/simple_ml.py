"""hw0: machine-learning refresher in plain numpy (and, in simple_ml_ext.cpp, in C++).

You write the functions whose bodies are marked ``BEGIN YOUR SOLUTION (hw0)``; the helpers at
the bottom (``loss_err``, ``train_softmax``, ``train_nn``) are provided and use them.

Conventions: ``X`` holds one example per row (float32), ``y`` the integer labels (uint8), and
every epoch walks the data in order, in minibatches of ``batch`` rows (the last one may be
smaller), without shuffling.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np

try:  # the C++ version, once `make` has compiled src/simple_ml_ext.cpp
    from simple_ml_ext import softmax_regression_epoch_cpp
except ImportError:  # pragma: no cover - depends on the build
    softmax_regression_epoch_cpp = None


def add(x, y):
    """Return ``x + y`` (numbers or numpy arrays). A warm-up to see the workflow.

    Args:
        x: a number or numpy array.
        y: a number or numpy array.

    Returns:
        their sum, of the type Python/numpy gives it.
    """
    ### BEGIN YOUR SOLUTION (hw0)
    return x + y
    ### END YOUR SOLUTION


def parse_mnist(image_filename: str, label_filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST image file and label file in the gzip'd IDX format.

    The image file starts with four big-endian uint32 numbers (magic 2051, the number of
    images, rows, columns) followed by the pixels as uint8, row by row; the label file with two
    (magic 2049, the number of labels) followed by one uint8 label per image.

    Args:
        image_filename: path of ``*-images-idx3-ubyte.gz``.
        label_filename: path of ``*-labels-idx1-ubyte.gz``.

    Returns:
        ``X``: float32 array ``(num_examples, rows * cols)``, pixels scaled so that 0 → 0.0 and
        255 → 1.0 (one global scale, not per image); ``y``: uint8 array ``(num_examples,)``
        of labels 0-9.
    """
    ### BEGIN YOUR SOLUTION (hw0)
    with gzip.open(image_filename, "rb") as stream:
        magic, count, rows, cols = struct.unpack(">4I", stream.read(16))
        if magic != 2051:
            raise ValueError(f"{image_filename}: not an IDX image file (magic {magic})")
        pixels = np.frombuffer(stream.read(count * rows * cols), dtype=np.uint8)
    with gzip.open(label_filename, "rb") as stream:
        magic, label_count = struct.unpack(">2I", stream.read(8))
        if magic != 2049:
            raise ValueError(f"{label_filename}: not an IDX label file (magic {magic})")
        labels = np.frombuffer(stream.read(label_count), dtype=np.uint8)
    if label_count != count:
        raise ValueError(f"{count} images but {label_count} labels")
    X = pixels.reshape(count, rows * cols).astype(np.float32) / np.float32(255.0)
    return X, labels.copy()
    ### END YOUR SOLUTION


def softmax_loss(Z: np.ndarray, y: np.ndarray) -> float:
    """Average softmax (cross-entropy) loss of a batch.

    ``loss = mean_i ( log sum_j exp(Z[i, j]) - Z[i, y[i]] )``

    Args:
        Z: logits, shape ``(batch_size, num_classes)``.
        y: true labels, shape ``(batch_size,)``.

    Returns:
        the average loss, a float (or 0-d numpy float).
    """
    ### BEGIN YOUR SOLUTION (hw0)
    log_normalizer = np.log(np.exp(Z).sum(axis=1))
    true_logit = Z[np.arange(Z.shape[0]), y]
    return np.mean(log_normalizer - true_logit)
    ### END YOUR SOLUTION


def softmax_regression_epoch(
    X: np.ndarray, y: np.ndarray, theta: np.ndarray, lr: float = 0.1, batch: int = 100
) -> None:
    """One epoch of minibatch SGD for softmax regression, updating ``theta`` in place.

    For each minibatch ``(X_b, y_b)`` of ``B`` rows: ``Z = softmax(X_b theta)`` (row-wise),
    ``I_y`` the one-hot labels, and ``theta -= lr * X_b^T (Z - I_y) / B``.

    Args:
        X: inputs ``(num_examples, input_dim)``.
        y: labels ``(num_examples,)``.
        theta: parameters ``(input_dim, num_classes)``, modified in place.
        lr: step size.
        batch: minibatch size.
    """
    ### BEGIN YOUR SOLUTION (hw0)
    for start in range(0, X.shape[0], batch):
        X_b, y_b = X[start : start + batch], y[start : start + batch]
        logits = X_b @ theta
        Z = np.exp(logits - logits.max(axis=1, keepdims=True))  # shifted: exp cannot overflow
        Z /= Z.sum(axis=1, keepdims=True)
        Z[np.arange(y_b.shape[0]), y_b] -= 1  # Z - I_y, without building I_y
        theta -= (lr / X_b.shape[0]) * (X_b.T @ Z).astype(theta.dtype)
    ### END YOUR SOLUTION


def nn_epoch(
    X: np.ndarray,
    y: np.ndarray,
    W1: np.ndarray,
    W2: np.ndarray,
    lr: float = 0.1,
    batch: int = 100,
) -> None:
    """One epoch of minibatch SGD for the two-layer network ``logits = ReLU(X W1) W2``.

    Per minibatch of ``B`` rows, with ``Z1 = ReLU(X_b W1)``:
    ``G2 = softmax(Z1 W2) - I_y``, ``G1 = 1{Z1 > 0} * (G2 W2^T)``,
    ``W1 -= lr * X_b^T G1 / B`` and ``W2 -= lr * Z1^T G2 / B`` (both gradients are computed
    before either weight changes). ``W1`` and ``W2`` are updated in place.

    Args:
        X: inputs ``(num_examples, input_dim)``.
        y: labels ``(num_examples,)``.
        W1: first layer weights ``(input_dim, hidden_dim)``.
        W2: second layer weights ``(hidden_dim, num_classes)``.
        lr: step size.
        batch: minibatch size.
    """
    ### BEGIN YOUR SOLUTION (hw0)
    for start in range(0, X.shape[0], batch):
        X_b, y_b = X[start : start + batch], y[start : start + batch]
        Z1 = np.maximum(X_b @ W1, 0)
        logits = Z1 @ W2
        G2 = np.exp(logits - logits.max(axis=1, keepdims=True))
        G2 /= G2.sum(axis=1, keepdims=True)
        G2[np.arange(y_b.shape[0]), y_b] -= 1
        G1 = (Z1 > 0) * (G2 @ W2.T)
        scale = lr / X_b.shape[0]
        grad_W1, grad_W2 = X_b.T @ G1, Z1.T @ G2
        W1 -= (scale * grad_W1).astype(W1.dtype)
        W2 -= (scale * grad_W2).astype(W2.dtype)
    ### END YOUR SOLUTION


# ---------------------------------------------------------------------------------------------
# Provided: evaluation and training loops.


def loss_err(h: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Softmax loss and error rate (fraction of wrong argmax predictions) of logits ``h``."""
    return float(softmax_loss(h, y)), float(np.mean(h.argmax(axis=1) != y))


def train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.5, batch=100, cpp=False):
    """Train softmax regression from ``theta = 0``, printing train/test loss and error."""
    theta = np.zeros((X_tr.shape[1], int(y_tr.max()) + 1), dtype=np.float32)
    epoch_fn = softmax_regression_epoch
    if cpp:
        if softmax_regression_epoch_cpp is None:
            raise RuntimeError("the C++ extension is not built: run `make` first")
        epoch_fn = softmax_regression_epoch_cpp
    print("| Epoch | Train Loss | Train Err | Test Loss | Test Err |")
    for epoch in range(epochs):
        epoch_fn(X_tr, y_tr, theta, lr=lr, batch=batch)
        train_loss, train_err = loss_err(X_tr @ theta, y_tr)
        test_loss, test_err = loss_err(X_te @ theta, y_te)
        print(
            f"|  {epoch:>4} |    {train_loss:.5f} |   {train_err:.5f} |   {test_loss:.5f} |"
            f"  {test_err:.5f} |"
        )
    return theta


def train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=500, epochs=10, lr=0.5, batch=100):
    """Train the two-layer network (seed 0, scaled Gaussian init), printing progress."""
    n, k = X_tr.shape[1], int(y_tr.max()) + 1
    np.random.seed(0)
    W1 = np.random.randn(n, hidden_dim).astype(np.float32) / np.sqrt(hidden_dim)
    W2 = np.random.randn(hidden_dim, k).astype(np.float32) / np.sqrt(k)
    print("| Epoch | Train Loss | Train Err | Test Loss | Test Err |")
    for epoch in range(epochs):
        nn_epoch(X_tr, y_tr, W1, W2, lr=lr, batch=batch)
        train_loss, train_err = loss_err(np.maximum(X_tr @ W1, 0) @ W2, y_tr)
        test_loss, test_err = loss_err(np.maximum(X_te @ W1, 0) @ W2, y_te)
        print(
            f"|  {epoch:>4} |    {train_loss:.5f} |   {train_err:.5f} |   {test_loss:.5f} |"
            f"  {test_err:.5f} |"
        )
    return W1, W2


if __name__ == "__main__":
    X_tr, y_tr = parse_mnist("data/train-images-idx3-ubyte.gz", "data/train-labels-idx1-ubyte.gz")
    X_te, y_te = parse_mnist("data/t10k-images-idx3-ubyte.gz", "data/t10k-labels-idx1-ubyte.gz")
    print("Training softmax regression")
    train_softmax(X_tr, y_tr, X_te, y_te, epochs=10, lr=0.1)
    print("\nTraining two layer neural network w/ 100 hidden units")
    train_nn(X_tr, y_tr, X_te, y_te, hidden_dim=100, epochs=20, lr=0.2)
