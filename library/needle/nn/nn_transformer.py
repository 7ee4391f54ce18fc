"""A decoder-only Transformer in the pre-norm arrangement (layer norm before each block).

Attention tensors are laid out ``(batch, heads, time, head_dim)``; the layers take
``(batch, time, features)``.
"""

from __future__ import annotations

import math

import numpy as np

from needle import init, ops
from needle.autograd import Tensor
from needle.backend_selection import array_api

from .nn_basic import Dropout, LayerNorm1d, Linear, Module, ReLU, Sequential
from .nn_sequence import Embedding


class MultiHeadAttention(Module):
    """Scaled dot-product attention over already projected heads (no parameters):
    ``probs = dropout(softmax(Q K^T / sqrt(D) + mask))``, ``result = probs V``.

    Args:
        dropout: dropout probability applied to the attention probabilities.
        causal: mask out keys that lie in the future of each query.

    Shape:
        q ``(B, H, T_q, D)``, k ``(B, H, T_k, D)``, v ``(B, H, T_k, D_v)`` →
        result ``(B, H, T_q, D_v)`` and probs ``(B, H, T_q, T_k)`` (after dropout).
    """

    def __init__(self, *, dropout=0.0, causal=False, device=None, dtype="float32"):
        super().__init__()
        self.device = device
        self.dtype = dtype
        self.causal = causal
        self.dropout = Dropout(dropout)

    def create_causal_mask(self, i, j, device):
        """A constant ``(1, 1, i, j)`` Tensor: 0 where query ``q`` may see key ``k``
        (``k <= q + j - i``), ``-max_float32`` above that diagonal."""
        future = np.triu(np.ones((1, 1, i, j), dtype=np.float32), j - i + 1)
        mask = -np.finfo(np.float32).max * future
        return Tensor(mask, device=device, dtype=self.dtype, requires_grad=False)

    def matmul(self, a, b_transpose):
        """Batched ``a @ b_transpose^T`` over the last two axes (the second operand is
        passed already transposed: ``K`` for ``Q K^T``, ``V^T`` for ``probs V``)."""
        return ops.matmul(a, ops.transpose(b_transpose))

    def softmax(self, logit):
        """Softmax over the last axis; the max subtracted for stability is a constant."""
        row_max = Tensor(
            array_api.max(logit.realize_cached_data(), axis=3, keepdims=True),
            device=logit.device,
            dtype=logit.dtype,
            requires_grad=False,
        )
        exp = ops.exp(logit - row_max.broadcast_to(logit.shape))
        denominator = exp.sum(axes=(3,)).reshape((*logit.shape[:3], 1)).broadcast_to(logit.shape)
        return exp / denominator

    def forward(self, q, k, v):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        batch_size, num_head, queries_len, head_dim = q.shape
        keys_len = k.shape[2]
        scores = self.matmul(q, k) / math.sqrt(head_dim)
        if self.causal:
            mask = self.create_causal_mask(queries_len, keys_len, q.device)
            scores = scores + mask.broadcast_to(scores.shape)
        probs = self.dropout(self.softmax(scores))
        result = self.matmul(probs, ops.transpose(v))
        return result, probs
        ### END YOUR SOLUTION


class AttentionLayer(Module):
    """Multi-head attention with pre-norm and projections:
    ``out = W_o · attention(LN_q(q) W_q, LN_k(k) W_k, LN_v(v) W_v)`` with the heads split
    from and merged back into the feature axis.

    Args:
        q_features: features of the queries (also of keys/values unless given).
        num_head, dim_head: number of heads and size of each.
        k_features, v_features: features of the keys and values.
        out_features: output features (default ``q_features``).
        dropout: dropout on the attention probabilities.
        causal: causal masking.

    Shape:
        q ``(B, T_q, q_features)``, k and v ``(B, T_k, ...)`` (default: q) →
        ``(B, T_q, out_features)``.
    """

    def __init__(
        self,
        q_features: int,
        num_head: int,
        dim_head: int,
        *,
        k_features: int | None = None,
        v_features: int | None = None,
        out_features: int | None = None,
        dropout=0.0,
        causal=True,
        device=None,
        dtype="float32",
    ):
        super().__init__()
        self.device = device
        self.dtype = dtype
        k_features = q_features if k_features is None else k_features
        v_features = q_features if v_features is None else v_features
        out_features = q_features if out_features is None else out_features
        self.q_features = q_features
        self.k_features = k_features
        self.v_features = v_features
        self.out_features = out_features
        self.num_head = num_head
        self.dim_head = dim_head
        inner_dim = num_head * dim_head
        kw = dict(device=device, dtype=dtype)
        self.prenorm_q = LayerNorm1d(q_features, **kw)
        self.prenorm_k = LayerNorm1d(k_features, **kw)
        self.prenorm_v = LayerNorm1d(v_features, **kw)
        self.q_projection = Linear(q_features, inner_dim, bias=False, **kw)
        self.k_projection = Linear(k_features, inner_dim, bias=False, **kw)
        self.v_projection = Linear(v_features, inner_dim, bias=False, **kw)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **kw)
        self.out_projection = Linear(inner_dim, out_features, bias=False, **kw)

    def forward(self, q, k=None, v=None):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        k = q if k is None else k
        v = q if v is None else v
        batch_size, queries_len, _ = q.shape
        keys_len = k.shape[1]

        def heads(x, norm, projection, length):
            # (B, T, F) → LayerNorm, project to H*D → (B, T, H, D) → (B, H, T, D)
            rows = projection(norm(x.reshape((batch_size * length, x.shape[2]))))
            split = rows.reshape((batch_size, length, self.num_head, self.dim_head))
            return split.transpose((1, 2))

        q_heads = heads(q, self.prenorm_q, self.q_projection, queries_len)
        k_heads = heads(k, self.prenorm_k, self.k_projection, keys_len)
        v_heads = heads(v, self.prenorm_v, self.v_projection, keys_len)
        result, self.probs = self.attn(q_heads, k_heads, v_heads)
        # (B, H, T_q, D) → (B, T_q, H, D) → (B*T_q, H*D) → out projection
        merged = result.transpose((1, 2)).reshape(
            (batch_size * queries_len, self.num_head * self.dim_head)
        )
        out = self.out_projection(merged)
        return out.reshape((batch_size, queries_len, self.out_features))
        ### END YOUR SOLUTION


