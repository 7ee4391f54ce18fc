"""Public tests of hw4_extra: multi-head attention, the attention layer, the Transformer layer
and the Transformer model, each checked against a PyTorch re-implementation of the spec.

Run one part with ``make check K="attention_activation"`` (or ``attention_layer``,
``transformer_layer``, ``transformer_model``).

How the comparisons work:

- weights are copied from your needle modules into the PyTorch computation (found by their
  type, so the names you give your sub-modules do not matter);
- dropout masks are replayed: the test re-seeds numpy and draws the masks with needle's
  ``nn.Dropout`` in the order the spec fixes (attention probabilities, then after attention,
  then inside the feed-forward block, then after it). If only the dropout tests fail, your
  masks are drawn in another order or on other tensors;
- the construction-order tests rebuild the sub-modules from the same seed in the spec's order
  and compare initial weights: the hidden tests compare with the reference from the same
  seeds, so this order matters.

PyTorch computes in float64, so the tolerances only absorb needle's float32 rounding.
"""

from __future__ import annotations

import math

import needle as ndl
import numpy as np
import pytest
import torch
from needle import nn

pytestmark = pytest.mark.hw4_extra

RTOL, ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------------------------
# devices and helpers


def _cuda_param():
    device = ndl.cuda()
    reason = f"no usable CUDA backend here ({device.unavailable_reason})"
    return pytest.param(
        device, id="cuda", marks=pytest.mark.skipif(not device.enabled(), reason=reason)
    )


@pytest.fixture(params=[pytest.param(ndl.cpu(), id="cpu"), _cuda_param()])
def device(request):
    device = request.param
    if not device.enabled():
        pytest.fail(f"the {device.name} backend is not available: {device.unavailable_reason}")
    return device


