"""Course-compatible numerics (issue #14, part 4).

- On the numpy backend (``NEEDLE_BACKEND=np``, hw1 and hw2) ``Tensor(numpy_array)`` keeps the
  array's dtype, so float64 inputs give float64 results and gradients and float64 finite
  differences can be checked at 1e-6; lists, Python numbers and ``init.*`` give float32. The
  NDArray backends (``nd``) store float32 whatever comes in.
- A one-element numpy array (or a 0-d array, or a numpy scalar) is accepted as a scalar.
- ``logsumexp`` and its gradient are exact for logits up to ±1e10, ties at the maximum too.
- A shape mismatch names the operation written (``subtract`` for ``a - b``).

Oracles: numpy, PyTorch (float64 unless stated) and central finite differences of numpy
functions, never needle itself.
"""

from __future__ import annotations

import needle as ndl
import numpy as np
import pytest
import torch

NP_ONLY = pytest.mark.skipif(
    ndl.BACKEND != "np", reason="dtype preservation is the numpy backend's policy"
)
ND_ONLY = pytest.mark.skipif(ndl.BACKEND != "nd", reason="the NDArray backends' policy")


def numeric_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar numpy function ``f`` at ``x``, in float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = f(x)
        x[index] = saved - eps
        minus = f(x)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def needle_gradient_check(f, *arrays, eps: float = 1e-6, tol: float = 1e-6) -> None:
    """The course's own check: finite differences of needle's forward in float64 against
    needle's backward, with the course's tolerance. Passes only if the tensors stay float64."""
    tensors = [ndl.Tensor(a) for a in arrays]
    out = f(*tensors).sum()
    out.backward()
    for i, t in enumerate(tensors):
        assert t.grad.dtype == np.float64, f"gradient {i} is {t.grad.dtype}, not float64"
        numeric = np.zeros_like(arrays[i])
        for index in np.ndindex(arrays[i].shape):
            moved = [a.copy() for a in arrays]
            moved[i][index] += eps
            plus = f(*[ndl.Tensor(a) for a in moved]).numpy().sum()
            moved[i][index] -= 2 * eps
            minus = f(*[ndl.Tensor(a) for a in moved]).numpy().sum()
            numeric[index] = (plus - minus) / (2 * eps)
        error = np.linalg.norm(t.grad.numpy() - numeric)
        assert error < tol, f"input {i}: |analytic - numeric| = {error}"


# ---- 1. dtype policy -------------------------------------------------------------------------


@NP_ONLY
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_array_keeps_its_dtype(dtype):
    a = np.random.randn(5, 4).astype(dtype)
    t = ndl.Tensor(a)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), a)
    a[0, 0] = 123.0  # the tensor holds its own copy, as before
    assert t.numpy()[0, 0] != 123.0


@NP_ONLY
def test_numpy_scalar_and_0d_array_keep_their_dtype():
    assert ndl.Tensor(np.float64(1.5)).dtype == np.float64
    assert ndl.Tensor(np.array(1.5)).dtype == np.float64
    assert ndl.Tensor(np.float32(1.5)).dtype == np.float32
    assert ndl.Tensor(np.float32(1.5)).shape == ()


@NP_ONLY
def test_explicit_dtype_still_wins():
    a = np.random.randn(3, 2)
    assert ndl.Tensor(a, dtype="float32").dtype == np.float32
    assert ndl.Tensor(a.astype(np.float32), dtype="float64").dtype == np.float64


def test_lists_numbers_and_init_give_float32():
    assert ndl.Tensor([[1.0, 2.0], [3.0, 4.0]]).dtype == np.float32
    assert ndl.Tensor([1, 2, 3]).dtype == np.float32
    assert ndl.Tensor(2.5).dtype == np.float32
    assert ndl.init.randn(3, 2).dtype == np.float32
    assert ndl.init.rand(3, 2).dtype == np.float32
    assert ndl.init.ones(3).dtype == np.float32
    assert ndl.init.one_hot(4, [0, 3]).dtype == np.float32


@ND_ONLY
def test_nd_backend_stores_float32():
    t = ndl.Tensor(np.random.randn(5, 4))
    assert str(t.dtype) == "float32"
    np.testing.assert_allclose(t.numpy(), t.numpy().astype(np.float32))


