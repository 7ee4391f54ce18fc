"""The course's models and training loops (library/apps): structure, shapes, loop conventions.

Training to a target accuracy is not tested here (that is ``make train-*``); these tests check
what the models are and what the loops do, on tiny data.
"""

import gzip
import math
import struct
import sys
from pathlib import Path

import needle as ndl
import needle.nn as nn
import numpy as np
import pytest

# ``library/apps`` as the package ``apps`` (appended: ``library/needle`` must not shadow the
# installed needle). Importing ``simple_ml`` by its bare name would collide with hw0's module
# of the same name when one pytest run collects both.
LIBRARY = str(Path(__file__).resolve().parents[1])
if LIBRARY not in sys.path:
    sys.path.append(LIBRARY)

from apps import mlp_resnet, models, simple_ml  # noqa: E402

# ---- ResNet9 -------------------------------------------------------------------------------


@pytest.mark.hw4
def test_resnet9_has_431946_parameters():
    assert models.ResNet9().num_parameters() == 431_946


@pytest.mark.hw4
def test_resnet9_forward_backward(device):
    np.random.seed(0)
    model = models.ResNet9(device=device)
    x = ndl.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32), device=device)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    conv_shapes = [p.shape for p in model.parameters() if len(p.shape) == 4]
    assert len(conv_shapes) == 8
    assert conv_shapes[0] == (7, 7, 3, 16) and conv_shapes[5] == (3, 3, 64, 128)


# ---- MLPResNet -----------------------------------------------------------------------------


def residual_block_parameters(dim, hidden):
    return (dim * hidden + hidden) + 2 * hidden + (hidden * dim + dim) + 2 * dim


