"""Training loops of the course's applications, written with needle.

- hw1: ``parse_mnist``, ``softmax_loss`` and ``nn_epoch`` — a two-layer ReLU network trained
  with SGD through needle's autodiff (weights are plain Tensors, updated by hand).
- hw4: ``epoch_general_cifar10`` / ``train_cifar10`` / ``evaluate_cifar10`` for image
  classifiers fed by a ``DataLoader``, and ``epoch_general_ptb`` / ``train_ptb`` /
  ``evaluate_ptb`` for language models fed by ``batchify``-ed Penn Treebank ids.

Every ``epoch_*`` function starts with ``np.random.seed(4)`` (dropout masks and shuffling are
then reproducible) and puts the model in training mode when given an optimiser, in eval mode
otherwise. Long loops show a tqdm progress bar with the running loss and accuracy when
``progress`` is true (default: when stderr is a terminal).
"""

from __future__ import annotations

import math
import sys
from typing import Iterable

import needle as ndl
import needle.nn as nn
import numpy as np
from needle.data import get_batch, read_idx

# ---------------------------------------------------------------------------------------------
# helpers shared by the loops

# The epoch functions' default loss instance (the course's signature takes an instance there).
SOFTMAX_LOSS = nn.SoftmaxLoss()


def model_device(model: nn.Module):
    """The device of the model's parameters (``default_device()`` for a parameter-free model)."""
    params = model.parameters()
    return params[0].device if params else ndl.default_device()


def on_device(tensor: ndl.Tensor, device) -> ndl.Tensor:
    """``tensor`` on ``device`` (the same object when it is already there)."""
    if tensor.device == device:
        return tensor
    return ndl.Tensor(tensor.numpy(), device=device, dtype=tensor.dtype, requires_grad=False)


def progress_bar(iterable: Iterable, total: int | None, desc: str, progress: bool | None):
    """A tqdm bar around ``iterable`` when ``progress`` (None: when stderr is a terminal) and
    tqdm is installed; else ``iterable`` itself."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    # Into a log file: a plain update every 30 seconds rather than a redrawn bar.
    return tqdm(iterable, total=total, desc=desc, mininterval=30, ascii=True, ncols=100)


class RunningScore:
    """Sample-weighted running averages of loss and accuracy over an epoch."""

    def __init__(self):
        self.total_loss = 0.0
        self.correct = 0
        self.count = 0

    def add(self, logits: ndl.Tensor, labels: ndl.Tensor, loss: ndl.Tensor) -> None:
        predictions = logits.numpy().argmax(axis=1)
        truth = labels.numpy().astype(np.int64).reshape(-1)
        batch = truth.shape[0]
        self.total_loss += float(loss.numpy()) * batch
        self.correct += int((predictions == truth).sum())
        self.count += batch

    @property
    def loss(self) -> float:
        return self.total_loss / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    def show(self, bar) -> None:
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{self.loss:.4f}", acc=f"{self.accuracy:.4f}", refresh=False)


# ---------------------------------------------------------------------------------------------
# hw1: a two-layer network trained by hand


def parse_mnist(image_filename: str, label_filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST-format IDX files (gzip'd or not).

    Returns:
        ``X`` float32 ``(num_examples, 784)`` scaled to ``[0, 1]``, and ``y`` uint8
        ``(num_examples,)`` labels.
    """
    images = read_idx(image_filename)
    labels = read_idx(label_filename)
    X = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return X, labels.astype(np.uint8)


def softmax_loss(Z: ndl.Tensor, y_one_hot: ndl.Tensor) -> ndl.Tensor:
    """Mean softmax cross-entropy ``mean_i (log sum_j exp(Z_ij) - Z_{i, y_i})``.

    Args:
        Z: logits ``(batch_size, num_classes)``.
        y_one_hot: the labels one-hot encoded, same shape.

    Returns:
        a scalar Tensor.
    """
    ### BEGIN YOUR SOLUTION (hw1)
    batch_size = Z.shape[0]
    log_normalizer = ndl.log(ndl.exp(Z).sum(axes=(1,)))
    true_logit = (Z * y_one_hot).sum(axes=(1,))
    return (log_normalizer - true_logit).sum() / batch_size
    ### END YOUR SOLUTION