@NP_ONLY
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "name, fn",
    [
        ("x*2.5", lambda x: x * 2.5),
        ("2.5*x", lambda x: 2.5 * x),
        ("x+3", lambda x: x + 3),
        ("x-0.5", lambda x: x - 0.5),
        ("1-x", lambda x: 1 - x),
        ("x/3.0", lambda x: x / 3.0),
        ("2/x", lambda x: 2 / x),
        ("x**2", lambda x: x**2),
        ("x**0.5", lambda x: ndl.power_scalar(x, 0.5)),
        ("2**x", lambda x: 2**x),
        ("-x", lambda x: -x),
        ("x*np.float64(2)", lambda x: x * np.float64(2.0)),
        ("x*np.array([2.0])", lambda x: x * np.array([2.0])),
    ],
)
def test_scalar_ops_keep_the_tensor_dtype(dtype, name, fn):
    a = np.random.rand(3, 4).astype(dtype) + 0.5
    x = ndl.Tensor(a)
    y = fn(x)
    assert y.dtype == dtype, f"{name}: {dtype.__name__} became {y.dtype}"
    y.backward()
    assert x.grad.dtype == dtype, f"{name}: gradient is {x.grad.dtype}"


@NP_ONLY
def test_float64_forward_and_gradients_against_torch():
    a, b = np.random.randn(5, 4), np.random.randn(4, 3)
    x, w = ndl.Tensor(a), ndl.Tensor(b)
    out = ndl.logsumexp(ndl.relu(x @ w) * 0.5 - ndl.exp(x @ w / 4.0), axes=(1,))
    out.sum().backward()
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    expected = torch.logsumexp(torch.relu(ta @ tb) * 0.5 - torch.exp(ta @ tb / 4.0), 1)
    expected.sum().backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@NP_ONLY
@pytest.mark.parametrize(
    "name, needle_fn, numpy_fn, shapes",
    [
        ("divide", ndl.divide, np.divide, [(5, 4), (5, 4)]),
        ("matmul", ndl.matmul, np.matmul, [(5, 4), (4, 3)]),
        ("summation", lambda x: ndl.summation(x, axes=(1,)), lambda x: x.sum(1), [(5, 4)]),
        ("power_scalar", lambda x: ndl.power_scalar(x, 3), lambda x: x**3, [(5, 4)]),
        ("log", ndl.log, np.log, [(5, 4)]),
        (
            "broadcast_to",
            lambda x: ndl.broadcast_to(x, (3, 4)),
            lambda x: np.broadcast_to(x, (3, 4)),
            [(1, 4)],
        ),
    ],
)
def test_float64_finite_differences_at_1e_6(name, needle_fn, numpy_fn, shapes):
    arrays = [np.random.rand(*shape) + 0.5 for shape in shapes]
    # The course's check: needle's forward differenced in float64 at tolerance 1e-6.
    needle_gradient_check(needle_fn, *arrays)
    # And against a numpy oracle.
    tensors = [ndl.Tensor(a) for a in arrays]
    needle_fn(*tensors).sum().backward()
    for i, t in enumerate(tensors):

        def f(v, i=i):
            moved = list(arrays)
            moved[i] = v
            return float(np.sum(numpy_fn(*moved)))

        np.testing.assert_allclose(t.grad.numpy(), numeric_gradient(f, arrays[i]), atol=1e-6)


@NP_ONLY
def test_float32_parameters_get_float32_gradients_from_float64_inputs():
    x = ndl.Tensor(np.random.randn(6, 4))  # float64, as Tensor(np.random.randn(...)) is
    model = ndl.nn.Linear(4, 3)
    assert model.weight.dtype == np.float32
    out = model(x)
    assert out.dtype == np.float64  # numpy promotes float32 with float64
    out.sum().backward()
    assert model.weight.grad.dtype == np.float32
    assert model.bias.grad.dtype == np.float32
    expected = x.numpy().T @ np.ones((6, 3))
    np.testing.assert_allclose(model.weight.grad.numpy(), expected, rtol=1e-6, atol=1e-5)
    # ... so an optimiser step keeps the parameters float32.
    ndl.optim.SGD(model.parameters(), lr=0.1).step()
    assert model.weight.dtype == np.float32


