"""Public tests of hw4, parts 4, 5 and 7: ``RNNCell``/``RNN`` (``rnn``), ``LSTMCell``/``LSTM``
(``lstm``), and ``Embedding``, ``LanguageModel`` and the PTB training loop
(``language_model``).

Run one part with e.g. ``make check K=lstm``. Every layer is compared with its PyTorch twin
after copying the weights over: needle stores ``W_ih`` as ``(input_size, hidden_size)`` (inputs
multiply from the left, ``X @ W_ih``), PyTorch as ``(hidden_size, input_size)``, hence the
transposes below.
"""

from __future__ import annotations

import math

import needle as ndl
import numpy as np
import pytest
from hw4_support import (
    assert_close,
    assert_on_device,
    parameter,
    rand,
    tensor,
    write_ptb_folder,
)

pytestmark = pytest.mark.hw4


def models():
    from apps import models as module  # imported here: a broken file fails only its tests

    return module


def simple_ml():
    from apps import simple_ml as module

    return module


def copy_cell_from_torch(cell, weight_ih, weight_hh, bias_ih, bias_hh, device):
    """Give a needle cell PyTorch's weights (transposed into needle's layout)."""
    cell.W_ih = parameter(weight_ih.detach().numpy().T, device)
    cell.W_hh = parameter(weight_hh.detach().numpy().T, device)
    if bias_ih is not None:
        cell.bias_ih = parameter(bias_ih.detach().numpy(), device)
        cell.bias_hh = parameter(bias_hh.detach().numpy(), device)


def check_uniform_init(cell, shapes, hidden_size, seed, what):
    """The cell's parameters, in order, are U(-1/sqrt(hidden), 1/sqrt(hidden)) draws of
    numpy's global generator (seeded with ``seed`` just before the cell was built)."""
    np.random.seed(seed)
    bound = 1 / math.sqrt(hidden_size)
    names = ["W_ih", "W_hh", "bias_ih", "bias_hh"]
    for name, shape in zip(names, shapes):
        value = getattr(cell, name)
        assert isinstance(value, ndl.nn.Parameter), f"{what}.{name} must be a Parameter"
        assert value.shape == shape, f"{what}.{name}: expected shape {shape}, got {value.shape}"
        expected = np.random.rand(*shape) * 2 * bound - bound
        assert_close(
            value,
            expected,
            rtol=1e-5,
            atol=1e-6,
            what=f"{what}.{name} ~ U(-1/sqrt(hidden), 1/sqrt(hidden)), drawn in the order "
            + ", ".join(names),
        )


# ---------------------------------------------------------------------------------------------
# activations


def test_rnn_activation_modules(device, torch):
    x = rand(4, 5, low=-4, high=4, seed=1)
    assert_close(ndl.nn.Tanh()(tensor(x, device)), torch.tanh(torch.tensor(x)), what="nn.Tanh")
    assert_close(
        ndl.nn.Sigmoid()(tensor(x, device)), torch.sigmoid(torch.tensor(x)), what="nn.Sigmoid"
    )


# ---------------------------------------------------------------------------------------------
# RNNCell and RNN


def test_rnn_cell_parameters(device):
    np.random.seed(5)
    cell = ndl.nn.RNNCell(3, 4, device=device)
    check_uniform_init(cell, [(3, 4), (4, 4), (4,), (4,)], 4, seed=5, what="RNNCell")
    assert ndl.nn.RNNCell(3, 4, bias=False, device=device).bias_ih is None, (
        "bias=False: no bias parameters (bias_ih is None)"
    )


# (batch, input, hidden, bias, with initial state, nonlinearity)
RNN_CELL_CASES = [
    (1, 1, 1, True, False, "tanh"),
    (4, 5, 6, True, True, "tanh"),
    (4, 5, 6, False, True, "tanh"),
    (3, 2, 7, True, False, "relu"),
    (3, 2, 7, True, True, "relu"),
    (15, 11, 12, True, True, "tanh"),
]


