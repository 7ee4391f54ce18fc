"""Every needle op, forward and backward, against PyTorch and finite differences.

Shapes come from hypothesis (with the course's broadcasting corner cases pinned as explicit
examples); values from a seeded numpy generator. ``op_check.check_op`` does the comparing.
Tests carry the marker of the homework that introduces the op (``-m hw1`` runs one unit).
"""

from __future__ import annotations

import itertools

import needle as ndl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from needle.nn.nn_sequence import take_rows
from op_check import check_op, check_second_order, make_tensor

# Few examples per property: the suite must stay fast (each example runs torch, needle and a
# finite-difference sweep); derandomized so a failure reproduces on every machine.
FAST = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
seeds = st.integers(0, 2**16)


def shapes(min_dims: int = 0, max_dims: int = 4, max_side: int = 4):
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def random_array(rng: np.random.Generator, shape, domain: str = "any") -> np.ndarray:
    """Values suited to an op's domain: any real, positive, or bounded away from 0."""
    if domain == "positive":
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "nonzero":  # away from kinks/poles, so finite differences are valid
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 2.0, size=shape)
    return rng.standard_normal(shape)


@st.composite
def broadcast_pairs(draw, max_dims: int = 4):
    """``(input_shape, output_shape)`` with the input numpy-broadcastable to the output:
    some leading axes dropped, some of the rest shrunk to 1."""
    out_shape = draw(shapes(1, max_dims))
    kept = draw(st.integers(0, len(out_shape)))
    tail = out_shape[len(out_shape) - kept :]
    in_shape = tuple(1 if draw(st.booleans()) else n for n in tail)
    return in_shape, out_shape


@st.composite
def shape_and_axes(draw, min_dims: int = 0, max_dims: int = 4):
    """A shape and a reduction ``axes`` for it: None, one int (maybe negative), or a tuple."""
    shape = draw(shapes(min_dims, max_dims))
    ndim = len(shape)
    choices = [st.none(), st.lists(st.integers(0, max(ndim - 1, 0)), unique=True, max_size=ndim)]
    if ndim:
        choices.append(st.integers(-ndim, ndim - 1))
    axes = draw(st.one_of(*choices))
    if isinstance(axes, list):
        axes = tuple(axes) if ndim else ()
    return shape, axes


def torch_axes(axes, ndim):
    """needle's ``axes`` argument as a torch ``dim`` list (None: every axis)."""
    if axes is None:
        return list(range(ndim))
    return [axes] if isinstance(axes, int) else list(axes)


# ---- element-wise ops ------------------------------------------------------------------------

BINARY_OPS = [
    pytest.param(ndl.add, torch.add, "any", "any", id="add"),
    pytest.param(ndl.multiply, torch.mul, "any", "any", id="multiply"),
    pytest.param(lambda a, b: a - b, torch.sub, "any", "any", id="subtract"),
    pytest.param(ndl.divide, torch.div, "any", "nonzero", id="divide", marks=pytest.mark.hw1),
    pytest.param(ndl.power, torch.pow, "positive", "any", id="power", marks=pytest.mark.hw1),
]


@pytest.mark.parametrize("needle_fn, torch_fn, domain_a, domain_b", BINARY_OPS)
@FAST
@given(shape=shapes(0, 4), seed=seeds)
def test_binary_elementwise(device, needle_fn, torch_fn, domain_a, domain_b, shape, seed):
    rng = np.random.default_rng(seed)
    a, b = random_array(rng, shape, domain_a), random_array(rng, shape, domain_b)
    check_op(needle_fn, torch_fn, a, b, device=device, seed=seed)