# ---- 2. one-element arrays are scalars -------------------------------------------------------


@pytest.mark.parametrize(
    "scalar", [np.array([2.0]), np.array(2.0), np.float32(2.0), np.array([[2]]), np.int64(2)]
)
def test_one_element_arrays_are_scalars(scalar):
    a = np.random.rand(3, 2).astype(np.float32) + 0.5
    x = ndl.Tensor(a, dtype="float32")
    cases = [
        (x * scalar, a * 2.0),
        (scalar * x, a * 2.0),
        (x + scalar, a + 2.0),
        (scalar + x, a + 2.0),
        (x - scalar, a - 2.0),
        (scalar - x, 2.0 - a),
        (x / scalar, a / 2.0),
        (x**scalar, a**2.0),
        (ndl.power_scalar(x, scalar), a**2.0),
        (ndl.divide_scalar(x, scalar), a / 2.0),
        (ndl.add_scalar(x, scalar), a + 2.0),
        (ndl.mul_scalar(x, scalar), a * 2.0),
        (ndl.ops.DivScalar(scalar)(x), a / 2.0),
        (ndl.ops.AddScalar(scalar)(x), a + 2.0),
        (ndl.ops.MulScalar(scalar)(x), a * 2.0),
    ]
    for i, (got, expected) in enumerate(cases):
        assert isinstance(got, ndl.Tensor), f"case {i}: {type(got).__name__}"
        assert str(got.dtype) == "float32", f"case {i}: float32 became {got.dtype}"
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, err_msg=f"case {i}")


def test_power_scalar_gradient_with_array_exponent():
    a = np.random.rand(4).astype(np.float32) + 0.5
    x = ndl.Tensor(a, dtype="float32")
    ndl.power_scalar(x, np.array(3)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * a**2, rtol=1e-5)


def test_scalar_tensor_from_numpy_scalar():
    t = ndl.Tensor(np.float32(2.5))
    assert t.shape == ()
    np.testing.assert_allclose(t.numpy(), 2.5)


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), np.zeros((2, 2)), "2", 1 + 2j])
def test_non_scalars_are_refused(bad):
    x = ndl.Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="expected a real number"):
        ndl.mul_scalar(x, bad)


# ---- 3. logsumexp for huge logits ------------------------------------------------------------

HUGE = np.array(
    [
        [1e10, 1e10 - 1.0, 0.0, -1e10],  # float32: the two maxima tie (spacing 1024 there)
        [-1e10, 0.0, 3.0, 1.0],
        [5.0, 5.0, -1e10, 5.0],  # a three-way tie
        [-1e10, -1e10 + 5.0, -1e10, -1e10],  # everything hugely negative
        [1e10, -1e10, 1e10, 1e10],
        [0.5, -0.25, 2.0, 1.0],  # ordinary values
    ]
)

LSE_DTYPES = ["float32"] + (["float64"] if ndl.BACKEND == "np" else [])


@pytest.mark.parametrize("dtype", LSE_DTYPES)
@pytest.mark.parametrize("axes", [(1,), (0,), None, (0, 1)])
def test_logsumexp_huge_logits_against_torch(dtype, axes):
    z = HUGE.astype(dtype)
    cotangent = np.asarray(np.random.randn(*np.sum(z, axis=axes).shape))
    x = ndl.Tensor(z, dtype=dtype)
    out = ndl.logsumexp(x, axes=axes)
    out.backward(ndl.Tensor(cotangent.astype(dtype), dtype=dtype))
    assert str(out.dtype) == dtype and str(x.grad.dtype) == dtype
    assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(x.grad.numpy()))

    dims = tuple(range(z.ndim)) if axes is None else axes
    t = torch.tensor(z.astype(np.float64))  # the values needle holds, in float64
    expected = torch.logsumexp(t, dim=dims).numpy()
    # d logsumexp / dz = softmax(z) over the reduced axes. PyTorch's softmax subtracts the
    # max; its logsumexp backward does not (it uses exp(z - output), which rounds badly).
    flat = t.movedim(dims, tuple(range(-len(dims), 0))).reshape(*expected.shape, -1)
    softmax = torch.softmax(flat, dim=-1).reshape(
        t.movedim(dims, tuple(range(-len(dims), 0))).shape
    )
    softmax = softmax.movedim(tuple(range(-len(dims), 0)), dims).numpy()
    expected_grad = softmax * np.expand_dims(cotangent, dims)

    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=rtol * 10, atol=rtol * 10)