@pytest.mark.parametrize("case", RNN_CELL_CASES, ids=str)
def test_rnn_cell_matches_pytorch(device, torch, case):
    batch, inputs, hidden, bias, with_state, nonlinearity = case
    torch.manual_seed(0)
    reference = torch.nn.RNNCell(inputs, hidden, bias=bias, nonlinearity=nonlinearity)
    cell = ndl.nn.RNNCell(inputs, hidden, bias=bias, nonlinearity=nonlinearity, device=device)
    copy_cell_from_torch(
        cell,
        reference.weight_ih,
        reference.weight_hh,
        reference.bias_ih if bias else None,
        reference.bias_hh if bias else None,
        device,
    )
    x, h0 = rand(batch, inputs, seed=2), rand(batch, hidden, seed=3)
    xt = tensor(x, device)
    h = cell(xt, tensor(h0, device) if with_state else None)
    assert_on_device(h, device, "RNNCell output")
    X = torch.tensor(x, requires_grad=True)
    expected = reference(X, torch.tensor(h0) if with_state else None)
    assert_close(h, expected, what=f"h' = {nonlinearity}(x W_ih + b_ih + h W_hh + b_hh)")
    h.sum().backward()
    expected.sum().backward()
    assert_close(cell.W_ih.grad, reference.weight_ih.grad.numpy().T, what="RNNCell W_ih.grad")
    assert_close(cell.W_hh.grad, reference.weight_hh.grad.numpy().T, what="RNNCell W_hh.grad")
    assert_close(xt.grad, X.grad, what="RNNCell: gradient w.r.t. the input")


# (seq_len, batch, input, hidden, layers, bias, with initial state, nonlinearity)
RNN_CASES = [
    (1, 1, 1, 1, 1, True, False, "tanh"),
    (5, 3, 4, 6, 1, True, True, "tanh"),
    (5, 3, 4, 6, 2, True, True, "tanh"),
    (4, 2, 3, 5, 3, False, False, "tanh"),
    (6, 3, 4, 5, 2, True, True, "relu"),
    (13, 15, 11, 12, 2, True, True, "tanh"),
]


TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def torch_rnn_copy(module, layers, device, cells, bias):
    for layer, cell in zip(range(layers), cells):
        weights = [getattr(module, f"{name}_l{layer}", None) for name in TORCH_NAMES]
        if not bias:
            weights[2:] = [None, None]
        copy_cell_from_torch(cell, *weights, device)


@pytest.mark.parametrize("case", RNN_CASES, ids=str)
def test_rnn_matches_pytorch(device, torch, case):
    seq_len, batch, inputs, hidden, layers, bias, with_state, nonlinearity = case
    torch.manual_seed(1)
    reference = torch.nn.RNN(inputs, hidden, layers, bias=bias, nonlinearity=nonlinearity)
    model = ndl.nn.RNN(inputs, hidden, layers, bias=bias, nonlinearity=nonlinearity, device=device)
    assert len(model.rnn_cells) == layers, f"RNN keeps its {layers} cells in .rnn_cells"
    torch_rnn_copy(reference, layers, device, model.rnn_cells, bias)
    x, h0 = rand(seq_len, batch, inputs, seed=4), rand(layers, batch, hidden, seed=5)
    xt = tensor(x, device)
    output, h_n = model(xt, tensor(h0, device) if with_state else None)
    X = torch.tensor(x, requires_grad=True)
    expected_output, expected_h = reference(X, torch.tensor(h0) if with_state else None)
    assert_on_device(output, device, "RNN output")
    assert_close(output, expected_output, what="RNN output: the top layer's h_t for every t")
    assert_close(h_n, expected_h, what="RNN h_n: every layer's last hidden state")
    (output.sum() + h_n.sum()).backward()
    (expected_output.sum() + expected_h.sum()).backward()
    first = model.rnn_cells[0]
    assert_close(first.W_ih.grad, reference.weight_ih_l0.grad.numpy().T, what="layer 0 W_ih.grad")
    assert_close(
        model.rnn_cells[-1].W_hh.grad,
        getattr(reference, f"weight_hh_l{layers - 1}").grad.numpy().T,
        what="top layer W_hh.grad",
    )
    assert_close(xt.grad, X.grad, rtol=1e-4, atol=1e-5, what="RNN: gradient w.r.t. the input")


# ---------------------------------------------------------------------------------------------
# LSTMCell and LSTM


