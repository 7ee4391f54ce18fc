"""One helper that checks a needle op three ways.

``check_op(needle_fn, torch_fn, *arrays, device=...)`` runs ``needle_fn`` on float32 tensors
on ``device`` and compares

1. the output with ``torch_fn`` run in float64 on the same values;
2. the gradients from ``backward`` (with a random cotangent, so every output element gets its
   own weight) with PyTorch's gradients;
3. the same gradients with central finite differences of needle's own forward pass,
   evaluated in float64 on numpy (see ``float64_numpy_needle``): element by element for small
   inputs, along a few random directions for large ones.

``check_second_order`` differentiates the gradient once more and compares with
``torch.autograd.grad(..., create_graph=True)``.

Both accept ``noncontiguous=True``, which hands the op inputs whose arrays are strided views
(a transposed or every-other-element layout) instead of compact arrays.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import needle as ndl
import numpy as np
import torch
from needle import autograd
from needle.nn import nn_sequence
from needle.ops import ops_logarithmic, ops_mathematic, ops_tuple

# The modules whose ``array_api`` decides how needle computes.
_ARRAY_API_USERS = (autograd, ops_mathematic, ops_logarithmic, ops_tuple, nn_sequence)

# Up to this many elements an input's gradient is checked entry by entry; beyond it, along
# random directions (each direction costs two forward passes, not two per element).
ELEMENTWISE_FD_LIMIT = 64
FD_DIRECTIONS = 3
FD_EPS = 1e-6


@contextlib.contextmanager
def float64_numpy_needle():
    """Run needle's ops on float64 numpy arrays, whatever ``$NEEDLE_BACKEND`` says.

    The ops' ``compute`` methods only use functions that numpy and NDArray share, so pointing
    their ``array_api`` at numpy runs the very same code in float64: an accurate reference
    for finite differences, even where the device only knows float32.
    """
    saved = [module.array_api for module in _ARRAY_API_USERS]
    try:
        for module in _ARRAY_API_USERS:
            module.array_api = np
        yield
    finally:
        for module, array_api in zip(_ARRAY_API_USERS, saved):
            module.array_api = array_api


def _is_compact(array) -> bool:
    if isinstance(array, np.ndarray):
        return array.flags.c_contiguous
    return array.is_compact()


def make_tensor(array: np.ndarray, device, *, noncontiguous: bool = False) -> ndl.Tensor:
    """A float32 leaf tensor on ``device`` holding ``array``.

    With ``noncontiguous=True`` its data is a strided view: the transpose of a compact array
    holding the transposed values (2+ dims), or every other element of a twice-as-long
    array (1 dim). Scalars and single elements stay compact.
    """
    array = np.asarray(array, dtype=np.float32)
    if not noncontiguous or array.size < 2:
        return ndl.Tensor(array, device=device, dtype="float32")
    if array.ndim >= 2:
        order = tuple(reversed(range(array.ndim)))
        stored = ndl.Tensor(np.ascontiguousarray(array.transpose(order)), device=device)
        view = ndl.array_api.transpose(stored.realize_cached_data(), order)
    else:
        doubled = np.zeros(2 * array.size, dtype=np.float32)
        doubled[::2] = array
        stored = ndl.Tensor(doubled, device=device)
        view = stored.realize_cached_data()[::2]
    if sum(n > 1 for n in array.shape) >= 2 or array.ndim == 1:
        assert not _is_compact(view), "make_tensor failed to make a non-contiguous input"
    np.testing.assert_array_equal(_to_numpy(view), array)
    return ndl.Tensor.make_const(view, requires_grad=True)


def _to_numpy(array) -> np.ndarray:
    return np.asarray(array if isinstance(array, (np.ndarray, np.generic)) else array.numpy())


def _grad_or_zeros(tensor: ndl.Tensor) -> np.ndarray:
    grad = getattr(tensor, "grad", None)
    if grad is None:
        return np.zeros(tensor.shape, dtype=np.float32)
    return np.asarray(grad.numpy())


def _assert_close(actual, expected, *, rtol: float, atol: float, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    # Absolute tolerance relative to the largest entry: float32 rounding scales with it.
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def _assert_float32(tensor: ndl.Tensor, what: str) -> None:
    assert str(tensor.dtype) == "float32", f"{what} has dtype {tensor.dtype}, expected float32"


def _torch_forward(torch_fn, arrays):
    inputs = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    return inputs, torch_fn(*inputs)


def _needle_float64_objective(needle_fn, cotangent: np.ndarray):
    """``arrays -> Σ needle_fn(arrays) * cotangent``, evaluated in float64 on numpy."""

    def objective(arrays: Sequence[np.ndarray]) -> float:
        with float64_numpy_needle():
            tensors = [ndl.Tensor(a, dtype="float64", requires_grad=False) for a in arrays]
            out = needle_fn(*tensors)
            out_array = np.asarray(out.numpy())
        assert out_array.dtype == np.float64, "the float64 reference pass lost precision"
        return float(np.sum(out_array * cotangent))

    return objective


def _check_finite_differences(objective, arrays, grads, rng, *, rtol, atol) -> None:
    base = [np.array(a, dtype=np.float64) for a in arrays]
    for index, grad in enumerate(grads):
        grad = np.asarray(grad, dtype=np.float64)
        if base[index].size <= ELEMENTWISE_FD_LIMIT:
            numeric = np.zeros_like(base[index])
            for flat in range(base[index].size):
                for sign in (1, -1):
                    shifted = [a.copy() for a in base]
                    shifted[index].reshape(-1)[flat] += sign * FD_EPS
                    numeric.reshape(-1)[flat] += sign * objective(shifted) / (2 * FD_EPS)
            _assert_close(
                grad, numeric, rtol=rtol, atol=atol, what=f"gradient {index} vs finite diff."
            )
            continue
        for _ in range(FD_DIRECTIONS):
            direction = rng.standard_normal(base[index].shape)
            plus = [a.copy() for a in base]
            minus = [a.copy() for a in base]
            plus[index] += FD_EPS * direction
            minus[index] -= FD_EPS * direction
            numeric = (objective(plus) - objective(minus)) / (2 * FD_EPS)
            analytic = float(np.sum(grad * direction))
            # A random direction sees a relative gradient error e as an error of size about
            # e * |grad|; float32 rounding gives e ~ 1e-6, a wrong gradient e ~ 1.
            tolerance = rtol * (np.linalg.norm(grad) + abs(numeric)) + atol * 1e-2
            assert abs(numeric - analytic) <= tolerance, (
                f"gradient {index} along a random direction: finite differences give "
                f"{numeric:.8g}, backward gives {analytic:.8g}"
            )


def check_op(
    needle_fn: Callable[..., ndl.Tensor],
    torch_fn: Callable[..., torch.Tensor] | None,
    *arrays: np.ndarray,
    device,
    backward: bool = True,
    finite_differences: bool = True,
    noncontiguous: bool = False,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    seed: int = 0,
) -> None:
    """Check ``needle_fn(*tensors)`` against PyTorch and finite differences (see module doc).

    Args:
        needle_fn: builds the output Tensor from needle tensors (one per array).
        torch_fn: the same computation on torch tensors; None skips the PyTorch comparison.
        arrays: input values (any float dtype; needle gets them as float32).
        device: the needle device to run on.
        backward: also check gradients (otherwise only the forward pass).
        finite_differences: include the float64 finite-difference check of the gradients.
        noncontiguous: give the op strided-view inputs.
        rtol, atol: tolerances; ``atol`` is scaled by the largest reference entry.
        seed: seeds the cotangent and the finite-difference directions.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    tensors = [make_tensor(a, device, noncontiguous=noncontiguous) for a in arrays]
    out = needle_fn(*tensors)
    _assert_float32(out, "output")
    out_np = np.asarray(out.numpy())

    torch_inputs = torch_out = None
    if torch_fn is not None:
        torch_inputs, torch_out = _torch_forward(torch_fn, arrays)
        _assert_close(out_np, torch_out.detach().numpy(), rtol=rtol, atol=atol, what="forward")
    if not backward:
        return

    cotangent = rng.standard_normal(out_np.shape)
    out.backward(ndl.Tensor(cotangent.astype(np.float32), device=device))
    grads = [_grad_or_zeros(t) for t in tensors]
    for i, (tensor, grad) in enumerate(zip(tensors, grads)):
        assert grad.shape == tuple(tensor.shape), f"gradient {i} has shape {grad.shape}"
        if getattr(tensor, "grad", None) is not None:
            _assert_float32(tensor.grad, f"gradient {i}")

    if torch_fn is not None:
        torch_grads = torch.autograd.grad(
            torch_out, torch_inputs, torch.tensor(cotangent), allow_unused=True
        )
        for i, (grad, expected) in enumerate(zip(grads, torch_grads)):
            expected = np.zeros(grad.shape) if expected is None else expected.numpy()
            _assert_close(grad, expected, rtol=rtol, atol=atol, what=f"gradient {i} vs torch")
    if finite_differences:
        objective = _needle_float64_objective(needle_fn, cotangent)
        _check_finite_differences(objective, arrays, grads, rng, rtol=rtol, atol=atol)