@pytest.mark.parametrize("needle_fn", [ndl.add, ndl.multiply, ndl.divide, ndl.power])
def test_binary_elementwise_refuses_to_broadcast(device, needle_fn):
    a = ndl.Tensor(np.ones((3, 1), dtype=np.float32), device=device)
    b = ndl.Tensor(np.ones((3, 4), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="broadcast_to"):
        needle_fn(a, b)


SCALAR_OPS = [
    pytest.param(ndl.add_scalar, torch.add, 1.5, "any", id="add_scalar"),
    pytest.param(ndl.mul_scalar, torch.mul, -2.5, "any", id="mul_scalar"),
    pytest.param(
        ndl.divide_scalar, torch.div, 3, "any", id="divide_scalar_int", marks=pytest.mark.hw1
    ),
    pytest.param(
        ndl.divide_scalar, torch.div, -0.4, "any", id="divide_scalar", marks=pytest.mark.hw1
    ),
    pytest.param(ndl.power_scalar, torch.pow, 2, "any", id="power_scalar_2", marks=pytest.mark.hw1),
    pytest.param(
        ndl.power_scalar, torch.pow, 3.0, "any", id="power_scalar_3.0", marks=pytest.mark.hw1
    ),
    pytest.param(
        ndl.power_scalar, torch.pow, -1.5, "positive", id="power_scalar_-1.5", marks=pytest.mark.hw1
    ),
    pytest.param(
        ndl.power_scalar, torch.pow, 0.5, "positive", id="power_scalar_0.5", marks=pytest.mark.hw1
    ),
    pytest.param(ndl.power_scalar, torch.pow, 0, "any", id="power_scalar_0", marks=pytest.mark.hw1),
]


@pytest.mark.parametrize("needle_fn, torch_fn, scalar, domain", SCALAR_OPS)
@FAST
@given(shape=shapes(0, 4), seed=seeds)
def test_scalar_ops(device, needle_fn, torch_fn, scalar, domain, shape, seed):
    a = random_array(np.random.default_rng(seed), shape, domain)
    check_op(
        lambda x: needle_fn(x, scalar), lambda x: torch_fn(x, scalar), a, device=device, seed=seed
    )


UNARY_OPS = [
    pytest.param(ndl.negate, torch.neg, "any", id="negate", marks=pytest.mark.hw1),
    pytest.param(ndl.log, torch.log, "positive", id="log", marks=pytest.mark.hw1),
    pytest.param(ndl.exp, torch.exp, "any", id="exp", marks=pytest.mark.hw1),
    pytest.param(ndl.relu, torch.relu, "nonzero", id="relu", marks=pytest.mark.hw1),
    pytest.param(ndl.tanh, torch.tanh, "any", id="tanh", marks=pytest.mark.hw4),
    pytest.param(ndl.sigmoid, torch.sigmoid, "any", id="sigmoid", marks=pytest.mark.hw4),
]


@pytest.mark.parametrize("needle_fn, torch_fn, domain", UNARY_OPS)
@FAST
@given(shape=shapes(0, 4), seed=seeds)
def test_unary_elementwise(device, needle_fn, torch_fn, domain, shape, seed):
    a = random_array(np.random.default_rng(seed), shape, domain)
    check_op(needle_fn, torch_fn, a, device=device, seed=seed)


@pytest.mark.hw1
def test_relu_gradient_at_zero_is_zero(device):
    x = ndl.Tensor(np.array([-1.0, 0.0, 2.0], dtype=np.float32), device=device)
    ndl.relu(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


@pytest.mark.hw4
def test_sigmoid_does_not_overflow(device):
    x = ndl.Tensor(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32), device=device)
    np.testing.assert_allclose(ndl.sigmoid(x).numpy(), [0.0, 0.5, 1.0], atol=1e-7)


def test_float32_survives_python_and_numpy_scalars(device):
    x = ndl.Tensor(np.array([1.0, 2.0], dtype=np.float32), device=device)
    results = {
        "x ** 2.0": x**2.0,
        "x ** 2": x**2,
        "x / 3": x / 3,
        "x * np.float64(2)": x * np.float64(2.0),
        "x + np.float64(1)": x + np.float64(1.0),
        "x - 1": x - 1,
        "divide_scalar(x, np.float64(3))": ndl.divide_scalar(x, np.float64(3.0)),
        "logsumexp(x)": ndl.logsumexp(x),
        "sigmoid(x)": ndl.sigmoid(x),
    }
    for expression, tensor in results.items():
        assert str(tensor.dtype) == "float32", f"{expression} has dtype {tensor.dtype}"


def test_scalar_ops_reject_non_numbers():
    with pytest.raises(TypeError):
        ndl.AddScalar("1")


# ---- shapes -----------------------------------------------------------------------------------


@pytest.mark.hw1
@FAST
@given(data=st.data(), seed=seeds)
def test_transpose(device, data, seed):
    shape = data.draw(shapes(2, 4))
    ndim = len(shape)
    axes = data.draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(-ndim, ndim - 1), min_size=2, max_size=2, unique=True)
            .filter(lambda ax: ax[0] % ndim != ax[1] % ndim)
            .map(tuple),
        )
    )
    first, second = axes if axes is not None else (-2, -1)
    a = random_array(np.random.default_rng(seed), shape)
    check_op(
        lambda x: ndl.transpose(x, axes),
        lambda x: x.transpose(first, second),
        a,
        device=device,
        seed=seed,
    )


@pytest.mark.hw1
@pytest.mark.parametrize("axes", [(0, 1), (1, 2), (0, 2), None])
def test_transpose_swaps_two_axes_only(device, axes):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    first, second = axes if axes is not None else (1, 2)
    expected = np.swapaxes(a, first, second)
    got = ndl.transpose(ndl.Tensor(a, device=device), axes).numpy()
    np.testing.assert_array_equal(got, expected)


@FAST
@given(data=st.data(), seed=seeds)
def test_permute(device, data, seed):
    """The provided op that reorders all axes at once (NCHW <-> NHWC in nn.Conv and
    BatchNorm2d), against torch: values, gradients, and second order."""
    shape = data.draw(shapes(1, 4))
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    a = random_array(np.random.default_rng(seed), shape)
    check_op(
        lambda x: ndl.permute(x, axes), lambda x: x.permute(*axes), a, device=device, seed=seed
    )
    check_second_order(
        lambda x: ndl.permute(x, axes) ** 2, lambda x: x.permute(*axes) ** 2, a, device=device
    )


def test_permute_rejects_bad_orders(device):
    with pytest.raises(ValueError, match="order of all axes"):
        ndl.Permute((0, 2))
    with pytest.raises(ValueError, match="shape"):
        ndl.permute(ndl.Tensor(np.ones((2, 3), dtype=np.float32), device=device), (0, 2, 1))


def test_transpose_rejects_bad_axes(device):
    with pytest.raises(ValueError):
        ndl.Transpose((0, 1, 2))
    with pytest.raises(ValueError):
        ndl.transpose(ndl.Tensor(np.ones(3, dtype=np.float32), device=device))


@st.composite
def reshapes(draw):
    """A shape and another shape with the same number of elements."""
    shape = draw(shapes(0, 4))
    new_shape = list(draw(st.permutations(list(shape))))
    if draw(st.booleans()):
        new_shape.insert(draw(st.integers(0, len(new_shape))), 1)
    if draw(st.booleans()) and new_shape:
        new_shape = [int(np.prod(new_shape))]
    return shape, tuple(new_shape)


@pytest.mark.hw1
@FAST
@given(shapes_=reshapes(), seed=seeds)
@example(shapes_=((5, 4), (2, 5, 2)), seed=0)
def test_reshape(device, shapes_, seed):
    shape, new_shape = shapes_
    a = random_array(np.random.default_rng(seed), shape)
    check_op(
        lambda x: ndl.reshape(x, new_shape),
        lambda x: x.reshape(new_shape),
        a,
        device=device,
        seed=seed,
    )