def test_lstm_cell_parameters(device):
    np.random.seed(6)
    cell = ndl.nn.LSTMCell(3, 4, device=device)
    check_uniform_init(cell, [(3, 16), (4, 16), (16,), (16,)], 4, seed=6, what="LSTMCell")


# (batch, input, hidden, bias, with initial state)
LSTM_CELL_CASES = [
    (1, 1, 1, True, False),
    (4, 5, 6, True, True),
    (4, 5, 6, False, True),
    (3, 2, 7, True, False),
    (15, 11, 12, True, True),
]


@pytest.mark.parametrize("case", LSTM_CELL_CASES, ids=str)
def test_lstm_cell_matches_pytorch(device, torch, case):
    batch, inputs, hidden, bias, with_state = case
    torch.manual_seed(2)
    reference = torch.nn.LSTMCell(inputs, hidden, bias=bias)
    cell = ndl.nn.LSTMCell(inputs, hidden, bias=bias, device=device)
    copy_cell_from_torch(
        cell,
        reference.weight_ih,
        reference.weight_hh,
        reference.bias_ih if bias else None,
        reference.bias_hh if bias else None,
        device,
    )
    x = rand(batch, inputs, seed=7)
    h0, c0 = rand(batch, hidden, seed=8), rand(batch, hidden, seed=9)
    xt = tensor(x, device)
    state = (tensor(h0, device), tensor(c0, device)) if with_state else None
    h, c = cell(xt, state)
    X = torch.tensor(x, requires_grad=True)
    expected_h, expected_c = reference(
        X, (torch.tensor(h0), torch.tensor(c0)) if with_state else None
    )
    assert_on_device(h, device, "LSTMCell h'")
    assert_close(h, expected_h, what="h' = o * tanh(c') (gates in the order i, f, g, o)")
    assert_close(c, expected_c, what="c' = f * c + i * g")
    (h.sum() + c.sum()).backward()
    (expected_h.sum() + expected_c.sum()).backward()
    assert_close(cell.W_ih.grad, reference.weight_ih.grad.numpy().T, what="LSTMCell W_ih.grad")
    assert_close(cell.W_hh.grad, reference.weight_hh.grad.numpy().T, what="LSTMCell W_hh.grad")
    assert_close(xt.grad, X.grad, what="LSTMCell: gradient w.r.t. the input")


# (seq_len, batch, input, hidden, layers, bias, with initial state)
LSTM_CASES = [
    (1, 1, 1, 1, 1, True, False),
    (5, 3, 4, 6, 1, True, True),
    (5, 3, 4, 6, 2, True, True),
    (4, 2, 3, 5, 3, False, False),
    (13, 15, 11, 12, 2, True, True),
]


@pytest.mark.parametrize("case", LSTM_CASES, ids=str)
def test_lstm_matches_pytorch(device, torch, case):
    seq_len, batch, inputs, hidden, layers, bias, with_state = case
    torch.manual_seed(3)
    reference = torch.nn.LSTM(inputs, hidden, layers, bias=bias)
    model = ndl.nn.LSTM(inputs, hidden, layers, bias=bias, device=device)
    assert len(model.lstm_cells) == layers, f"LSTM keeps its {layers} cells in .lstm_cells"
    torch_rnn_copy(reference, layers, device, model.lstm_cells, bias)
    x = rand(seq_len, batch, inputs, seed=10)
    h0, c0 = rand(layers, batch, hidden, seed=11), rand(layers, batch, hidden, seed=12)
    xt = tensor(x, device)
    state = (tensor(h0, device), tensor(c0, device)) if with_state else None
    output, (h_n, c_n) = model(xt, state)
    X = torch.tensor(x, requires_grad=True)
    expected_output, (expected_h, expected_c) = reference(
        X, (torch.tensor(h0), torch.tensor(c0)) if with_state else None
    )
    assert_on_device(output, device, "LSTM output")
    assert_close(output, expected_output, what="LSTM output: the top layer's h_t for every t")
    assert_close(h_n, expected_h, what="LSTM h_n (every layer's last h)")
    assert_close(c_n, expected_c, what="LSTM c_n (every layer's last c)")
    (output.sum() + h_n.sum() + c_n.sum()).backward()
    (expected_output.sum() + expected_h.sum() + expected_c.sum()).backward()
    assert_close(
        model.lstm_cells[0].W_ih.grad,
        reference.weight_ih_l0.grad.numpy().T,
        rtol=1e-4,
        atol=1e-5,
        what="layer 0 W_ih.grad",
    )
    assert_close(xt.grad, X.grad, rtol=1e-4, atol=1e-5, what="LSTM: gradient w.r.t. the input")