def nn_epoch(X, y, W1, W2, lr=0.1, batch=100):
    """One epoch of minibatch SGD on ``logits = ReLU(X W1) W2`` (no biases), in order.

    For each batch the loss is built with needle ops, ``backward()`` gives the gradients,
    and the weights are replaced by new Tensors ``W - lr * grad`` (so no graph grows across
    batches).

    Args:
        X: numpy ``(num_examples, input_dim)``.
        y: numpy labels ``(num_examples,)``.
        W1: Tensor ``(input_dim, hidden_dim)``; W2: Tensor ``(hidden_dim, num_classes)``.
        lr: step size; batch: minibatch size.

    Returns:
        the updated ``(W1, W2)``.
    """
    ### BEGIN YOUR SOLUTION (hw1)
    num_classes = W2.shape[1]
    device = W1.device
    for start in range(0, X.shape[0], batch):
        X_batch = ndl.Tensor(X[start : start + batch], device=device, requires_grad=False)
        labels = y[start : start + batch]
        one_hot = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
        one_hot[np.arange(labels.shape[0]), labels] = 1
        logits = ndl.relu(X_batch @ W1) @ W2
        loss = softmax_loss(logits, ndl.Tensor(one_hot, device=device, requires_grad=False))
        loss.backward()
        W1 = ndl.Tensor(W1.numpy() - lr * W1.grad.numpy(), device=device)
        W2 = ndl.Tensor(W2.numpy() - lr * W2.grad.numpy(), device=device)
    return W1, W2
    ### END YOUR SOLUTION


def loss_err(h: ndl.Tensor, y: np.ndarray) -> tuple[float, float]:
    """Softmax loss and error rate of logits ``h`` against labels ``y`` (numpy)."""
    one_hot = np.zeros((y.shape[0], h.shape[-1]), dtype=np.float32)
    one_hot[np.arange(y.shape[0]), y] = 1
    y_one_hot = ndl.Tensor(one_hot, device=h.device, requires_grad=False)
    loss = float(softmax_loss(h, y_one_hot).numpy())
    error = float(np.mean(h.numpy().argmax(axis=1) != y))
    return loss, error


# ---------------------------------------------------------------------------------------------
# hw4: image classification (CIFAR-10 style data from a DataLoader)


def epoch_general_cifar10(dataloader, model, loss_fn=SOFTMAX_LOSS, opt=None, progress=None):
    """One pass over ``dataloader``: train when ``opt`` is given, else evaluate.

    Args:
        dataloader: yields ``(X, y)`` batches, X ``(B, C, H, W)``, y ``(B,)``.
        model: the classifier (moved to training/eval mode here).
        loss_fn: a loss module *instance*.
        opt: optimiser; None evaluates.
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        ``(average accuracy, average loss)`` over all samples.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    model.train() if opt is not None else model.eval()
    device = model_device(model)
    score = RunningScore()
    bar = progress_bar(
        dataloader, len(dataloader), "train" if opt is not None else "eval", progress
    )
    for X, y in bar:
        X, y = on_device(X, device), on_device(y, device)
        logits = model(X)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward()
            opt.step()
        score.add(logits, y, loss)
        score.show(bar)
    return score.accuracy, score.loss
    ### END YOUR SOLUTION


def train_cifar10(
    model,
    dataloader,
    n_epochs=1,
    optimizer=ndl.optim.Adam,
    lr=0.001,
    weight_decay=0.001,
    loss_fn=nn.SoftmaxLoss,
    progress=None,
):
    """Train ``model`` for ``n_epochs`` epochs with ``optimizer(model.parameters(), lr=lr,
    weight_decay=weight_decay)``.

    Args:
        loss_fn: the loss *class* (instantiated once here).

    Returns:
        ``(accuracy, loss)`` of the last training epoch.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss = loss_fn()
    for _ in range(n_epochs):
        accuracy, average_loss = epoch_general_cifar10(dataloader, model, loss, opt, progress)
    return accuracy, average_loss
    ### END YOUR SOLUTION