@pytest.mark.hw1
@FAST
@given(pair=broadcast_pairs(), seed=seeds)
@example(pair=((1,), (3, 3, 3)), seed=0)
@example(pair=((5, 4, 1), (5, 4, 3)), seed=1)
@example(pair=((), (3, 3, 3)), seed=2)
@example(pair=((3, 1), (3, 3)), seed=3)
@example(pair=((1, 3), (3, 3)), seed=4)
def test_broadcast_to(device, pair, seed):
    in_shape, out_shape = pair
    a = random_array(np.random.default_rng(seed), in_shape)
    check_op(
        lambda x: ndl.broadcast_to(x, out_shape),
        lambda x: x.broadcast_to(out_shape),
        a,
        device=device,
        seed=seed,
    )


@pytest.mark.hw1
@FAST
@given(shape_axes=shape_and_axes(), seed=seeds)
@example(shape_axes=((5, 4, 1), (0, 1)), seed=0)
@example(shape_axes=((5, 3), 1), seed=1)
@example(shape_axes=((5, 3), None), seed=2)
def test_summation(device, shape_axes, seed):
    shape, axes = shape_axes
    a = random_array(np.random.default_rng(seed), shape)

    def torch_sum(x):
        dims = torch_axes(axes, x.ndim)
        return x.sum(dim=dims) if dims else x  # summing over no axis changes nothing

    check_op(lambda x: ndl.summation(x, axes), torch_sum, a, device=device, seed=seed)


@st.composite
def matmul_shapes(draw):
    """Operand shapes for ``a @ b`` with batch dims that broadcast either way."""
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    _, batch = draw(broadcast_pairs(max_dims=2)) if draw(st.booleans()) else ((), ())
    a_batch = draw(st.sampled_from(_batch_variants(batch)))
    b_batch = draw(st.sampled_from(_batch_variants(batch)))
    return a_batch + (m, k), b_batch + (k, n)


def _batch_variants(batch):
    """Batch shapes that broadcast to ``batch``: itself, without leading dims, with 1s."""
    variants = [batch[i:] for i in range(len(batch) + 1)]
    variants += [tuple(1 if j == i else n for j, n in enumerate(batch)) for i in range(len(batch))]
    return variants


@pytest.mark.hw1
@FAST
@given(pair=matmul_shapes(), seed=seeds)
@example(pair=((5, 4), (4, 3)), seed=0)
@example(pair=((6, 6, 5, 4), (6, 6, 4, 3)), seed=1)
@example(pair=((6, 6, 5, 4), (4, 3)), seed=2)
@example(pair=((5, 4), (6, 6, 4, 3)), seed=3)
@example(pair=((2, 1, 3, 4), (5, 4, 2)), seed=4)
def test_matmul(device, pair, seed):
    rng = np.random.default_rng(seed)
    a, b = random_array(rng, pair[0]), random_array(rng, pair[1])
    check_op(ndl.matmul, torch.matmul, a, b, device=device, seed=seed)