# ---------------------------------------------------------------------------------------------
# Embedding and the language model


def test_language_model_embedding(device):
    np.random.seed(7)
    embedding = ndl.nn.Embedding(10, 4, device=device)
    np.random.seed(7)
    weight = np.random.randn(10, 4).astype(np.float32)
    assert embedding.weight.shape == (10, 4)
    assert_close(embedding.weight, weight, what="Embedding.weight ~ N(0, 1) (np.random.randn)")
    ids = np.array([[1, 9, 1], [0, 3, 9]])
    out = embedding(tensor(ids, device, requires_grad=False))
    assert out.shape == (2, 3, 4), f"(seq_len, bs) ids give (seq_len, bs, dim), got {out.shape}"
    assert_close(out, weight[ids], what="embedding(x)[t, b] = weight[x[t, b]]")
    adjoint = rand(2, 3, 4, seed=13)
    out.backward(tensor(adjoint, device, requires_grad=False))
    expected = np.zeros_like(weight)
    np.add.at(expected, ids, adjoint)
    assert_close(embedding.weight.grad, expected, what="rows used twice get both adjoints")


@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
@pytest.mark.parametrize("output_size, layers", [(1, 1), (50, 2)], ids=str)
def test_language_model_shapes_and_gradients(device, seq_model, output_size, layers):
    np.random.seed(8)
    model = models().LanguageModel(
        6, output_size, hidden_size=5, num_layers=layers, seq_model=seq_model, device=device
    )
    ids = np.random.default_rng(9).integers(0, output_size, size=(7, 3))
    logits, h = model(tensor(ids, device, requires_grad=False))
    assert logits.shape == (21, output_size), (
        f"logits are (seq_len * bs, output_size) = (21, {output_size}), got {logits.shape}"
    )
    assert_on_device(logits, device, "logits")
    if seq_model == "lstm":
        assert isinstance(h, tuple) and len(h) == 2, "an LSTM's state is (h, c)"
        shapes = [h[0].shape, h[1].shape]
    else:
        shapes = [h.shape]
    assert all(s == (layers, 3, 5) for s in shapes), f"state is (layers, bs, hidden): {shapes}"
    # The state can be fed back in (as the training loop does, detached).
    state = tuple(t.detach() for t in h) if seq_model == "lstm" else h.detach()
    logits, _ = model(tensor(ids, device, requires_grad=False), state)
    logits.sum().backward()
    missing = [i for i, p in enumerate(model.parameters()) if p.grad is None]
    assert not missing, f"parameters {missing} got no gradient"


def torch_language_model(torch, model, vocab, embedding, hidden, layers, seq_model):
    """The same model in PyTorch, with needle's parameters copied in construction order:
    embedding, then each layer's W_ih, W_hh, bias_ih, bias_hh, then the linear layer."""
    nn = torch.nn
    recurrent = (nn.RNN if seq_model == "rnn" else nn.LSTM)(embedding, hidden, layers)
    reference = nn.ModuleList([nn.Embedding(vocab, embedding), recurrent, nn.Linear(hidden, vocab)])
    ours = model.parameters()
    theirs = list(reference.parameters())
    assert len(ours) == len(theirs), (
        f"expected {len(theirs)} parameter tensors (embedding, 4 per layer, linear weight and "
        f"bias), got {len(ours)}"
    )
    transpose = [False] + [True, True, False, False] * layers + [True, False]
    with torch.no_grad():
        for index, (mine, target, flip) in enumerate(zip(ours, theirs, transpose)):
            value = mine.numpy().T if flip else mine.numpy()
            assert value.size == target.numel(), (
                f"parameter {index} has shape {mine.shape}; build embedding, sequence model and "
                "linear layer in this order"
            )
            target.copy_(torch.tensor(value.reshape(target.shape)))
    return reference


