"""Hidden probes of hw4_extra (a decoder-only, pre-norm Transformer).

Units and what their probes exercise (points in ``assignments/hw4_extra/assignment.toml``):

- ``attention_activation``: ``MultiHeadAttention.forward``: the result and the returned
  (dropped-out) probabilities, with and without the causal mask, with dropout, and with more
  keys than queries (the mask's diagonal offset);
- ``attention_layer``: ``AttentionLayer.forward`` with different q/k/v feature sizes, self
  attention (k = v = q by default), dropout on the probabilities, and the gradient that
  ``backward()`` sends to the input;
- ``transformer_layer``: ``TransformerLayer`` (construction order fixes the initial weights;
  dropout masks are drawn in execution order), causal or not, in training and eval mode;
- ``transformer_model``: ``Transformer`` (positional embedding built first, then the layers),
  time-first and batch-first, one and three layers, and inside ``LanguageModel``.

Every probe seeds numpy's global RNG right before it builds modules (initialisation and
dropout draw from it), and makes its inputs with the kit's own generators.

The probes run on needle's ``cpu_numpy`` device: a hw4_extra submission holds no C++ (its
kernels are provided), and the Transformer is the submission's Python code on every device, so
nothing needs compiling (see ``BUILD``) and a unit takes seconds.
"""

import numpy as np

from autograder.engine.kit import probe, randint, randn
from autograder.engine.kit import seed as variant_seed

SEARCH_PATH = ["", "apps"]

# Submissions contain Python only ([submission] accept) and the probes use the numpy-backed
# device: nothing to compile, so a no-op replaces the release's CMake build.
BUILD = [["{python}", "-c", "pass"]]

VALUES_IN_FULL = 512
HEAD = 128
SAMPLE = 128


def _values(array):
    """An array as an answer: whole when small, else head + seeded sample + float64 sums."""
    array = np.asarray(array, dtype=np.float32)
    flat = array.reshape(-1)
    if flat.size <= VALUES_IN_FULL:
        return array
    picks = np.sort(np.random.default_rng(flat.size).choice(flat.size, SAMPLE, replace=False))
    as64 = flat.astype(np.float64)
    return {
        "shape": list(array.shape),
        "head": flat[:HEAD],
        "sample": flat[picks],
        "sum": float(as64.sum()),
        "abs_sum": float(np.abs(as64).sum()),
    }


def _device():
    import needle as ndl

    return ndl.cpu_numpy()


def _tensor(array, device, requires_grad=False):
    import needle as ndl

    return ndl.Tensor(array, device=device, requires_grad=requires_grad)


# --- attention_activation ----------------------------------------------------------------------


def _attention(seed, batch, heads, queries, keys, dim, causal, dropout):
    from needle import nn

    device = _device()
    q = _tensor(randn(batch, heads, queries, dim, seed=seed), device)
    k = _tensor(randn(batch, heads, keys, dim, seed=seed + 1), device)
    v = _tensor(randn(batch, heads, keys, dim, seed=seed + 2), device)
    variant_seed(seed + 3)
    attention = nn.MultiHeadAttention(dropout=dropout, causal=causal, device=device)
    result, probs = attention(q, k, v)
    return {"result": _values(result.numpy()), "probs": _values(probs.numpy())}


@probe("attention_activation")
def attention_full():
    return _attention(5101, 2, 4, 6, 6, 8, causal=False, dropout=0.0)


@probe("attention_activation")
def attention_causal():
    return _attention(5111, 3, 2, 7, 7, 5, causal=True, dropout=0.0)


@probe("attention_activation")
def attention_causal_more_keys():
    return _attention(5121, 1, 3, 3, 8, 4, causal=True, dropout=0.0)


@probe("attention_activation")
def attention_dropout():
    return _attention(5131, 2, 2, 5, 5, 6, causal=True, dropout=0.2)


@probe("attention_activation")
def attention_dropout_full():
    return _attention(5141, 2, 3, 4, 6, 3, causal=False, dropout=0.5)


# --- attention_layer ---------------------------------------------------------------------------