@pytest.mark.hw1
def test_matmul_rejects_vectors_and_bad_inner_dims(device):
    matrix = ndl.Tensor(np.ones((3, 3), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="2 dimensions"):
        ndl.matmul(ndl.Tensor(np.ones(3, dtype=np.float32), device=device), matrix)
    with pytest.raises(ValueError, match="inner"):
        ndl.matmul(matrix, ndl.Tensor(np.ones((2, 3), dtype=np.float32), device=device))


# ---- logsumexp and logsoftmax ------------------------------------------------------------------


@pytest.mark.hw2
@FAST
@given(shape_axes=shape_and_axes(min_dims=1), seed=seeds)
@example(shape_axes=((3, 1), 1), seed=0)
@example(shape_axes=((3, 4, 5), (0, 2)), seed=1)
def test_logsumexp(device, shape_axes, seed):
    shape, axes = shape_axes
    a = random_array(np.random.default_rng(seed), shape) * 3

    def torch_logsumexp(x):
        dims = torch_axes(axes, x.ndim)
        return torch.logsumexp(x, dim=dims) if dims else x

    check_op(lambda x: ndl.logsumexp(x, axes), torch_logsumexp, a, device=device, seed=seed)


@pytest.mark.hw2
@pytest.mark.parametrize("scale", [1e5, 1e10, -1e10])
@pytest.mark.parametrize("axes", [None, 0, 1, (0, 1)])
def test_logsumexp_is_stable(device, scale, axes):
    a = np.random.default_rng(0).standard_normal((3, 4)) * scale
    dims = torch_axes(axes, 2)
    check_op(
        lambda x: ndl.logsumexp(x, axes),
        lambda x: torch.logsumexp(x, dim=dims),
        a,
        device=device,
        finite_differences=False,
    )


@pytest.mark.hw2
@FAST
@given(shape=shapes(2, 2, max_side=6), seed=seeds)
def test_logsoftmax(device, shape, seed):
    a = random_array(np.random.default_rng(seed), shape) * 3
    check_op(ndl.logsoftmax, lambda x: torch.log_softmax(x, dim=1), a, device=device, seed=seed)


@pytest.mark.hw2
def test_logsoftmax_is_stable(device):
    a = np.random.default_rng(1).standard_normal((4, 5)) * 1e5
    check_op(
        ndl.logsoftmax,
        lambda x: torch.log_softmax(x, dim=1),
        a,
        device=device,
        finite_differences=False,
        rtol=1e-5,
    )


# ---- stack and split ---------------------------------------------------------------------------


@pytest.mark.hw4
@FAST
@given(data=st.data(), count=st.integers(1, 4), shape=shapes(0, 3), seed=seeds)
def test_stack(device, data, count, shape, seed):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    rng = np.random.default_rng(seed)
    arrays = [random_array(rng, shape) for _ in range(count)]
    check_op(
        lambda *xs: ndl.stack(list(xs), axis),
        lambda *xs: torch.stack(xs, dim=axis),
        *arrays,
        device=device,
        seed=seed,
    )


@pytest.mark.hw4
@FAST
@given(data=st.data(), shape=shapes(1, 4), seed=seeds)
def test_split(device, data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = random_array(np.random.default_rng(seed), shape)
    # Restack the pieces in reverse order (and scale one) so that each piece's gradient
    # differs and must come back to the right slice.
    check_op(
        lambda x: ndl.stack(_scaled_reversed(ndl.split(x, axis).tuple()), axis),
        lambda x: torch.stack(_scaled_reversed(torch.unbind(x, dim=axis)), dim=axis),
        a,
        device=device,
        seed=seed,
    )


def _scaled_reversed(pieces):
    pieces = list(reversed(pieces))
    pieces[0] = pieces[0] * 3.0
    return pieces


@pytest.mark.hw4
def test_stack_and_split_on_every_axis(device):
    shape = (2, 3, 4)
    rng = np.random.default_rng(7)
    for axis in range(-len(shape) - 1, len(shape) + 1):
        arrays = [random_array(rng, shape) for _ in range(3)]
        check_op(
            lambda *xs, axis=axis: ndl.stack(list(xs), axis),
            lambda *xs, axis=axis: torch.stack(xs, dim=axis),
            *arrays,
            device=device,
        )
    for axis in range(-len(shape), len(shape)):
        check_op(
            lambda x, axis=axis: ndl.stack(_scaled_reversed(ndl.split(x, axis).tuple()), axis),
            lambda x, axis=axis: torch.stack(_scaled_reversed(torch.unbind(x, axis)), axis),
            random_array(rng, shape),
            device=device,
        )


@pytest.mark.hw4
def test_split_piece_used_alone_sends_zeros_to_the_others(device):
    a = np.random.default_rng(3).standard_normal((4, 3))
    check_op(
        lambda x: ndl.split(x, 0)[2] * 2.0,
        lambda x: torch.unbind(x, 0)[2] * 2.0,
        a,
        device=device,
    )


@pytest.mark.hw4
def test_stack_rejects_unequal_shapes(device):
    a = ndl.Tensor(np.ones((2, 3), dtype=np.float32), device=device)
    b = ndl.Tensor(np.ones((3, 2), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="one shape"):
        ndl.stack([a, b], 0)


@pytest.mark.hw4
def test_the_adjoint_of_an_n_way_split_costs_n_additions_not_n_squared(device, monkeypatch):
    """Each piece's adjoint is a tuple that is zero but at its own place; summing the n
    tuples must skip the zeros (before the fix, 30 pieces made 870 array additions)."""
    n = 30
    values = np.random.default_rng(5).standard_normal((n, 4)).astype(np.float32)
    x = ndl.Tensor(values, device=device)
    array_type = type(x.realize_cached_data())
    counted = array_type is not np.ndarray  # numpy's own arrays cannot be instrumented
    additions = []
    if counted:
        original = array_type.__add__
        monkeypatch.setattr(
            array_type, "__add__", lambda a, b: additions.append(1) or original(a, b)
        )
    pieces = ndl.split(x, 0)
    total = pieces[0] * 1.0
    for i in range(1, n):
        total = total + pieces[i] * float(i + 1)
    additions.clear()
    total.sum().backward()
    if counted:
        assert len(additions) < 3 * n, f"{len(additions)} array additions for {n} pieces"
    expected = np.repeat(np.arange(1, n + 1, dtype=np.float32)[:, None], 4, axis=1)
    np.testing.assert_allclose(x.grad.numpy(), expected)


# ---- take_rows (an embedding lookup) -----------------------------------------------------------


@pytest.mark.hw4
@pytest.mark.parametrize("ids", [[3, 0, 3, 5], [[1, 2, 2], [0, 5, 1]], [4]])
def test_take_rows(device, ids):
    weight = np.random.default_rng(7).standard_normal((6, 3))
    ids = np.array(ids)
    check_op(
        lambda w: take_rows(w, ids),
        lambda w: F.embedding(torch.tensor(ids), w),
        weight,
        device=device,
    )


@pytest.mark.hw4
def test_take_rows_second_order(device):
    ids = np.array([[2, 0], [2, 1]])
    weight = np.random.default_rng(8).standard_normal((3, 4))
    check_second_order(
        lambda w: take_rows(w, ids) ** 2,
        lambda w: F.embedding(torch.tensor(ids), w) ** 2,
        weight,
        device=device,
    )


@pytest.mark.hw4
def test_take_rows_equals_a_one_hot_product(device):
    """What the course computes: one_hot(ids) @ weight, values and weight gradient."""
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 50, size=(7, 3))
    values = rng.standard_normal((50, 8)).astype(np.float32)
    cotangent = rng.standard_normal((7, 3, 8)).astype(np.float32)
    results = []
    for build in (
        lambda w: take_rows(w, ids),
        lambda w: (ndl.init.one_hot(50, ids.reshape(-1), device=device) @ w).reshape((7, 3, 8)),
    ):
        w = ndl.Tensor(values, device=device)
        out = build(w)
        out.backward(ndl.Tensor(cotangent, device=device))
        results.append((out.numpy(), w.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)


@pytest.mark.hw4
def test_take_rows_rejects_bad_ids(device):
    weight = ndl.Tensor(np.ones((4, 2), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        take_rows(weight, [0, 4])
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        take_rows(weight, [-1])
    with pytest.raises(ValueError, match="whole numbers"):
        take_rows(weight, [0.5])
    with pytest.raises(ValueError, match="2-D"):
        take_rows(ndl.Tensor(np.ones(4, dtype=np.float32), device=device), [0])


# ---- flip, dilate, undilate --------------------------------------------------------------------


@pytest.mark.hw4
@FAST
@given(data=st.data(), shape=shapes(1, 4), seed=seeds)
def test_flip(device, data, shape, seed):
    ndim = len(shape)
    axes = data.draw(
        st.one_of(
            st.integers(-ndim, ndim - 1),
            st.lists(st.integers(0, ndim - 1), min_size=1, unique=True).map(tuple),
        )
    )
    dims = [axes] if isinstance(axes, int) else list(axes)
    a = random_array(np.random.default_rng(seed), shape)
    check_op(lambda x: ndl.flip(x, axes), lambda x: torch.flip(x, dims), a, device=device)


def _torch_dilate(x, axes, dilation):
    axes = [axis for axis in axes if axis < x.ndim]
    step = dilation + 1
    out = x.new_zeros([n * step if i in axes else n for i, n in enumerate(x.shape)])
    out[tuple(slice(None, None, step) if i in axes else slice(None) for i in range(x.ndim))] = x
    return out


def _torch_undilate(x, axes, dilation):
    step = dilation + 1
    return x[tuple(slice(None, None, step) if i in axes else slice(None) for i in range(x.ndim))]


@pytest.mark.hw4
def test_dilate_small_examples(device):
    a = ndl.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), device=device)
    cases = {
        ((0,), 1): [[1, 2], [0, 0], [3, 4], [0, 0]],
        ((1,), 2): [[1, 0, 0, 2, 0, 0], [3, 0, 0, 4, 0, 0]],
        ((0, 1), 1): [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]],
        ((2,), 1): [[1, 2], [3, 4]],  # axis 2 of a 2-D tensor: ignored, as in the course
        ((0,), 0): [[1, 2], [3, 4]],
    }
    for (axes, dilation), expected in cases.items():
        got = ndl.dilate(a, axes, dilation).numpy()
        np.testing.assert_array_equal(got, np.array(expected), err_msg=f"{axes}, {dilation}")
        back = ndl.undilate(ndl.dilate(a, axes, dilation), axes, dilation).numpy()
        np.testing.assert_array_equal(back, a.numpy())


@pytest.mark.hw4
@FAST
@given(data=st.data(), shape=shapes(1, 4), dilation=st.integers(0, 2), seed=seeds)
def test_dilate_and_undilate(device, data, shape, dilation, seed):
    axes = data.draw(st.lists(st.integers(0, len(shape)), min_size=1, unique=True).map(tuple))
    a = random_array(np.random.default_rng(seed), shape)
    check_op(
        lambda x: ndl.dilate(x, axes, dilation),
        lambda x: _torch_dilate(x, axes, dilation),
        a,
        device=device,
        seed=seed,
    )
    in_range = [axis for axis in axes if axis < len(shape)]
    dilated_shape = tuple(n * (dilation + 1) if i in in_range else n for i, n in enumerate(shape))
    b = random_array(np.random.default_rng(seed + 1), dilated_shape)
    check_op(
        lambda x: ndl.undilate(x, axes, dilation),
        lambda x: _torch_undilate(x, in_range, dilation),
        b,
        device=device,
        seed=seed,
    )


@pytest.mark.hw4
def test_undilate_rejects_lengths_dilate_cannot_make(device):
    a = ndl.Tensor(np.ones((5, 2), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="multiple"):
        ndl.undilate(a, (0,), 1)


# ---- convolution -------------------------------------------------------------------------------


def _torch_conv(stride, padding, dilation=1):
    """torch's conv2d on needle's layouts (NHWC input, (K, K, C_in, C_out) weights).

    ``padding`` may be needle's ``((top, bottom), (left, right))`` with negative entries;
    ``F.pad`` crops for negative amounts too."""

    def conv(x, w):
        x = x.permute(0, 3, 1, 2)
        w = w.permute(3, 2, 0, 1).contiguous()
        if isinstance(padding, int):
            out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
        else:
            (top, bottom), (left, right) = padding
            x = F.pad(x, (left, right, top, bottom))
            out = F.conv2d(x, w, stride=stride, dilation=dilation)
        return out.permute(0, 2, 3, 1)

    return conv


def _torch_dilate_hw(x, factor):
    """needle's dilate over H and W of an NHWC tensor: factor - 1 zeros after each pixel."""
    n, h, w, c = x.shape
    out = torch.zeros((n, h * factor, w * factor, c), dtype=x.dtype)
    out[:, ::factor, ::factor, :] = x
    return out


@pytest.mark.hw4
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv(device, stride, padding, kernel):
    rng = np.random.default_rng(100 * stride + 10 * padding + kernel)
    x = random_array(rng, (2, 7, 6, 3))  # H != W, and sizes the stride does not divide
    w = random_array(rng, (kernel, kernel, 3, 2))
    check_op(
        lambda a, b: ndl.conv(a, b, stride=stride, padding=padding),
        _torch_conv(stride, padding),
        x,
        w,
        device=device,
    )


@pytest.mark.hw4
@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation",
    [
        (1, 3, 1, 1, 1),  # ResNet9's last block: only the centre tap reads the image
        (2, 3, 2, 1, 1),  # the first tap row/column reads padding only
        (1, 5, 1, 2, 1),
        (2, 3, 1, ((3, 0), (0, 3)), 2),  # dead taps on one side, dilated, cropped padding
        (1, 3, 2, ((1, 2), (2, 1)), 1),
        (3, 2, 1, ((-1, 2), (2, -1)), 1),  # negative padding crops
    ],
    ids=str,
)
def test_conv_on_images_smaller_than_the_padded_kernel(
    device, size, kernel, stride, padding, dilation
):
    """Kernel taps that only ever multiply padding may be skipped, never miscounted: values
    and both gradients against PyTorch."""
    rng = np.random.default_rng(10 * size + kernel)
    x = random_array(rng, (2, size, size + 1, 3))
    w = random_array(rng, (kernel, kernel, 3, 4))
    check_op(
        lambda a, b: ndl.conv(a, b, stride=stride, padding=padding, dilation=dilation),
        _torch_conv(stride, padding, dilation),
        x,
        w,
        device=device,
    )


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("padding", [0, 1, ((2, 0), (1, 3))], ids=str)
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [2, 3])
def test_conv_dilated(device, dilation, stride, padding, kernel):
    """Dilated kernels (taps `dilation` apart): the weight gradient of every strided conv is
    one, so the op must get them right forwards and backwards."""
    rng = np.random.default_rng(1000 * dilation + 100 * stride + kernel)
    x = random_array(rng, (2, 9, 8, 2))
    w = random_array(rng, (kernel, kernel, 2, 3))
    check_op(
        lambda a, b: ndl.conv(a, b, stride=stride, padding=padding, dilation=dilation),
        _torch_conv(stride, padding, dilation),
        x,
        w,
        device=device,
    )


@pytest.mark.hw4
@pytest.mark.parametrize(
    "padding", [((1, 0), (0, 2)), ((-1, 1), (2, -1)), ((2, 2), (-1, -1))], ids=str
)
@pytest.mark.parametrize("stride", [1, 3])
def test_conv_general_padding(device, stride, padding):
    rng = np.random.default_rng(5)
    x, w = random_array(rng, (1, 8, 7, 2)), random_array(rng, (3, 2, 2, 3))  # 3x2 kernel
    check_op(
        lambda a, b: ndl.conv(a, b, stride=stride, padding=padding),
        _torch_conv(stride, padding),
        x,
        w,
        device=device,
    )


@pytest.mark.hw4
@FAST
@given(
    batch=st.integers(1, 2),
    size=st.integers(1, 6),
    channels=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    seed=seeds,
)
def test_conv_random_shapes(device, batch, size, channels, kernel, stride, padding, seed):
    assume(size + 2 * padding >= kernel)  # else no output position: conv refuses (tested below)
    rng = np.random.default_rng(seed)
    x = random_array(rng, (batch, size, size, channels[0]))
    w = random_array(rng, (kernel, kernel, *channels))
    check_op(
        lambda a, b: ndl.conv(a, b, stride=stride, padding=padding),
        _torch_conv(stride, padding),
        x,
        w,
        device=device,
        seed=seed,
    )


def test_live_taps_and_outputs_match_their_definition():
    """The dead-tap and dead-output helpers work out ranges with integer arithmetic; here
    against their definition (tap t of output i reads row i*s + t*d - before), exhaustively
    over small sizes, paddings, kernels, strides and dilations."""
    from needle.ops.ops_mathematic import _live_outputs, _live_taps

    def reads(size, before, stride, dilation, i, t):
        return 0 <= i * stride + t * dilation - before < size

    for size, before, kernel, stride, dilation, out in itertools.product(
        range(1, 6), range(-3, 6), range(1, 6), range(1, 4), range(1, 4), range(1, 7)
    ):
        args = (size, before, kernel, stride, dilation, out)
        taps = [
            t
            for t in range(kernel)
            if any(reads(size, before, stride, dilation, i, t) for i in range(out))
        ]
        outs = [
            i
            for i in range(out)
            if any(reads(size, before, stride, dilation, i, t) for t in range(kernel))
        ]
        assert _live_taps(*args) == ((taps[0], taps[-1]) if taps else (0, kernel - 1)), args
        assert _live_outputs(*args) == ((outs[0], outs[-1]) if outs else None), args


@settings(FAST, max_examples=40)
@given(
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    factor=st.integers(2, 4),
    padding=st.tuples(*[st.integers(-2, 4)] * 4),
    seed=seeds,
)
def test_conv_of_dilated_is_the_plain_formula(device, size, kernel, factor, padding, seed):
    """The reference's input gradient of a strided conv skips the zeros of the dilated
    adjoint: same values (phases without kernel taps, crops and pads included) and the same
    gradients as conv(dilate(g)), including where a kernel is shorter than the stride."""
    from needle.ops.ops_mathematic import _ConvOfDilated

    rng = np.random.default_rng(seed)
    g = random_array(rng, (2, *size, 3))
    w = random_array(rng, (*kernel, 3, 2))
    pad = ((padding[0], padding[1]), (padding[2], padding[3]))
    out = tuple(n * factor + a + b - k + 1 for n, (a, b), k in zip(size, pad, kernel))
    assume(min(out) >= 1)

    def plain(a, b):
        return ndl.conv(ndl.dilate(a, (1, 2), factor - 1), b, stride=1, padding=pad)

    check_op(
        lambda a, b: _ConvOfDilated(factor, pad)(a, b),
        lambda a, b: _torch_conv(1, pad)(_torch_dilate_hw(a, factor), b),
        g,
        w,
        device=device,
        seed=seed,
    )
    inputs = [ndl.Tensor(array, device=device) for array in (g, w)]
    np.testing.assert_allclose(
        _ConvOfDilated(factor, pad)(*inputs).numpy(), plain(*inputs).numpy(), atol=1e-5
    )


@settings(FAST, max_examples=40)
@given(
    size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.tuples(*[st.integers(-1, 4)] * 4),
    seed=seeds,
)
def test_conv_weight_gradient_op(device, size, kernel, stride, dilation, padding, seed):
    """The reference's weight gradient (one product of the transposed im2col view with the
    adjoint, dead taps skipped) against torch's, values and gradients of both inputs."""
    from needle.ops.ops_mathematic import _ConvWeightGradient

    pad = ((padding[0], padding[1]), (padding[2], padding[3]))
    out = tuple(
        (n + a + b - (k - 1) * dilation - 1) // stride + 1
        for n, (a, b), k in zip(size, pad, kernel)
    )
    assume(min(out) >= 1)
    rng = np.random.default_rng(seed)
    x = random_array(rng, (2, *size, 3))
    g = random_array(rng, (2, *out, 2))

    def torch_weight_gradient(x, g):
        w = torch.zeros((*kernel, 3, 2), dtype=x.dtype, requires_grad=True)
        y = _torch_conv(stride, pad, dilation)(x, w)
        return torch.autograd.grad(y, w, grad_outputs=g, create_graph=True)[0]

    check_op(
        lambda a, b: _ConvWeightGradient(kernel, stride, pad, dilation)(a, b),
        torch_weight_gradient,
        x,
        g,
        device=device,
        seed=seed,
    )


@pytest.mark.hw4
def test_conv_helper_pads_by_one_by_default(device):
    rng = np.random.default_rng(2)
    x, w = random_array(rng, (1, 5, 5, 2)), random_array(rng, (3, 3, 2, 4))
    check_op(ndl.conv, _torch_conv(1, 1), x, w, device=device, finite_differences=False)
    assert ndl.Conv().padding == 0


@pytest.mark.hw4
def test_conv_rejects_bad_shapes(device):
    x = ndl.Tensor(np.ones((1, 5, 5, 2), dtype=np.float32), device=device)
    with pytest.raises(ValueError, match="channels"):
        ndl.conv(x, ndl.Tensor(np.ones((3, 3, 3, 4), dtype=np.float32), device=device))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ndl.conv(x, ndl.Tensor(np.ones((7, 7, 2, 1), dtype=np.float32), device=device), padding=0)
    with pytest.raises(ValueError, match="NHWC"):
        ndl.conv(ndl.Tensor(np.ones((5, 5, 2), dtype=np.float32), device=device), x)
    with pytest.raises(ValueError, match="dilated by 3"):  # 3x3 taps 3 apart span 7 > 5
        ndl.conv(x, ndl.Tensor(np.ones((3, 3, 2, 1), dtype=np.float32), device=device), 1, 0, 3)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        ndl.conv(x, ndl.Tensor(np.ones((3, 3, 2, 1), dtype=np.float32), device=device), 1, 0, 0)


# ---- non-contiguous inputs ----------------------------------------------------------------------

NONCONTIGUOUS_CASES = [
    pytest.param(ndl.exp, torch.exp, [(3, 4)], id="exp"),
    pytest.param(ndl.relu, torch.relu, [(5,)], id="relu-1d"),
    pytest.param(ndl.multiply, torch.mul, [(3, 4), (3, 4)], id="multiply"),
    pytest.param(ndl.divide, torch.div, [(2, 3, 4), (2, 3, 4)], id="divide"),
    pytest.param(
        lambda x: ndl.summation(x, (0, 2)), lambda x: x.sum((0, 2)), [(2, 3, 4)], id="summation"
    ),
    pytest.param(
        lambda x: ndl.reshape(x, (4, 6)), lambda x: x.reshape(4, 6), [(2, 3, 4)], id="reshape"
    ),
    pytest.param(
        lambda x: ndl.broadcast_to(x, (2, 3, 4)),
        lambda x: x.broadcast_to((2, 3, 4)),
        [(3, 1)],
        id="broadcast_to",
    ),
    pytest.param(ndl.transpose, lambda x: x.transpose(-2, -1), [(2, 3, 4)], id="transpose"),
    pytest.param(ndl.matmul, torch.matmul, [(2, 3, 4), (4, 5)], id="matmul"),
    pytest.param(
        lambda x: ndl.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1), [(3, 4)], id="logsumexp"
    ),
    pytest.param(ndl.logsoftmax, lambda x: torch.log_softmax(x, 1), [(3, 4)], id="logsoftmax"),
    pytest.param(
        lambda x, y: ndl.stack([x, y], 1),
        lambda x, y: torch.stack([x, y], 1),
        [(3, 4), (3, 4)],
        id="stack",
    ),
    pytest.param(lambda x: ndl.split(x, 1)[2], lambda x: x[:, 2], [(2, 4, 3)], id="split"),
    pytest.param(
        lambda x: ndl.flip(x, (0, 2)), lambda x: torch.flip(x, (0, 2)), [(2, 3, 4)], id="flip"
    ),
    pytest.param(
        lambda x: ndl.dilate(x, (1,), 1), lambda x: _torch_dilate(x, (1,), 1), [(2, 3)], id="dilate"
    ),
    pytest.param(
        lambda x, w: ndl.conv(x, w, 2, 1),
        _torch_conv(2, 1),
        [(2, 5, 6, 3), (3, 3, 3, 2)],
        id="conv",
    ),
]