@pytest.mark.hw2
@pytest.mark.parametrize("dim, hidden, blocks, classes", [(15, 10, 2, 5), (784, 100, 3, 10)])
def test_mlp_resnet_parameter_count(dim, hidden, blocks, classes):
    model = mlp_resnet.MLPResNet(dim, hidden, blocks, classes)
    expected = (
        dim * hidden
        + hidden
        + blocks * residual_block_parameters(hidden, hidden // 2)
        + hidden * classes
        + classes
    )
    assert model.num_parameters() == expected


@pytest.mark.hw2
def test_mlp_resnet_structure():
    model = mlp_resnet.MLPResNet(20, 8, num_blocks=2, norm=nn.LayerNorm1d, drop_prob=0.3)
    kinds = [type(m) for m in model.modules]
    assert kinds == [nn.Linear, nn.ReLU, nn.Sequential, nn.Sequential, nn.Linear]
    block = model.modules[2]
    assert [type(m) for m in block.modules] == [nn.Residual, nn.ReLU]
    inner = block.modules[0].fn
    assert [type(m) for m in inner.modules] == [
        nn.Linear,
        nn.LayerNorm1d,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.LayerNorm1d,
    ]
    assert (inner.modules[0].in_features, inner.modules[0].out_features) == (8, 4)
    assert inner.modules[3].p == 0.3
    assert model.modules[2] is not model.modules[3]  # distinct blocks, not one shared


@pytest.mark.hw2
def test_mlp_resnet_builds_in_execution_order():
    np.random.seed(4)
    model = mlp_resnet.MLPResNet(6, 4, num_blocks=1, num_classes=3)
    np.random.seed(4)
    first = nn.Linear(6, 4)
    block_first = nn.Linear(4, 2)
    np.testing.assert_array_equal(model.modules[0].weight.numpy(), first.weight.numpy())
    inner = model.modules[2].modules[0].fn
    np.testing.assert_array_equal(inner.modules[0].weight.numpy(), block_first.weight.numpy())


def image_loader(count=40, batch_size=10, seed=0, device=None):
    rng = np.random.RandomState(seed)
    images = rng.rand(count, 28, 28, 1).astype(np.float32)
    labels = rng.randint(0, 10, size=count).astype(np.float32)
    return ndl.data.DataLoader(
        ndl.data.NDArrayDataset(images, labels), batch_size=batch_size, device=device
    )


@pytest.mark.hw2
def test_epoch_switches_modes_and_returns_error_rate():
    np.random.seed(0)
    model = mlp_resnet.MLPResNet(784, 12, num_blocks=1)
    loader = image_loader()
    model.eval()
    opt = ndl.optim.Adam(model.parameters(), lr=0.01)
    train_error, train_loss = mlp_resnet.epoch(loader, model, opt)
    assert model.training and all(m.training for m in model._children())
    assert 0.0 <= train_error <= 1.0 and train_loss > 0
    error, loss = mlp_resnet.epoch(loader, model)
    assert not model.training and all(not m.training for m in model._children())
    # recompute the evaluation by hand: error = misclassified / samples, loss sample-weighted
    wrong, total_loss = 0, 0.0
    for X, y in loader:
        logits = model(X.reshape((X.shape[0], 784)))
        wrong += int((logits.numpy().argmax(1) != y.numpy()).sum())
        total_loss += float(nn.SoftmaxLoss()(logits, y).numpy()) * X.shape[0]
    assert error == pytest.approx(wrong / 40)
    assert loss == pytest.approx(total_loss / 40, rel=1e-5)


def write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.hw2
def test_train_mnist_on_a_tiny_copy(tmp_path):
    rng = np.random.RandomState(0)
    for prefix, count in [("train", 60), ("t10k", 30)]:
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, (count, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.randint(0, 10, count))
    result = mlp_resnet.train_mnist(batch_size=20, epochs=2, hidden_dim=8, data_dir=tmp_path)
    assert len(result) == 4
    train_error, train_loss, test_error, test_loss = result
    assert 0 <= train_error <= 1 and 0 <= test_error <= 1
    assert train_loss > 0 and test_loss > 0
    again = mlp_resnet.train_mnist(batch_size=20, epochs=2, hidden_dim=8, data_dir=tmp_path)
    assert again == result  # seeded: identical


# ---- LanguageModel -------------------------------------------------------------------------


@pytest.mark.hw4
@pytest.mark.parametrize("seq_model", ["rnn", "lstm", "transformer"])
def test_language_model_shapes_and_gradients(seq_model):
    np.random.seed(0)
    seq_len, batch, vocab, layers = 5, 3, 17, 2
    model = models.LanguageModel(
        6, vocab, 8, num_layers=layers, seq_model=seq_model, seq_len=seq_len
    )
    x = ndl.Tensor(np.random.randint(0, vocab, (seq_len, batch)), requires_grad=False)
    logits, h = model(x)
    assert logits.shape == (seq_len * batch, vocab)
    if seq_model == "rnn":
        assert h.shape == (layers, batch, 8)
    elif seq_model == "lstm":
        assert h[0].shape == h[1].shape == (layers, batch, 8)
    else:
        assert h.shape == (seq_len, batch, 6)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names[0] == "embedding.weight" and names[-1] == "linear.bias"
    with pytest.raises(ValueError, match="seq_model"):
        models.LanguageModel(6, vocab, 8, seq_model="gru")


class RecordingModel(nn.Module):
    """Wraps a LanguageModel and records what each forward call received."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    def forward(self, x, h=None):
        states = [] if h is None else (list(h) if isinstance(h, tuple) else [h])
        self.calls.append((x.shape, h is None, [s.requires_grad or s.op for s in states]))
        return self.model(x, h)


@pytest.mark.hw4
def test_ptb_epoch_loop_convention():
    np.random.seed(0)
    ids = np.random.randint(0, 11, size=3 * 23)
    data = ndl.data.batchify(ids, batch_size=3)  # (23, 3)
    model = RecordingModel(models.LanguageModel(4, 11, 5, seq_model="lstm"))
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    accuracy, loss = simple_ml.epoch_general_ptb(data, model, seq_len=5, opt=opt, clip=1.0)
    # windows start at 0, 5, ..., 20 (rows 0..21 have a next row); the last one is shorter
    assert [shape for shape, _, _ in model.calls] == [(5, 3)] * 4 + [(2, 3)]
    assert model.calls[0][1] and not any(first for _, first, _ in model.calls[1:])
    assert all(not any(flags) for _, _, flags in model.calls)  # state passed in detached
    assert 0 <= accuracy <= 1 and loss > 0
    model.calls.clear()
    eval_accuracy, eval_loss = simple_ml.evaluate_ptb(model, data, seq_len=5)
    assert not model.training
    # the reported loss is the token-weighted mean of the windows' losses
    assert eval_loss == pytest.approx(_window_weighted_loss(model.model, data, 5), rel=1e-5)


def _window_weighted_loss(model, data, seq_len):
    model.eval()
    h, total, tokens = None, 0.0, 0
    for i in range(0, data.shape[0] - 1, seq_len):
        x, y = ndl.data.get_batch(data, i, seq_len)
        logits, h = model(x, h)
        h = tuple(s.detach() for s in h)
        total += float(nn.SoftmaxLoss()(logits, y).numpy()) * y.shape[0]
        tokens += y.shape[0]
    return total / tokens


@pytest.mark.hw4
def test_train_ptb_uses_clip_and_returns_last_epoch(monkeypatch):
    np.random.seed(0)
    data = ndl.data.batchify(np.random.randint(0, 7, size=40), batch_size=2)
    model = models.LanguageModel(3, 7, 4, seq_model="rnn")
    clipped = []
    original = ndl.optim.Optimizer.clip_grad_norm
    monkeypatch.setattr(
        ndl.optim.Optimizer,
        "clip_grad_norm",
        lambda self, max_norm=0.25: clipped.append(max_norm) or original(self, max_norm),
    )
    accuracy, loss = simple_ml.train_ptb(model, data, seq_len=6, n_epochs=2, lr=0.5, clip=0.3)
    assert clipped == [0.3] * (2 * math.ceil(19 / 6))
    assert 0 <= accuracy <= 1 and loss > 0


# ---- image classification loops and hw1 functions ------------------------------------------


@pytest.mark.hw4
def test_cifar10_loops_on_tiny_images():
    np.random.seed(0)
    images = np.random.rand(12, 3, 8, 8).astype(np.float32)
    labels = np.random.randint(0, 3, size=12).astype(np.float32)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(images, labels), batch_size=5)
    model = nn.Sequential(nn.Conv(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    accuracy, loss = simple_ml.train_cifar10(model, loader, n_epochs=2, lr=0.01)
    assert model.training and 0 <= accuracy <= 1 and loss > 0
    eval_accuracy, eval_loss = simple_ml.evaluate_cifar10(model, loader)
    assert not model.training
    logits = model(ndl.Tensor(images))
    assert eval_accuracy == pytest.approx(np.mean(logits.numpy().argmax(1) == labels))


@pytest.mark.hw1
def test_softmax_loss_matches_numpy():
    np.random.seed(0)
    Z = np.random.randn(6, 4).astype(np.float32)
    y = np.random.randint(0, 4, size=6)
    one_hot = np.eye(4, dtype=np.float32)[y]
    got = simple_ml.softmax_loss(ndl.Tensor(Z), ndl.Tensor(one_hot))
    expected = np.mean(np.log(np.exp(Z).sum(1)) - Z[np.arange(6), y])
    assert float(got.numpy()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.hw1
def test_nn_epoch_matches_a_numpy_implementation():
    rng = np.random.RandomState(0)
    X = rng.rand(50, 8).astype(np.float32)
    y = rng.randint(0, 3, size=50).astype(np.uint8)
    W1 = (rng.randn(8, 10) / math.sqrt(10)).astype(np.float32)
    W2 = (rng.randn(10, 3) / math.sqrt(3)).astype(np.float32)
    new_W1, new_W2 = simple_ml.nn_epoch(X, y, ndl.Tensor(W1), ndl.Tensor(W2), lr=0.2, batch=20)
    W1, W2 = W1.astype(np.float64), W2.astype(np.float64)
    for start in range(0, 50, 20):  # the last batch has 10 examples
        Xb, yb = X[start : start + 20], y[start : start + 20]
        hidden = np.maximum(Xb @ W1, 0)
        probs = np.exp(hidden @ W2)
        probs /= probs.sum(1, keepdims=True)
        probs[np.arange(len(yb)), yb] -= 1
        grad_W2 = hidden.T @ probs / len(yb)
        grad_W1 = Xb.T @ ((hidden > 0) * (probs @ W2.T)) / len(yb)
        W1, W2 = W1 - 0.2 * grad_W1, W2 - 0.2 * grad_W2
    np.testing.assert_allclose(new_W1.numpy(), W1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_W2.numpy(), W2, rtol=1e-4, atol=1e-5)


@pytest.mark.hw1
def test_parse_mnist_on_the_embedded_test_set():
    X, y = simple_ml.parse_mnist(*ndl.data.mnist_paths("test"))
    assert X.shape == (10_000, 784) and X.dtype == np.float32
    assert y.shape == (10_000,) and y.dtype == np.uint8
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


# ---- train.py helpers ----------------------------------------------------------------------


def test_fashion_images_become_cifar_shaped(tmp_path):
    from apps import train

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (5, 28, 28))
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", rng.randint(0, 10, 5))
    dataset = train.GreyToColour32(tmp_path / "images.gz", tmp_path / "labels.gz")
    batch, labels = dataset[np.arange(5)]
    assert batch.shape == (5, 3, 32, 32) and labels.shape == (5,)
    np.testing.assert_allclose(batch[:, 1, 2:30, 2:30], images / 255.0, rtol=1e-6)
    assert np.all(batch[:, :, :2] == 0) and np.all(batch[:, :, :, 30:] == 0)
    np.testing.assert_array_equal(batch[:, 0], batch[:, 2])
    single, label = dataset[3]
    assert single.shape == (3, 32, 32) and label == labels[3]


def test_unigram_baseline_is_add_one_smoothed():
    from apps import train

    # counts [2, 1, 0] over 3 words -> probabilities [3/6, 2/6, 1/6]
    cross_entropy = train.unigram_cross_entropy([0, 0, 1], [0, 2], vocabulary_size=3)
    assert cross_entropy == pytest.approx(-(math.log(3 / 6) + math.log(1 / 6)) / 2)


def test_fresh_each_epoch_changes_the_shuffle_reproducibly():
    from apps import train

    def orders():
        dataset = ndl.data.NDArrayDataset(np.arange(20, dtype=np.float32))
        loader = train.FreshEachEpoch(ndl.data.DataLoader(dataset, 20, shuffle=True), seed=4)
        return [next(iter(loader))[0].numpy().tolist() for _ in range(2)]

    first, second = orders()
    assert first != second  # epoch 2 is shuffled differently from epoch 1
    assert orders() == [first, second]  # and the whole run is reproducible