@probe("attention_layer")
def attention_layer_cross():
    from needle import nn

    device = _device()
    q = _tensor(randn(2, 4, 10, seed=5201), device)
    k = _tensor(randn(2, 7, 6, seed=5202), device)
    v = _tensor(randn(2, 7, 9, seed=5203), device)
    answers = {}
    for causal in (False, True):
        variant_seed(5204)
        layer = nn.AttentionLayer(
            10, 3, 5, k_features=6, v_features=9, out_features=8, causal=causal, device=device
        )
        answers[f"causal={causal}"] = _values(layer(q, k, v).numpy())
    return answers


@probe("attention_layer")
def attention_layer_self():
    from needle import nn

    device = _device()
    x = _tensor(randn(3, 6, 12, seed=5211), device)
    variant_seed(5212)
    layer = nn.AttentionLayer(12, 4, 3, device=device)
    return _values(layer(x).numpy())


@probe("attention_layer")
def attention_layer_dropout():
    from needle import nn

    device = _device()
    x = _tensor(randn(2, 5, 8, seed=5221), device)
    variant_seed(5222)
    layer = nn.AttentionLayer(8, 2, 4, dropout=0.3, device=device)
    return _values(layer(x).numpy())


@probe("attention_layer")
def attention_layer_input_gradient():
    from needle import nn

    device = _device()
    x = _tensor(randn(2, 4, 6, seed=5231), device, requires_grad=True)
    weights = _tensor(randn(2, 4, 6, seed=5232), device)
    variant_seed(5233)
    layer = nn.AttentionLayer(6, 2, 4, device=device)
    (layer(x) * weights).sum().backward()
    return _values(x.grad.numpy())


# --- transformer_layer -------------------------------------------------------------------------


def _transformer_layer(
    seed, batch, length, features, heads, dim_head, hidden, dropout, causal, evaluate=False
):
    from needle import nn

    device = _device()
    x = _tensor(randn(batch, length, features, seed=seed), device)
    variant_seed(seed + 1)
    layer = nn.TransformerLayer(
        features, heads, dim_head, hidden, dropout=dropout, causal=causal, device=device
    )
    if evaluate:
        layer.eval()
    return _values(layer(x).numpy())


@probe("transformer_layer")
def transformer_layer_causal():
    return _transformer_layer(5301, 2, 6, 10, 2, 4, 24, dropout=0.0, causal=True)


@probe("transformer_layer")
def transformer_layer_full():
    return _transformer_layer(5311, 3, 4, 8, 4, 2, 16, dropout=0.0, causal=False)


@probe("transformer_layer")
def transformer_layer_dropout():
    return _transformer_layer(5321, 2, 5, 6, 2, 3, 12, dropout=0.25, causal=True)


@probe("transformer_layer")
def transformer_layer_eval():
    return _transformer_layer(5331, 2, 5, 6, 3, 2, 9, dropout=0.4, causal=True, evaluate=True)


# --- transformer_model -------------------------------------------------------------------------


def _transformer(seed, shape, hidden, layers, batch_first, dropout=0.0, sequence_len=32):
    from needle import nn

    device = _device()
    x = _tensor(randn(*shape, seed=seed), device)
    variant_seed(seed + 1)
    model = nn.Transformer(
        shape[-1],
        hidden,
        layers,
        num_head=2,
        dim_head=4,
        dropout=dropout,
        batch_first=batch_first,
        sequence_len=sequence_len,
        device=device,
    )
    out, state = model(x)
    return {"out": _values(out.numpy()), "state": _values(state.numpy())}


@probe("transformer_model")
def transformer_time_first():
    return _transformer(5401, (7, 3, 8), 16, 2, batch_first=False)


@probe("transformer_model")
def transformer_batch_first_three_layers():
    return _transformer(5411, (2, 5, 6), 12, 3, batch_first=True)


@probe("transformer_model")
def transformer_dropout():
    return _transformer(5421, (4, 2, 8), 10, 1, batch_first=False, dropout=0.1)


@probe("transformer_model")
def transformer_in_language_model():
    from apps.models import LanguageModel
    from needle import nn  # noqa: F401  (the package must import before apps)

    device = _device()
    ids = _tensor(randint(6, 3, seed=5431, low=0, high=25).astype(np.float32), device)
    variant_seed(5432)
    model = LanguageModel(
        8, 25, 16, num_layers=2, seq_model="transformer", seq_len=12, device=device
    )
    logits, _ = model(ids)
    return _values(logits.numpy())