def randn(*shape, seed) -> np.ndarray:
    """Inputs from their own generator: they do not consume numpy's global RNG, which the
    modules' initialisation and dropout use."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tensor(array, device, requires_grad=False) -> ndl.Tensor:
    return ndl.Tensor(array, device=device, requires_grad=requires_grad)


def t64(x) -> torch.Tensor:
    """A needle Tensor, NDArray or numpy array as a float64 torch tensor."""
    if isinstance(x, ndl.Tensor):
        x = x.numpy()
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def check(got, expected: torch.Tensor, what: str, rtol=RTOL, atol=ATOL):
    got = got.numpy() if isinstance(got, ndl.Tensor) else np.asarray(got)
    expected = expected.detach().numpy()
    assert got.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {got.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)


def replay_dropout_masks(seed: int, p: float, shapes, device) -> list[torch.Tensor]:
    """The masks (already scaled by 1/(1-p)) that Dropout(p) draws after np.random.seed(seed)
    for tensors of ``shapes``, in that order."""
    np.random.seed(seed)
    masks = []
    for shape in shapes:
        ones = ndl.init.ones(*shape, device=device)
        masks.append(t64(nn.Dropout(p)(ones)))
    return masks


def modules_of(module, kind) -> list:
    """Every sub-module of type ``kind`` inside ``module`` (attributes, lists, tuples, dicts),
    in the order the attributes were assigned; not below a match."""
    found = []

    def visit(value):
        if isinstance(value, kind):
            found.append(value)
        elif isinstance(value, nn.Module):
            for item in vars(value).values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for item in vars(module).values():
        visit(item)
    return found


def one_of(module, kind, what: str):
    found = modules_of(module, kind)
    assert len(found) == 1, (
        f"{what}: expected exactly one {kind.__name__} inside, found {len(found)}"
    )
    return found[0]


# ---------------------------------------------------------------------------------------------
# the PyTorch re-implementation of the spec


def torch_attention(q, k, v, causal: bool, dropout_mask=None):
    """softmax(Q K^T / sqrt(D) + causal mask), dropout on the probabilities, times V."""
    head_dim = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    if causal:
        queries, keys = scores.shape[-2:]
        # query i may see key j when j <= i + (keys - queries): the last query sees every key
        future = torch.triu(torch.ones(queries, keys, dtype=torch.bool), keys - queries + 1)
        scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if dropout_mask is not None:
        probs = probs * dropout_mask
    return probs @ v, probs


def torch_layer_norm(x, norm):
    return torch.nn.functional.layer_norm(
        x, (x.shape[-1],), t64(norm.weight).reshape(-1), t64(norm.bias).reshape(-1), eps=norm.eps
    )


def torch_linear(x, linear):
    out = x @ t64(linear.weight)
    bias = getattr(linear, "bias", None)
    return out if bias is None else out + t64(bias).reshape(-1)


def torch_attention_layer(layer, q, k, v, dropout_mask=None):
    """AttentionLayer.forward: pre-norm, project, split heads, attention, merge, project."""
    batch, queries, _ = q.shape
    keys = k.shape[1]
    heads, dim_head = layer.num_head, layer.dim_head

    def split(x, norm, projection, length):
        rows = torch_linear(torch_layer_norm(x, norm), projection)  # (B, T, H*D)
        return rows.reshape(batch, length, heads, dim_head).transpose(1, 2)  # (B, H, T, D)

    result, probs = torch_attention(
        split(q, layer.prenorm_q, layer.q_projection, queries),
        split(k, layer.prenorm_k, layer.k_projection, keys),
        split(v, layer.prenorm_v, layer.v_projection, keys),
        layer.attn.causal,
        dropout_mask,
    )
    merged = result.transpose(1, 2).reshape(batch, queries, heads * dim_head)
    return torch_linear(merged, layer.out_projection)


def transformer_layer_parts(layer, features: int):
    """The attention layer, layer norm and two linear layers of a TransformerLayer, found by
    type (the attention layer's own norms and projections excluded)."""
    attention = one_of(layer, nn.AttentionLayer, "TransformerLayer")
    inside = {id(m) for m in modules_of(attention, nn.Module)}
    norms = [m for m in modules_of(layer, nn.LayerNorm1d) if id(m) not in inside]
    linears = [m for m in modules_of(layer, nn.Linear) if id(m) not in inside]
    assert len(norms) == 1, (
        f"TransformerLayer: expected one LayerNorm1d besides the attention's, found {len(norms)}"
    )
    first = [m for m in linears if m.in_features == features]
    second = [m for m in linears if m.out_features == features]
    assert len(linears) == 2 and len(first) == 1 and len(second) == 1, (
        "TransformerLayer: expected two Linear layers besides the attention's, "
        "q_features -> hidden_size and hidden_size -> q_features"
    )
    return attention, norms[0], first[0], second[0]


def torch_transformer_layer(layer, x, masks=None):
    """x + D(attention(x)), then x + D(W2 D(relu(W1 LN(x) + b1)) + b2), D = dropout, with
    ``masks`` = [attention probabilities, after attention, hidden, after feed-forward]."""
    attention, norm, linear1, linear2 = transformer_layer_parts(layer, x.shape[-1])
    masks = masks or [None, 1.0, 1.0, 1.0]
    x = x + torch_attention_layer(attention, x, x, x, masks[0]) * masks[1]
    hidden = torch.relu(torch_linear(torch_layer_norm(x, norm), linear1)) * masks[2]
    return x + torch_linear(hidden, linear2) * masks[3]


def torch_transformer(model, x, batch_first: bool):
    """Learned positions added to the inputs, then the layers (no final norm)."""
    if not batch_first:
        x = x.transpose(0, 1)
    positions = one_of(model, nn.Embedding, "Transformer")
    x = x + t64(positions.weight)[: x.shape[1]]
    for layer in modules_of(model, nn.TransformerLayer):
        x = torch_transformer_layer(layer, x)
    return x if batch_first else x.transpose(0, 1)


# ---------------------------------------------------------------------------------------------
# Part 1: the attention activation (MultiHeadAttention.forward)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no_dropout", "dropout"])
def test_attention_activation_matches_torch(causal, dropout, device):
    batch, heads, queries, keys, dim = 2, 3, 5, 7, 4
    q = randn(batch, heads, queries, dim, seed=1)
    k = randn(batch, heads, keys, dim, seed=2)
    v = randn(batch, heads, keys, dim, seed=3)
    attention = nn.MultiHeadAttention(dropout=dropout, causal=causal, device=device)
    np.random.seed(11)
    result, probs = attention(tensor(q, device), tensor(k, device), tensor(v, device))
    (mask,) = replay_dropout_masks(11, dropout, [(batch, heads, queries, keys)], device)
    expected_result, expected_probs = torch_attention(t64(q), t64(k), t64(v), causal, mask)
    what = f"attention (causal={causal}, dropout={dropout})"
    check(probs, expected_probs, f"{what}: the returned probabilities (after dropout)")
    check(result, expected_result, f"{what}: the result probs @ V")


def test_attention_activation_causal_mask_hides_the_future(device):
    """Query i may only attend to keys j <= i + (keys - queries); each row sums to one."""
    queries, keys = 4, 6
    attention = nn.MultiHeadAttention(causal=True, device=device)
    q, k, v = (
        randn(1, 2, queries, 3, seed=4),
        randn(1, 2, keys, 3, seed=5),
        randn(1, 2, keys, 3, seed=6),
    )
    _, probs = attention(tensor(q, device), tensor(k, device), tensor(v, device))
    probs = probs.numpy()
    future = np.triu(np.ones((queries, keys), dtype=bool), keys - queries + 1)
    assert np.all(probs[..., future] == 0), (
        "causal attention gave weight to future keys (entries above the diagonal offset "
        f"keys - queries = {keys - queries}):\n{np.round(probs[0, 0], 3)}"
    )
    assert np.all(probs[..., ~future] > 0), "every visible key must get some weight"
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5, err_msg="rows of probs")