def evaluate_cifar10(model, dataloader, loss_fn=nn.SoftmaxLoss, progress=None):
    """``(accuracy, loss)`` of ``model`` (in eval mode) over ``dataloader``.

    Args:
        loss_fn: the loss *class*.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    return epoch_general_cifar10(dataloader, model, loss_fn(), None, progress)
    ### END YOUR SOLUTION


# ---------------------------------------------------------------------------------------------
# hw4: language modelling on Penn Treebank


def detach_state(h):
    """Cut the graph behind a recurrent state (a Tensor, a tuple of Tensors, or None)."""
    if h is None:
        return None
    if isinstance(h, (tuple, list)):
        return tuple(detach_state(x) for x in h)
    return h.detach()


def epoch_general_ptb(
    data,
    model,
    seq_len=40,
    loss_fn=SOFTMAX_LOSS,
    opt=None,
    clip=None,
    device=None,
    dtype="float32",
    progress=None,
):
    """One pass of truncated backpropagation through time over ``batchify``-ed ids.

    Windows start at rows ``0, seq_len, 2*seq_len, ...`` (``get_batch``; the last may be
    shorter). The hidden state starts as None and is carried from window to window, detached
    so that gradients stop at the window boundary. When training, each window does
    ``reset_grad``, ``backward``, optional ``clip_grad_norm(clip)`` and ``step``.

    Args:
        data: ``(nbatch, batch_size)`` ids from ``batchify``.
        model: a ``LanguageModel`` (``model(x, h) -> (logits, h)``).
        seq_len: window length (bptt).
        loss_fn: a loss module *instance*.
        opt: optimiser; None evaluates.
        clip: max global gradient norm, or None.
        device, dtype: of the batch tensors (default: the model's device).

    Returns:
        ``(average accuracy, average loss)`` weighted by tokens; the perplexity is
        ``exp(average loss)``.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    model.train() if opt is not None else model.eval()
    device = model_device(model) if device is None else device
    nbatch = data.shape[0]
    starts = range(0, nbatch - 1, seq_len)
    score = RunningScore()
    bar = progress_bar(starts, len(starts), "train" if opt is not None else "eval", progress)
    h = None
    for i in bar:
        X, y = get_batch(data, i, seq_len, device=device, dtype=dtype)
        logits, h = model(X, detach_state(h))
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward()
            if clip is not None:
                opt.clip_grad_norm(clip)
            opt.step()
        score.add(logits, y, loss)
        score.show(bar)
    return score.accuracy, score.loss
    ### END YOUR SOLUTION


def train_ptb(
    model,
    data,
    seq_len=40,
    n_epochs=1,
    optimizer=ndl.optim.SGD,
    lr=4.0,
    weight_decay=0.0,
    loss_fn=nn.SoftmaxLoss,
    clip=None,
    device=None,
    dtype="float32",
    progress=None,
):
    """Train a language model for ``n_epochs`` epochs over ``data``.

    Args:
        loss_fn: the loss *class*.
        (others as in ``epoch_general_ptb``)

    Returns:
        ``(accuracy, loss)`` of the last training epoch.
    """
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss = loss_fn()
    for _ in range(n_epochs):
        accuracy, average_loss = epoch_general_ptb(
            data, model, seq_len, loss, opt, clip, device, dtype, progress
        )
    return accuracy, average_loss
    ### END YOUR SOLUTION


def evaluate_ptb(
    model, data, seq_len=40, loss_fn=nn.SoftmaxLoss, device=None, dtype="float32", progress=None
):
    """``(accuracy, loss)`` of a language model (in eval mode) over ``data``."""
    ### BEGIN YOUR SOLUTION (hw4)
    np.random.seed(4)
    return epoch_general_ptb(data, model, seq_len, loss_fn(), None, None, device, dtype, progress)
    ### END YOUR SOLUTION


def perplexity(average_loss: float) -> float:
    """``exp(average natural-log cross-entropy)``."""
    return math.exp(average_loss)
