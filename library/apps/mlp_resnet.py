"""A residual MLP for MNIST (hw2): the blocks, the network, an epoch loop and ``train_mnist``.

::

    ResidualBlock(dim, hidden):  x ─┬─ Linear(dim, hidden) ─ norm ─ ReLU ─ Dropout ─
                                    │  Linear(hidden, dim) ─ norm ─┐
                                    └────────────── + ─────────────┘─ ReLU

    MLPResNet: Linear(784, hidden) ─ ReLU ─ num_blocks × ResidualBlock(hidden, hidden//2)
               ─ Linear(hidden, 10)

Modules are constructed in execution order, so ``np.random.seed`` fixes the initial weights.
"""

from __future__ import annotations

import math
import os

import needle as ndl
import needle.nn as nn
import numpy as np

try:  # run as a script from library/apps or imported as ``apps.mlp_resnet``
    from .simple_ml import RunningScore, model_device, on_device, progress_bar
except ImportError:
    from simple_ml import RunningScore, model_device, on_device, progress_bar


def ResidualBlock(
    dim, hidden_dim, norm=nn.BatchNorm1d, drop_prob=0.1, device=None, dtype="float32"
):
    """``ReLU(x + norm(Linear(Dropout(ReLU(norm(Linear(x)))))))`` as a Sequential.

    Args:
        dim: input and output features.
        hidden_dim: features inside the block.
        norm: normalisation class, called as ``norm(features, device=..., dtype=...)``.
        drop_prob: dropout probability.

    Shape:
        ``(N, dim)`` → ``(N, dim)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    kw = dict(device=device, dtype=dtype)
    return nn.Sequential(
        nn.Residual(
            nn.Sequential(
                nn.Linear(dim, hidden_dim, **kw),
                norm(hidden_dim, **kw),
                nn.ReLU(),
                nn.Dropout(drop_prob),
                nn.Linear(hidden_dim, dim, **kw),
                norm(dim, **kw),
            )
        ),
        nn.ReLU(),
    )
    ### END YOUR SOLUTION


def MLPResNet(
    dim,
    hidden_dim=100,
    num_blocks=3,
    num_classes=10,
    norm=nn.BatchNorm1d,
    drop_prob=0.1,
    device=None,
    dtype="float32",
):
    """``Linear(dim, hidden) → ReLU → num_blocks × ResidualBlock(hidden, hidden // 2) →
    Linear(hidden, num_classes)`` as a Sequential.

    Shape:
        ``(N, dim)`` → logits ``(N, num_classes)``.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    kw = dict(device=device, dtype=dtype)
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, **kw),
        nn.ReLU(),
        *[
            ResidualBlock(hidden_dim, hidden_dim // 2, norm, drop_prob, **kw)
            for _ in range(num_blocks)
        ],
        nn.Linear(hidden_dim, num_classes, **kw),
    )
    ### END YOUR SOLUTION


def epoch(dataloader, model, opt=None, progress=None):
    """One pass over ``dataloader`` with ``SoftmaxLoss``; trains when ``opt`` is given (model
    in training mode), else evaluates (eval mode). Images are flattened to vectors.

    Returns:
        ``(error rate, average loss)`` over all samples — an *error rate*, not an accuracy.
    """
    ### BEGIN YOUR SOLUTION (hw2)
    np.random.seed(4)
    model.train() if opt is not None else model.eval()
    loss_fn = nn.SoftmaxLoss()
    device = model_device(model)
    score = RunningScore()
    bar = progress_bar(dataloader, len(dataloader), "train" if opt else "eval", progress)
    for X, y in bar:
        X, y = on_device(X, device), on_device(y, device)
        X = X.reshape((X.shape[0], math.prod(X.shape[1:])))
        logits = model(X)
        loss = loss_fn(logits, y)
        if opt is not None:
            opt.reset_grad()
            loss.backward()
            opt.step()
        score.add(logits, y, loss)
        score.show(bar)
    return 1.0 - score.accuracy, score.loss
    ### END YOUR SOLUTION


def mnist_datasets(data_dir=None):
    """``(train, test)`` MNISTDatasets from ``data_dir`` (files named as distributed), or —
    when ``data_dir`` is None — from wherever ``ndl.data.mnist_paths`` finds them."""
    if data_dir is None:
        train_files = ndl.data.mnist_paths("train")
        test_files = ndl.data.mnist_paths("test")
    else:
        train_files = (
            os.path.join(data_dir, "train-images-idx3-ubyte.gz"),
            os.path.join(data_dir, "train-labels-idx1-ubyte.gz"),
        )
        test_files = (
            os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"),
            os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"),
        )
    return ndl.data.MNISTDataset(*train_files), ndl.data.MNISTDataset(*test_files)


def train_mnist(
    batch_size=100,
    epochs=10,
    optimizer=ndl.optim.Adam,
    lr=0.001,
    weight_decay=0.001,
    hidden_dim=100,
    data_dir=None,
    device=None,
    progress=None,
):
    """Train ``MLPResNet(784, hidden_dim)`` on MNIST and evaluate it on the test set.

    Args:
        batch_size, epochs, optimizer, lr, weight_decay, hidden_dim: the usual.
        data_dir: folder with the four MNIST ``.gz`` files; None: ``ndl.data.mnist_paths``.
        device: where to train (default ``ndl.default_device()``).

    Returns:
        ``(train_error, train_loss, test_error, test_loss)``: error *rates* of the last
        training epoch and of the test set (accuracy = 1 - error).
    """
    ### BEGIN YOUR SOLUTION (hw2)
    np.random.seed(4)
    device = ndl.default_device() if device is None else device
    train_set, test_set = mnist_datasets(data_dir)
    train_loader = ndl.data.DataLoader(train_set, batch_size, shuffle=True, device=device)
    test_loader = ndl.data.DataLoader(test_set, batch_size, shuffle=False, device=device)
    model = MLPResNet(784, hidden_dim, device=device)
    opt = optimizer(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        train_error, train_loss = epoch(train_loader, model, opt, progress)
    test_error, test_loss = epoch(test_loader, model, None, progress)
    return train_error, train_loss, test_error, test_loss
    ### END YOUR SOLUTION


if __name__ == "__main__":
    print(train_mnist(data_dir=None))