@pytest.mark.parametrize("needle_fn, torch_fn, shapes_", NONCONTIGUOUS_CASES)
def test_noncontiguous_inputs(device, needle_fn, torch_fn, shapes_):
    rng = np.random.default_rng(11)
    arrays = [random_array(rng, shape, "nonzero") for shape in shapes_]
    check_op(needle_fn, torch_fn, *arrays, device=device, noncontiguous=True)


# ---- gradients of gradients ----------------------------------------------------------------------

SECOND_ORDER_CASES = [
    pytest.param(ndl.exp, torch.exp, [(3, 4)], "any", id="exp"),
    pytest.param(ndl.log, torch.log, [(3, 4)], "positive", id="log"),
    pytest.param(ndl.tanh, torch.tanh, [(3, 4)], "any", id="tanh"),
    pytest.param(ndl.sigmoid, torch.sigmoid, [(3, 4)], "any", id="sigmoid"),
    pytest.param(lambda x: x**-1.5, lambda x: x**-1.5, [(3, 4)], "positive", id="power_scalar"),
    pytest.param(ndl.multiply, torch.mul, [(3, 4), (3, 4)], "any", id="multiply"),
    pytest.param(ndl.divide, torch.div, [(3, 4), (3, 4)], "positive", id="divide"),
    pytest.param(ndl.power, torch.pow, [(3, 4), (3, 4)], "positive", id="power"),
    pytest.param(ndl.matmul, torch.matmul, [(2, 3, 4), (4, 5)], "any", id="matmul-batched"),
    pytest.param(
        lambda x: ndl.logsumexp(x, 1),
        lambda x: torch.logsumexp(x, 1),
        [(3, 4)],
        "any",
        id="logsumexp",
    ),
    pytest.param(
        ndl.logsoftmax, lambda x: torch.log_softmax(x, 1), [(3, 4)], "any", id="logsoftmax"
    ),
    pytest.param(
        lambda x, w: ndl.conv(x, w, 2, 1),
        _torch_conv(2, 1),
        [(2, 5, 5, 2), (3, 3, 2, 3)],
        "any",
        id="conv",
    ),
    pytest.param(
        lambda x, w, y: ndl.logsumexp(ndl.tanh(x @ w) / y, (1,)),
        lambda x, w, y: torch.logsumexp(torch.tanh(x @ w) / y, 1),
        [(4, 3), (3, 5), (4, 5)],
        "positive",
        id="logsumexp(tanh(x@w)/y)",
    ),
    pytest.param(
        lambda x, y: ndl.summation(ndl.broadcast_to(x, (4, 3)) * y, 0) ** 2,
        lambda x, y: (x.broadcast_to((4, 3)) * y).sum(0) ** 2,
        [(1, 3), (4, 3)],
        "any",
        id="sum(broadcast(x)*y)**2",
    ),
    pytest.param(
        lambda x, w: ndl.conv(x, w, 3, 2, dilation=2),
        _torch_conv(3, 2, dilation=2),
        [(2, 8, 7, 2), (2, 2, 2, 3)],
        "any",
        id="conv-stride3-dilation2",
    ),
    pytest.param(
        lambda x, w: ndl.exp(ndl.relu(ndl.conv(x, w, 1, 0)) * 0.5),
        lambda x, w: torch.exp(torch.relu(_torch_conv(1, 0)(x, w)) * 0.5),
        [(1, 4, 4, 2), (2, 2, 2, 2)],
        "nonzero",
        id="exp(relu(conv))",
    ),
]


