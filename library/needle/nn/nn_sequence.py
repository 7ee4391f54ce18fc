"""Sequence models: activations, RNN and LSTM cells and stacks, and embeddings.

Sequences are laid out time-major, ``(seq_len, batch, features)``. There is no tensor
indexing op, so a sequence is cut into time steps with ``ops.split`` and put back together
with ``ops.stack``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from needle import init, ops
from needle.autograd import Tensor, TensorOp
from needle.backend_selection import array_api

from .nn_basic import Module, Parameter

### BEGIN REFERENCE ONLY (hw4)
# The reference's Embedding picks rows (take_rows) instead of multiplying by a one-hot matrix:
# the same values and gradient without a (len(ids), num_rows) matrix and its two products, 0.7
# GFLOP each and 22 MB for a 10,000-word vocabulary and 560 tokens. The ids are data, so the
# rows are gathered and scattered on the host with numpy (every backend); take_rows and
# scatter_add_rows are each the other's adjoint, so gradients of gradients work. hw4's release
# leaves this block out: its exercise is the one-hot product.


def _as_ids(ids, num_rows: int) -> np.ndarray:
    """The ids as an int64 array, each checked to lie in ``[0, num_rows)``."""
    if isinstance(ids, Tensor):
        ids = ids.numpy()
    values = np.asarray(ids)
    as_int = values.astype(np.int64)
    if values.size and not np.array_equal(as_int, values):
        raise ValueError("take_rows: ids must be whole numbers")
    if as_int.size and (as_int.min() < 0 or as_int.max() >= num_rows):
        raise ValueError(
            f"take_rows: ids must lie in [0, {num_rows}), got [{as_int.min()}, {as_int.max()}]"
        )
    return as_int


def _host(array) -> np.ndarray:
    """The values of a backend array as a numpy array."""
    return array if isinstance(array, np.ndarray) else array.numpy()


def _on_device_of(values: np.ndarray, like):
    """``values`` as an array of ``like``'s backend, device and dtype."""
    if array_api is np:
        return values.astype(like.dtype, copy=False)
    return array_api.array(values, device=like.device)


class TakeRows(TensorOp):
    """``out[k] = a[ids[k]]`` for a 2-D ``a`` and constant integer ``ids`` of any shape.

    Shape: ``a (num_rows, dim)`` → ``ids.shape + (dim,)``.
    Gradient: ``scatter_add_rows(g, ids, num_rows)``.
    """

    def __init__(self, ids):
        self.ids = np.asarray(ids)

    def compute(self, a):
        if a.ndim != 2:
            raise ValueError(f"take_rows needs a 2-D matrix, got shape {tuple(a.shape)}")
        ids = _as_ids(self.ids, a.shape[0])
        rows = _host(a)[ids.reshape(-1)]
        return _on_device_of(rows.reshape(ids.shape + (a.shape[1],)), a)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return scatter_add_rows(out_grad, self.ids, node.inputs[0].shape[0])


def take_rows(a: Tensor, ids) -> Tensor:
    """Rows ``ids`` of the matrix ``a`` (an embedding lookup)."""
    return TakeRows(ids)(a)


class ScatterAddRows(TensorOp):
    """The adjoint of ``take_rows``: a ``(num_rows, dim)`` matrix of zeros into which row
    ``k`` of ``g`` (``g`` of shape ``ids.shape + (dim,)``) is added at row ``ids[k]``; an id
    that occurs twice gets the sum.

    Gradient: ``take_rows(g, ids)``.
    """

    def __init__(self, ids, num_rows: int):
        self.ids = np.asarray(ids)
        self.num_rows = num_rows

    def compute(self, g):
        ids = _as_ids(self.ids, self.num_rows)
        dim = g.shape[-1]
        if tuple(g.shape) != ids.shape + (dim,):
            raise ValueError(
                f"scatter_add_rows: expected rows of shape {ids.shape} + (dim,), got {g.shape}"
            )
        rows = _host(g).reshape(-1, dim)
        total = np.zeros((self.num_rows, dim), dtype=rows.dtype)
        np.add.at(total, ids.reshape(-1), rows)
        return _on_device_of(total, g)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return take_rows(out_grad, self.ids)


def scatter_add_rows(g: Tensor, ids, num_rows: int) -> Tensor:
    return ScatterAddRows(ids, num_rows)(g)


### END REFERENCE ONLY


def _sigmoid(x: Tensor) -> Tensor:
    # sigma(x) = 1 / (1 + exp(-x)) = (1 + tanh(x / 2)) / 2; the tanh form never overflows.
    return (ops.tanh(x * 0.5) + 1) * 0.5


def _uniform(*shape, bound, device, dtype):
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype))