def torch_forward(torch, reference, ids, state):
    embedding, recurrent, linear = reference
    out, state = recurrent(embedding(torch.tensor(ids, dtype=torch.long)), state)
    return linear(out.reshape(-1, out.shape[-1])), state


@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
def test_language_model_forward_matches_pytorch(device, torch, seq_model):
    np.random.seed(10)
    model = models().LanguageModel(7, 13, 5, num_layers=2, seq_model=seq_model, device=device)
    reference = torch_language_model(torch, model, 13, 7, 5, 2, seq_model)
    ids = np.random.default_rng(11).integers(0, 13, size=(4, 3))
    logits, _ = model(tensor(ids, device, requires_grad=False))
    expected, _ = torch_forward(torch, reference, ids, None)
    assert_close(logits, expected, what="logits = Linear(seq_model(Embedding(x))), flattened")


def torch_ptb_epoch(torch, reference, batches, seq_len, optimizer=None):
    """The training/evaluation loop of the notebook, in PyTorch: windows start at rows
    0, seq_len, 2*seq_len, ...; the state is carried over (detached); token-weighted means."""
    state, correct, total, count = None, 0, 0.0, 0
    for i in range(0, batches.shape[0] - 1, seq_len):
        length = min(seq_len, batches.shape[0] - 1 - i)
        data, target = batches[i : i + length], batches[i + 1 : i + 1 + length].reshape(-1)
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        logits, state = torch_forward(torch, reference, data, state)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(target, dtype=torch.long))
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        correct += int((logits.argmax(1).numpy() == target).sum())
        total += loss.item() * target.size
        count += target.size
    return correct / count, total / count


@pytest.mark.parametrize("seq_model", ["rnn", "lstm"])
def test_language_model_training_matches_pytorch(device, torch, tmp_path, seq_model):
    corpus = ndl.data.Corpus(str(write_ptb_folder(tmp_path)))
    vocab = len(corpus.dictionary)
    batches = ndl.data.batchify(corpus.train, 2, device=device, dtype="float32")
    np.random.seed(12)
    model = models().LanguageModel(6, vocab, 4, num_layers=2, seq_model=seq_model, device=device)
    reference = torch_language_model(torch, model, vocab, 6, 4, 2, seq_model)
    accuracy, loss = simple_ml().train_ptb(
        model, batches, seq_len=4, n_epochs=2, optimizer=ndl.optim.SGD, lr=0.5, device=device
    )
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    torch_ptb_epoch(torch, reference, batches, 4, optimizer)
    expected = torch_ptb_epoch(torch, reference, batches, 4, optimizer)
    assert accuracy == pytest.approx(expected[0]), "token accuracy of the last training epoch"
    assert loss == pytest.approx(expected[1], rel=1e-4), (
        "mean loss per token of the last epoch (window losses weighted by their token counts)"
    )
    accuracy, loss = simple_ml().evaluate_ptb(model, batches, seq_len=3, device=device)
    with torch.no_grad():
        expected = torch_ptb_epoch(torch, reference, batches, 3)
    assert accuracy == pytest.approx(expected[0]) and loss == pytest.approx(expected[1], rel=1e-4)
    assert not model.training, "evaluate_ptb puts the model in eval mode"


def test_language_model_learns_the_tiny_corpus(device, tmp_path):
    corpus = ndl.data.Corpus(str(write_ptb_folder(tmp_path)))
    batches = ndl.data.batchify(corpus.train + corpus.train, 1, device=device, dtype="float32")
    np.random.seed(13)
    model = models().LanguageModel(
        8, len(corpus.dictionary), 16, num_layers=1, seq_model="lstm", device=device
    )
    _, before = simple_ml().evaluate_ptb(model, batches, seq_len=8, device=device)
    simple_ml().train_ptb(
        model, batches, seq_len=8, n_epochs=4, optimizer=ndl.optim.Adam, lr=0.05, device=device
    )
    _, after = simple_ml().evaluate_ptb(model, batches, seq_len=8, device=device)
    assert after < 0.5 * before, (
        f"4 epochs of Adam on a 4-sentence text should cut the loss a lot: {before:.3f} -> "
        f"{after:.3f}"
    )