@pytest.mark.parametrize("needle_fn, torch_fn, shapes_, domain", SECOND_ORDER_CASES)
def test_second_order_gradients(device, needle_fn, torch_fn, shapes_, domain):
    rng = np.random.default_rng(21)
    arrays = [random_array(rng, shape, domain) for shape in shapes_]
    check_second_order(needle_fn, torch_fn, *arrays, device=device)


# ---- tuple ops -----------------------------------------------------------------------------------


def test_tuple_get_item_folds_make_tuple(device):
    a = make_tensor(np.ones((2,)), device)
    b = make_tensor(np.zeros((3,)), device)
    assert ndl.tuple_get_item(ndl.make_tuple(a, b), 1) is b
    assert len(ndl.make_tuple(a, b)) == 2


def test_tuple_get_item_gradient_is_zero_for_other_elements(device):
    rng = np.random.default_rng(4)
    a_np, b_np = rng.standard_normal((2, 3)), rng.standard_normal((4,))
    a, b = make_tensor(a_np, device), make_tensor(b_np, device)
    pair = ndl.make_tuple(a, b)
    first = ndl.TupleGetItem(0)(pair, fold_const=False)  # a real graph node this time
    assert isinstance(first.op, ndl.TupleGetItem)
    (first * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((2, 3), 3.0))
    np.testing.assert_allclose(b.grad.numpy(), np.zeros(4))