def _unstack(x: Tensor, axis: int = 0) -> list[Tensor]:
    """The slices of ``x`` along ``axis`` as a list of tensors (``axis`` removed)."""
    pieces = ops.split(x, axis=axis)
    return [pieces[i] for i in range(x.shape[axis])]


class Tanh(Module):
    """``y = tanh(x)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw4)
        return ops.tanh(x)
        ### END YOUR SOLUTION


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw4)
        return _sigmoid(x)
        ### END YOUR SOLUTION


class RNNCell(Module):
    """One step of an Elman RNN: ``h' = act(x W_ih + b_ih + h W_hh + b_hh)``.

    Args:
        input_size, hidden_size: feature sizes of ``x`` and ``h``.
        bias: learn ``b_ih`` and ``b_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Parameters (created in this order, all uniform in ``±1/sqrt(hidden_size)``):
        W_ih ``(input_size, hidden_size)``, W_hh ``(hidden_size, hidden_size)``,
        bias_ih ``(hidden_size,)``, bias_hh ``(hidden_size,)``.

    Shape:
        X ``(bs, input_size)``, h ``(bs, hidden_size)`` or None (zeros) → ``(bs, hidden_size)``.
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        bias=True,
        nonlinearity="tanh",
        device=None,
        dtype="float32",
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity
        self.device = device
        self.dtype = dtype
        bound = 1.0 / math.sqrt(hidden_size)
        param = dict(bound=bound, device=device, dtype=dtype)
        self.W_ih = _uniform(input_size, hidden_size, **param)
        self.W_hh = _uniform(hidden_size, hidden_size, **param)
        self.bias_ih = _uniform(hidden_size, **param) if bias else None
        self.bias_hh = _uniform(hidden_size, **param) if bias else None
        ### END YOUR SOLUTION

    def forward(self, X: Tensor, h: Tensor | None = None) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw4)
        batch_size = X.shape[0]
        out_shape = (batch_size, self.hidden_size)
        if h is None:
            h = init.zeros(*out_shape, device=X.device, dtype=X.dtype)
        pre_activation = X @ self.W_ih + h @ self.W_hh
        if self.bias_ih is not None and self.bias_hh is not None:
            row = (1, self.hidden_size)
            pre_activation = (
                pre_activation
                + self.bias_ih.reshape(row).broadcast_to(out_shape)
                + self.bias_hh.reshape(row).broadcast_to(out_shape)
            )
        if self.nonlinearity == "tanh":
            return ops.tanh(pre_activation)
        return ops.relu(pre_activation)
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