def test_attention_activation_has_gradients(device):
    """Built from needle ops, attention is differentiable: compare d(sum(result * W))/dq."""
    q, k, v = randn(2, 2, 4, 3, seed=7), randn(2, 2, 4, 3, seed=8), randn(2, 2, 4, 3, seed=9)
    weights = randn(2, 2, 4, 3, seed=10)
    q_needle = tensor(q, device, requires_grad=True)
    result, _ = nn.MultiHeadAttention(causal=True, device=device)(
        q_needle, tensor(k, device), tensor(v, device)
    )
    (result * tensor(weights, device)).sum().backward()
    q_torch = t64(q).requires_grad_()
    expected, _ = torch_attention(q_torch, t64(k), t64(v), causal=True)
    (expected * t64(weights)).sum().backward()
    check(q_needle.grad, q_torch.grad, "gradient of attention with respect to q")


# ---------------------------------------------------------------------------------------------
# Part 2: the attention layer (AttentionLayer.forward)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_layer_matches_torch(causal, device):
    batch, queries, keys = 2, 5, 6
    q_features, k_features, v_features, out_features = 7, 9, 5, 11
    np.random.seed(21)
    layer = nn.AttentionLayer(
        q_features,
        num_head=3,
        dim_head=4,
        k_features=k_features,
        v_features=v_features,
        out_features=out_features,
        causal=causal,
        device=device,
    )
    q = randn(batch, queries, q_features, seed=22)
    k = randn(batch, keys, k_features, seed=23)
    v = randn(batch, keys, v_features, seed=24)
    out = layer(tensor(q, device), tensor(k, device), tensor(v, device))
    expected = torch_attention_layer(layer, t64(q), t64(k), t64(v))
    check(out, expected, f"AttentionLayer (causal={causal}) output (B, T_q, out_features)")


def test_attention_layer_self_attention_defaults(device):
    """k and v default to q."""
    np.random.seed(25)
    layer = nn.AttentionLayer(6, num_head=2, dim_head=5, device=device)
    x = randn(3, 4, 6, seed=26)
    out = layer(tensor(x, device))
    expected = torch_attention_layer(layer, t64(x), t64(x), t64(x))
    check(out, expected, "AttentionLayer(x) with k = v = x (causal by default)")