def check_second_order(
    needle_fn: Callable[..., ndl.Tensor],
    torch_fn: Callable[..., torch.Tensor],
    *arrays: np.ndarray,
    device,
    noncontiguous: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    seed: int = 0,
) -> None:
    """Check gradients of gradients against ``torch.autograd.grad(create_graph=True)``.

    With random cotangents ``c`` (for the output) and ``d_i`` (for each input), compares
    ``∂/∂x_j Σ_i <∂<f(x), c>/∂x_i, d_i>`` for every input ``x_j``.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    tensors = [make_tensor(a, device, noncontiguous=noncontiguous) for a in arrays]
    out = needle_fn(*tensors)
    cotangent = rng.standard_normal(tuple(out.shape))
    directions = [rng.standard_normal(a.shape) for a in arrays]

    out.backward(ndl.Tensor(cotangent.astype(np.float32), device=device))
    first = [getattr(t, "grad", None) for t in tensors]
    for tensor in tensors:
        tensor.grad = None
    terms = [
        (grad * ndl.Tensor(d.astype(np.float32), device=device)).sum()
        for grad, d in zip(first, directions)
        if grad is not None
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    if total.requires_grad:
        total.backward()
    second = [_grad_or_zeros(t) for t in tensors]

    torch_inputs, torch_out = _torch_forward(torch_fn, arrays)
    torch_first = torch.autograd.grad(
        torch_out, torch_inputs, torch.tensor(cotangent), create_graph=True, allow_unused=True
    )
    for i, (grad, expected) in enumerate(zip(first, torch_first)):
        got = np.zeros(arrays[i].shape) if grad is None else np.asarray(grad.numpy())
        expected = np.zeros(arrays[i].shape) if expected is None else expected.detach().numpy()
        _assert_close(got, expected, rtol=rtol, atol=atol, what=f"first gradient {i}")
    torch_total = sum(
        (g * torch.tensor(d)).sum()
        for g, d in zip(torch_first, directions)
        if g is not None and g.requires_grad
    )
    if isinstance(torch_total, torch.Tensor) and torch_total.requires_grad:
        torch_second = torch.autograd.grad(torch_total, torch_inputs, allow_unused=True)
    else:
        torch_second = [None] * len(arrays)
    for i, (grad, expected) in enumerate(zip(second, torch_second)):
        expected = np.zeros(arrays[i].shape) if expected is None else expected.numpy()
        _assert_close(grad, expected, rtol=rtol, atol=atol, what=f"second-order gradient {i}")