class TransformerLayer(Module):
    """One pre-norm Transformer block:
    ``x = x + dropout(attention(x))``;
    ``x = x + dropout(W_2 dropout(relu(W_1 LN(x) + b_1)) + b_2)``.

    Modules are built in this order (it fixes the seeded initial values): attention,
    layer norm, linear1 ``(q_features → hidden_size)``, linear2 ``(hidden_size →
    q_features)``. Dropout masks are drawn in execution order: attention probabilities,
    first residual, inside the feed-forward block, second residual.

    Shape:
        ``(B, T, q_features)`` → ``(B, T, q_features)``.
    """

    def __init__(
        self,
        q_features: int,
        num_head: int,
        dim_head: int,
        hidden_size: int,
        *,
        dropout=0.0,
        causal=True,
        device=None,
        dtype="float32",
    ):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        super().__init__()
        self.device = device
        self.dtype = dtype
        kw = dict(device=device, dtype=dtype)
        self.attention = AttentionLayer(
            q_features, num_head, dim_head, dropout=dropout, causal=causal, **kw
        )
        self.layernorm = LayerNorm1d(q_features, **kw)
        self.linear1 = Linear(q_features, hidden_size, **kw)
        self.linear2 = Linear(hidden_size, q_features, **kw)
        self.relu = ReLU()
        self.dropout_attention = Dropout(dropout)
        self.dropout_hidden = Dropout(dropout)
        self.dropout_feedforward = Dropout(dropout)
        ### END YOUR SOLUTION

    def forward(self, x):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        batch_size, seq_len, features = x.shape
        x = x + self.dropout_attention(self.attention(x))
        rows = self.layernorm(x.reshape((batch_size * seq_len, features)))
        hidden = self.dropout_hidden(self.relu(self.linear1(rows)))
        feedforward = self.dropout_feedforward(self.linear2(hidden))
        return x + feedforward.reshape((batch_size, seq_len, features))
        ### END YOUR SOLUTION


class Transformer(Module):
    """A stack of Transformer layers with learned positional embeddings:
    ``x = x + P[0..T-1]``, then ``num_layers`` pre-norm ``TransformerLayer`` s (no final norm).

    Args:
        embedding_size: features of the input embeddings.
        hidden_size: width of each feed-forward block.
        num_layers: number of layers.
        num_head, dim_head: attention heads and their size.
        dropout, causal: as for ``TransformerLayer``.
        batch_first: inputs are ``(B, T, D)`` rather than ``(T, B, D)``.
        sequence_len: the longest sequence (size of the positional table).

    Modules are built in this order: the positional ``Embedding(sequence_len,
    embedding_size)``, then the layers.

    Shape:
        x ``(T, B, D)`` (``(B, T, D)`` if ``batch_first``) → ``(x', zeros_like(x'))`` with
        the same layout (the second output stands in for an RNN's hidden state).
    """

    def __init__(
        self,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        num_head: int = 8,
        dim_head: int = 32,
        dropout=0.0,
        causal=True,
        device=None,
        dtype="float32",
        batch_first=False,
        sequence_len=2048,
    ):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        super().__init__()
        self.device = device
        self.dtype = dtype
        self.batch_first = batch_first
        self.embedding_size = embedding_size
        self.sequence_len = sequence_len
        self.positional_embedding = Embedding(
            sequence_len, embedding_size, device=device, dtype=dtype
        )
        self.layers = Sequential(
            *[
                TransformerLayer(
                    embedding_size,
                    num_head,
                    dim_head,
                    hidden_size,
                    dropout=dropout,
                    causal=causal,
                    device=device,
                    dtype=dtype,
                )
                for _ in range(num_layers)
            ]
        )
        ### END YOUR SOLUTION

    def forward(self, x, h=None):
        ### BEGIN YOUR SOLUTION (hw4_extra)
        if not self.batch_first:
            x = ops.transpose(x, axes=(0, 1))
        batch_size, seq_len, features = x.shape
        if seq_len > self.sequence_len:
            raise ValueError(
                f"sequence of length {seq_len} exceeds sequence_len={self.sequence_len}"
            )
        positions = Tensor(
            np.arange(seq_len, dtype=np.float32), device=x.device, requires_grad=False
        )
        position_vectors = self.positional_embedding(positions)  # (T, D)
        x = x + position_vectors.reshape((1, seq_len, features)).broadcast_to(x.shape)
        x = self.layers(x)
        if not self.batch_first:
            x = ops.transpose(x, axes=(0, 1))
        return x, init.zeros_like(x)
        ### END YOUR SOLUTION