class RNN(Module):
    """A stack of ``num_layers`` RNN cells run over a sequence; layer ``l > 0`` reads the
    hidden states of layer ``l - 1``.

    Args:
        input_size, hidden_size, num_layers, bias, nonlinearity: as for ``RNNCell``.

    Attributes:
        rnn_cells: list of ``RNNCell`` (layer 0: input_size → hidden_size, the others
            hidden_size → hidden_size), constructed bottom-up.

    Shape:
        X ``(seq_len, bs, input_size)``, h0 ``(num_layers, bs, hidden_size)`` or None (zeros)
        → output ``(seq_len, bs, hidden_size)`` (top layer, every step) and
        h_n ``(num_layers, bs, hidden_size)`` (every layer, last step).
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        nonlinearity="tanh",
        device=None,
        dtype="float32",
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.device = device
        self.dtype = dtype
        self.rnn_cells = [
            RNNCell(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                bias=bias,
                nonlinearity=nonlinearity,
                device=device,
                dtype=dtype,
            )
            for layer in range(num_layers)
        ]
        ### END YOUR SOLUTION

    def forward(self, X: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ### BEGIN YOUR SOLUTION (hw4)
        layer_inputs = _unstack(X, axis=0)
        # per layer: its initial state, or None for zeros
        initial: list[Any] = _unstack(h0, axis=0) if h0 is not None else [None] * self.num_layers
        last_states = []
        for cell, h in zip(self.rnn_cells, initial):
            outputs = []
            for x_t in layer_inputs:
                h = cell(x_t, h)
                outputs.append(h)
            last_states.append(h)
            layer_inputs = outputs
        return ops.stack(layer_inputs, axis=0), ops.stack(last_states, axis=0)
        ### END YOUR SOLUTION


class LSTMCell(Module):
    """One LSTM step. With ``z = x W_ih + b_ih + h W_hh + b_hh`` cut into four blocks
    ``i, f, g, o`` (PyTorch's gate order):
    ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``.

    Parameters (created in this order, all uniform in ``±1/sqrt(hidden_size)``):
        W_ih ``(input_size, 4*hidden_size)``, W_hh ``(hidden_size, 4*hidden_size)``,
        bias_ih ``(4*hidden_size,)``, bias_hh ``(4*hidden_size,)``.

    Shape:
        X ``(bs, input_size)``, h ``(h0, c0)`` each ``(bs, hidden_size)`` or None (zeros)
        → ``(h', c')`` each ``(bs, hidden_size)``.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.device = device
        self.dtype = dtype
        bound = 1.0 / math.sqrt(hidden_size)
        param = dict(bound=bound, device=device, dtype=dtype)
        self.W_ih = _uniform(input_size, 4 * hidden_size, **param)
        self.W_hh = _uniform(hidden_size, 4 * hidden_size, **param)
        self.bias_ih = _uniform(4 * hidden_size, **param) if bias else None
        self.bias_hh = _uniform(4 * hidden_size, **param) if bias else None
        ### END YOUR SOLUTION

    def forward(self, X: Tensor, h: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        ### BEGIN YOUR SOLUTION (hw4)
        batch_size = X.shape[0]
        hidden = self.hidden_size
        if h is None:
            h0 = init.zeros(batch_size, hidden, device=X.device, dtype=X.dtype)
            c0 = init.zeros(batch_size, hidden, device=X.device, dtype=X.dtype)
        else:
            h0, c0 = h
        # All four gates at once: one matmul for the input, one for the state.
        gates = X @ self.W_ih + h0 @ self.W_hh
        if self.bias_ih is not None and self.bias_hh is not None:
            bias = (self.bias_ih + self.bias_hh).reshape((1, 4 * hidden))
            gates = gates + bias.broadcast_to((batch_size, 4 * hidden))
        # (bs, 4h) → (bs, 4, h) → four (bs, h) blocks in the order i, f, g, o.
        i, f, g, o = _unstack(gates.reshape((batch_size, 4, hidden)), axis=1)
        c_next = ops.sigmoid(f) * c0 + ops.sigmoid(i) * ops.tanh(g)
        h_next = ops.sigmoid(o) * ops.tanh(c_next)
        return h_next, c_next
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class LSTM(Module):
    """A stack of ``num_layers`` LSTM cells run over a sequence.

    Attributes:
        lstm_cells: list of ``LSTMCell`` (layer 0: input_size → hidden_size, the others
            hidden_size → hidden_size), constructed bottom-up.

    Shape:
        X ``(seq_len, bs, input_size)``, h ``(h0, c0)`` each ``(num_layers, bs, hidden_size)``
        or None (zeros) → output ``(seq_len, bs, hidden_size)`` and ``(h_n, c_n)`` each
        ``(num_layers, bs, hidden_size)``.
    """

    def __init__(
        self, input_size, hidden_size, num_layers=1, bias=True, device=None, dtype="float32"
    ):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.device = device
        self.dtype = dtype
        self.lstm_cells = [
            LSTMCell(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                bias=bias,
                device=device,
                dtype=dtype,
            )
            for layer in range(num_layers)
        ]
        ### END YOUR SOLUTION

    def forward(
        self, X: Tensor, h: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        ### BEGIN YOUR SOLUTION (hw4)
        layer_inputs = _unstack(X, axis=0)
        if h is None:
            initial: list[Any] = [None] * self.num_layers  # per layer: (h, c), or None for zeros
        else:
            initial = list(zip(_unstack(h[0], axis=0), _unstack(h[1], axis=0)))
        last_h, last_c = [], []
        for cell, state in zip(self.lstm_cells, initial):
            outputs = []
            for x_t in layer_inputs:
                state = cell(x_t, state)
                outputs.append(state[0])
            last_h.append(state[0])
            last_c.append(state[1])
            layer_inputs = outputs
        output = ops.stack(layer_inputs, axis=0)
        return output, (ops.stack(last_h, axis=0), ops.stack(last_c, axis=0))
        ### END YOUR SOLUTION


class Embedding(Module):
    """A lookup table: token id ``t`` maps to row ``t`` of ``weight``. The same as
    ``one_hot(x) @ weight``, whose gradient reaches exactly the looked-up rows.

    Args:
        num_embeddings: vocabulary size.
        embedding_dim: size of each vector.

    Parameters: ``weight`` ``(num_embeddings, embedding_dim)`` ~ N(0, 1).

    Shape:
        x ``(seq_len, bs)`` of integer ids (any shape works) → ``x.shape + (embedding_dim,)``.
    """

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        ### BEGIN YOUR SOLUTION (hw4)
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.device = device
        self.dtype = dtype
        self.weight = Parameter(
            init.randn(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )
        ### END YOUR SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN YOUR SOLUTION (hw4)
        # The same as one_hot(x) @ weight, without the (len(x), num_embeddings) matrix and
        # its two products (see take_rows above).
        return take_rows(self.weight, x.numpy())
        ### END YOUR SOLUTION

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