def test_attention_layer_dropout_on_probabilities(device):
    batch, length, features, heads = 2, 5, 6, 2
    np.random.seed(27)
    layer = nn.AttentionLayer(features, num_head=heads, dim_head=3, dropout=0.4, device=device)
    x = randn(batch, length, features, seed=28)
    np.random.seed(29)
    out = layer(tensor(x, device))
    (mask,) = replay_dropout_masks(29, 0.4, [(batch, heads, length, length)], device)
    expected = torch_attention_layer(layer, t64(x), t64(x), t64(x), mask)
    check(out, expected, "AttentionLayer with dropout 0.4: one mask, on the probabilities")


def test_attention_layer_backward_matches_torch(device):
    np.random.seed(30)
    layer = nn.AttentionLayer(4, num_head=2, dim_head=3, device=device)
    x = randn(2, 3, 4, seed=31)
    weights = randn(2, 3, 4, seed=32)
    x_needle = tensor(x, device, requires_grad=True)
    (layer(x_needle) * tensor(weights, device)).sum().backward()
    x_torch = t64(x).requires_grad_()
    (torch_attention_layer(layer, x_torch, x_torch, x_torch) * t64(weights)).sum().backward()
    check(x_needle.grad, x_torch.grad, "gradient of AttentionLayer with respect to its input")


# ---------------------------------------------------------------------------------------------
# Part 3: the Transformer layer (TransformerLayer)


def test_transformer_layer_builds_its_modules_in_order(device):
    """attention, layer norm, linear1 (q -> hidden), linear2 (hidden -> q), from one seed."""
    features, heads, dim_head, hidden = 6, 2, 3, 10
    np.random.seed(41)
    layer = nn.TransformerLayer(features, heads, dim_head, hidden, dropout=0.1, device=device)
    np.random.seed(41)
    want_attention = nn.AttentionLayer(features, heads, dim_head, dropout=0.1, device=device)
    want_norm = nn.LayerNorm1d(features, device=device)
    want_linear1 = nn.Linear(features, hidden, device=device)
    want_linear2 = nn.Linear(hidden, features, device=device)
    attention, norm, linear1, linear2 = transformer_layer_parts(layer, features)
    pairs = [
        (
            "attention q projection",
            attention.q_projection.weight,
            want_attention.q_projection.weight,
        ),
        (
            "attention out projection",
            attention.out_projection.weight,
            want_attention.out_projection.weight,
        ),
        ("layer norm weight", norm.weight, want_norm.weight),
        ("linear1 weight", linear1.weight, want_linear1.weight),
        ("linear1 bias", linear1.bias, want_linear1.bias),
        ("linear2 weight", linear2.weight, want_linear2.weight),
        ("linear2 bias", linear2.bias, want_linear2.bias),
    ]
    for name, got, want in pairs:
        assert got is not None, f"TransformerLayer: {name} is missing (Linear layers have biases)"
        np.testing.assert_array_equal(
            got.numpy(),
            want.numpy(),
            err_msg=f"TransformerLayer: initial {name} differs from building attention, "
            "LayerNorm1d, Linear(q, hidden), Linear(hidden, q) in this order after the same seed",
        )


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_transformer_layer_matches_torch(causal, device):
    batch, length, features, hidden = 2, 5, 6, 10
    np.random.seed(42)
    layer = nn.TransformerLayer(features, 2, 3, hidden, causal=causal, device=device)
    x = randn(batch, length, features, seed=43)
    out = layer(tensor(x, device))
    check(out, torch_transformer_layer(layer, t64(x)), f"TransformerLayer (causal={causal})")


def test_transformer_layer_dropout_masks_in_order(device):
    batch, length, features, heads, hidden, p = 2, 4, 6, 2, 8, 0.25
    np.random.seed(44)
    layer = nn.TransformerLayer(features, heads, 3, hidden, dropout=p, device=device)
    x = randn(batch, length, features, seed=45)
    np.random.seed(46)
    out = layer(tensor(x, device))
    shapes = [
        (batch, heads, length, length),  # attention probabilities
        (batch, length, features),  # after the attention block
        (batch, length, hidden),  # after relu, inside the feed-forward block
        (batch, length, features),  # after the feed-forward block
    ]
    masks = replay_dropout_masks(46, p, shapes, device)
    check(
        out,
        torch_transformer_layer(layer, t64(x), masks),
        "TransformerLayer with dropout: masks drawn in the order attention probabilities, "
        "after attention, inside the feed-forward block, after it",
    )