@pytest.mark.parametrize("dtype", LSE_DTYPES)
def test_logsumexp_tie_at_huge_max_splits_the_gradient(dtype):
    """The hw2 case: in float32 1e10 and 1e10 - 1 are the same number, so each gets 1/2
    (exp(z - logsumexp(z)) would give 1 to both: 1e10 + log 2 rounds to 1e10)."""
    z = np.array([[1e10, 1e10 - 1.0]], dtype=dtype)
    x = ndl.Tensor(z, dtype=dtype)
    ndl.logsumexp(x, axes=(1,)).backward()
    expected = torch.softmax(torch.tensor(z.astype(np.float64)), dim=1).numpy()
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)
    if dtype == "float32":
        np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.5]])


def test_logsumexp_gradient_is_differentiable():
    """The gradient is built from ops: its own gradient is softmax's Jacobian (vs torch)."""
    z = np.random.randn(3, 4)
    x = ndl.Tensor(z, dtype="float32")
    w = np.random.randn(3, 4)
    ndl.logsumexp(x, axes=(1,)).backward()
    first = x.grad
    x.grad = None
    (first * ndl.Tensor(w, dtype="float32")).sum().backward()
    t = torch.tensor(z.astype(np.float32).astype(np.float64), requires_grad=True)
    (g,) = torch.autograd.grad(torch.logsumexp(t, 1).sum(), t, create_graph=True)
    (g * torch.tensor(w.astype(np.float32).astype(np.float64))).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", LSE_DTYPES)
def test_logsoftmax_huge_logits_against_torch(dtype):
    z = HUGE.astype(dtype)
    cotangent = np.random.randn(*z.shape)
    x = ndl.Tensor(z, dtype=dtype)
    out = ndl.logsoftmax(x)
    out.backward(ndl.Tensor(cotangent.astype(dtype), dtype=dtype))
    t = torch.tensor(z.astype(np.float64), requires_grad=True)
    expected = torch.log_softmax(t, dim=1)
    expected.backward(torch.tensor(cotangent))
    tol = 1e-6 if dtype == "float32" else 1e-12
    finite = np.isfinite(expected.detach().numpy())
    np.testing.assert_allclose(
        out.numpy()[finite], expected.detach().numpy()[finite], rtol=tol, atol=tol
    )
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=10 * tol, atol=10 * tol)


# ---- 4. error messages name the operation written --------------------------------------------


@pytest.mark.parametrize(
    "name, fn",
    [
        ("add", lambda a, b: a + b),
        ("subtract", lambda a, b: a - b),
        ("multiply", lambda a, b: a * b),
        ("divide", lambda a, b: a / b),
        ("power", lambda a, b: a**b),
        ("add", ndl.add),
        ("multiply", ndl.multiply),
        ("divide", ndl.divide),
        ("power", ndl.power),
    ],
)
def test_shape_errors_name_the_operation(name, fn):
    a = ndl.Tensor(np.ones((2, 3)))
    b = ndl.Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError) as info:
        fn(a, b)
    message = str(info.value)
    assert message.startswith(f"{name}: shapes (2, 3) and (3, 2) differ"), message
    assert "broadcast_to" in message
    assert "EWise" not in message


def test_subtract_is_still_add_of_a_negation():
    a, b = ndl.Tensor([1.0, 2.0]), ndl.Tensor([3.0, 5.0])
    c = a - b
    assert isinstance(c.op, ndl.ops.EWiseAdd)
    assert isinstance(c.inputs[1].op, ndl.ops.Negate)
    np.testing.assert_allclose(c.numpy(), [-2.0, -3.0])