def test_fused_add_scalars(device):
    x_np = np.random.default_rng(5).standard_normal((3, 2))
    x = make_tensor(x_np, device)
    first, second = ndl.fused_add_scalars(x, 1.0, 2.0).tuple()
    (first * second).sum().backward()
    np.testing.assert_allclose(first.numpy(), x_np + 1, rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), x_np + 2, rtol=1e-6)
    # d/dx (x + 1)(x + 2) = 2x + 3
    np.testing.assert_allclose(x.grad.numpy(), 2 * x_np + 3, rtol=1e-5)


def test_tensor_tuple_addition(device):
    rng = np.random.default_rng(6)
    a_np, b_np = rng.standard_normal((2,)), rng.standard_normal((2,))
    a, b = make_tensor(a_np, device), make_tensor(b_np, device)
    total = ndl.make_tuple(a, b) + ndl.make_tuple(b * 2.0, a * 3.0)
    assert isinstance(total, ndl.TensorTuple)
    first, second = total.tuple()
    np.testing.assert_allclose(first.numpy(), a_np + 2 * b_np, rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), b_np + 3 * a_np, rtol=1e-6)


# ---- thorough sweeps (make test-slow) ----------------------------------------------------------

THOROUGH = settings(FAST, max_examples=200)


def thorough(test, **strategies):
    """A many-example twin of a fast property test, run by ``make test-slow``."""
    return pytest.mark.slow(THOROUGH(given(**strategies)(test.hypothesis.inner_test)))