def test_transformer_layer_eval_mode_has_no_dropout(device):
    np.random.seed(47)
    layer = nn.TransformerLayer(6, 2, 3, 8, dropout=0.5, device=device)
    layer.eval()
    x = randn(2, 3, 6, seed=48)
    out = layer(tensor(x, device))
    check(out, torch_transformer_layer(layer, t64(x)), "TransformerLayer in eval mode")


# ---------------------------------------------------------------------------------------------
# Part 4: the Transformer model (Transformer)


def test_transformer_model_builds_positions_first(device):
    np.random.seed(51)
    model = nn.Transformer(6, 8, 2, num_head=2, dim_head=3, sequence_len=12, device=device)
    np.random.seed(51)
    want_positions = nn.Embedding(12, 6, device=device)
    want_first = nn.TransformerLayer(6, 2, 3, 8, device=device)
    positions = one_of(model, nn.Embedding, "Transformer")
    np.testing.assert_array_equal(
        positions.weight.numpy(),
        want_positions.weight.numpy(),
        err_msg="the positional Embedding(sequence_len, embedding_size) must be built first",
    )
    layers = modules_of(model, nn.TransformerLayer)
    assert len(layers) == 2, f"expected num_layers = 2 TransformerLayers, found {len(layers)}"
    got, want = transformer_layer_parts(layers[0], 6), transformer_layer_parts(want_first, 6)
    np.testing.assert_array_equal(
        got[2].weight.numpy(),
        want[2].weight.numpy(),
        err_msg="the first TransformerLayer must be built right after the positional embedding",
    )


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
def test_transformer_model_matches_torch(batch_first, device):
    batch, length, features = 3, 5, 6
    np.random.seed(52)
    model = nn.Transformer(
        features,
        10,
        2,
        num_head=2,
        dim_head=3,
        sequence_len=16,
        batch_first=batch_first,
        device=device,
    )
    shape = (batch, length, features) if batch_first else (length, batch, features)
    x = randn(*shape, seed=53)
    out, state = model(tensor(x, device))
    check(out, torch_transformer(model, t64(x), batch_first), f"Transformer output {shape}")
    assert isinstance(state, ndl.Tensor) and state.shape == out.shape, (
        "the second output stands in for an RNN's hidden state: zeros shaped like the output"
    )
    assert np.all(state.numpy() == 0), "the second output must be zeros"


def test_transformer_model_trains(device):
    """A few SGD steps on a tiny copy task lower the loss (gradients reach every parameter)."""
    np.random.seed(54)
    model = nn.Transformer(8, 16, 1, num_head=2, dim_head=4, sequence_len=8, device=device)
    head = nn.Linear(8, 8, device=device)
    parameters = model.parameters() + head.parameters()
    optimizer = ndl.optim.Adam(parameters, lr=0.01)
    x = randn(6, 4, 8, seed=55)
    labels = np.random.default_rng(56).integers(0, 8, size=6 * 4)
    losses = []
    for _ in range(8):
        out, _ = model(tensor(x, device))
        loss = nn.SoftmaxLoss()(head(out.reshape((24, 8))), tensor(labels, device))
        optimizer.reset_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.numpy()))
    missing = [i for i, p in enumerate(model.parameters()) if p.grad is None]
    assert not missing, f"parameters without gradient after backward(): {missing}"
    assert losses[-1] < losses[0], f"the loss did not go down: {losses}"


def test_transformer_model_in_the_language_model(device):
    """LanguageModel(seq_model="transformer") runs on (seq_len, batch) word ids."""
    from apps.models import LanguageModel

    np.random.seed(57)
    model = LanguageModel(
        8, 30, 12, num_layers=1, seq_model="transformer", seq_len=10, device=device
    )
    ids = np.random.default_rng(58).integers(0, 30, size=(7, 2)).astype(np.float32)
    logits, _ = model(tensor(ids, device))
    assert logits.shape == (14, 30), (
        f"expected logits (seq_len * batch, vocab) = (14, 30), got {logits.shape}"
    )