test_transpose_thorough = thorough(test_transpose, data=st.data(), seed=seeds)
test_reshape_thorough = thorough(test_reshape, shapes_=reshapes(), seed=seeds)
test_broadcast_to_thorough = thorough(test_broadcast_to, pair=broadcast_pairs(), seed=seeds)
test_summation_thorough = thorough(test_summation, shape_axes=shape_and_axes(), seed=seeds)
test_matmul_thorough = thorough(test_matmul, pair=matmul_shapes(), seed=seeds)
test_logsumexp_thorough = thorough(
    test_logsumexp, shape_axes=shape_and_axes(min_dims=1), seed=seeds
)
test_stack_thorough = thorough(
    test_stack, data=st.data(), count=st.integers(1, 4), shape=shapes(0, 3), seed=seeds
)
test_split_thorough = thorough(test_split, data=st.data(), shape=shapes(1, 4), seed=seeds)
test_flip_thorough = thorough(test_flip, data=st.data(), shape=shapes(1, 4), seed=seeds)
test_dilate_and_undilate_thorough = thorough(
    test_dilate_and_undilate,
    data=st.data(),
    shape=shapes(1, 4),
    dilation=st.integers(0, 2),
    seed=seeds,
)
test_conv_random_shapes_thorough = thorough(
    test_conv_random_shapes,
    batch=st.integers(1, 3),
    size=st.integers(1, 9),
    channels=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    seed=seeds,
)
