"""Public tests of hw2, part 1: initializers, the log-sum-exp ops, modules and optimizers.

Run them with ``make check`` or e.g. ``python -m pytest tests -k nn_batchnorm``. Expected
values come from numpy re-computations of the documented formulas and from central finite
differences (float64), never from needle itself.
"""

from __future__ import annotations

import gc
import math

import needle as ndl
import needle.nn as nn
import numpy as np
import pytest
from hw2_support import (
    assert_close,
    batchnorm_train_np,
    layernorm_np,
    logsumexp_np,
    numerical_gradients,
    rand,
    softmax_loss_np,
    tensor,
)

pytestmark = pytest.mark.hw2


def check_module_gradients(module, x, numpy_fn, params=(), rtol=1e-3, atol=1e-4, seed=0):
    """Backward through ``module`` vs finite differences of ``numpy_fn(x, *params)``.

    A random cotangent ``c`` is used: the checked function is ``sum(module(x) * c)``.
    """
    x_tensor = tensor(x)
    out = module(x_tensor)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape)
    (out * tensor(cotangent, requires_grad=False)).sum().backward()
    values = [x] + [p.numpy() for p in params]
    expected = numerical_gradients(lambda *a: np.sum(numpy_fn(*a) * cotangent), values)
    assert_close(x_tensor.grad, expected[0], rtol=rtol, atol=atol, what="gradient of the input")
    for i, (p, want) in enumerate(zip(params, expected[1:])):
        assert p.grad is not None, f"parameter {i} has no gradient"
        assert_close(p.grad, want, rtol=rtol, atol=atol, what=f"gradient of parameter {i}")


# ---------------------------------------------------------------------------------------------
# Question 1: initializers. They must draw from needle.init.rand / randn (numpy's global RNG),
# so with the same seed they give exactly those draws, scaled.


@pytest.mark.parametrize("fan_in, fan_out, gain", [(5, 8, 1.0), (20, 3, 1.5)])
def test_init_xavier_uniform(fan_in, fan_out, gain):
    np.random.seed(42)
    got = ndl.init.xavier_uniform(fan_in, fan_out, gain=gain)
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    np.random.seed(42)
    expected = ndl.init.rand(fan_in, fan_out, low=-bound, high=bound)
    assert_close(got, expected.numpy(), what="xavier_uniform: U(-a, a), a = gain*sqrt(6/(in+out))")


@pytest.mark.parametrize("fan_in, fan_out, gain", [(5, 8, 1.0), (20, 3, 1.5)])
def test_init_xavier_normal(fan_in, fan_out, gain):
    np.random.seed(42)
    got = ndl.init.xavier_normal(fan_in, fan_out, gain=gain)
    std = gain * math.sqrt(2 / (fan_in + fan_out))
    np.random.seed(42)
    expected = ndl.init.randn(fan_in, fan_out, std=std)
    assert_close(got, expected.numpy(), what="xavier_normal: N(0, std^2)")


@pytest.mark.parametrize("fan_in, fan_out", [(5, 8), (20, 3)])
def test_init_kaiming_uniform(fan_in, fan_out):
    np.random.seed(42)
    got = ndl.init.kaiming_uniform(fan_in, fan_out)
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    np.random.seed(42)
    expected = ndl.init.rand(fan_in, fan_out, low=-bound, high=bound)
    assert_close(got, expected.numpy(), what="kaiming_uniform: U(-b, b), b = sqrt(2)*sqrt(3/in)")


@pytest.mark.parametrize("fan_in, fan_out", [(5, 8), (20, 3)])
def test_init_kaiming_normal(fan_in, fan_out):
    np.random.seed(42)
    got = ndl.init.kaiming_normal(fan_in, fan_out)
    np.random.seed(42)
    expected = ndl.init.randn(fan_in, fan_out, std=math.sqrt(2) / math.sqrt(fan_in))
    assert_close(got, expected.numpy(), what="kaiming_normal: N(0, 2/fan_in)")


# ---------------------------------------------------------------------------------------------
# Question 2a: LogSumExp and LogSoftmax


@pytest.mark.parametrize(
    "shape, axes",
    [((3, 4), (1,)), ((3, 4), None), ((2, 3, 4), (0, 2)), ((3, 1), (0,)), ((4, 5), 0)],
    ids=str,
)
def test_op_logsumexp_forward(shape, axes):
    z = rand(*shape, low=-3, high=3)
    axis = axes if not isinstance(axes, list) else tuple(axes)
    assert_close(ndl.logsumexp(tensor(z), axes=axes), logsumexp_np(z.astype(np.float64), axis))


def test_op_logsumexp_forward_stable():
    z = np.array([[1e10, 1e10 - 1.0], [-1e10, 0.0]], dtype=np.float32)
    got = ndl.logsumexp(tensor(z), axes=(1,)).numpy()
    assert np.all(np.isfinite(got)), f"overflow: got {got}; subtract the maximum before exp"
    assert_close(got, logsumexp_np(z.astype(np.float64), axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    "shape, axes", [((3, 4), (1,)), ((3, 4), None), ((2, 3, 4), (0, 2)), ((3, 1), (0,))], ids=str
)
def test_op_logsumexp_backward(shape, axes):
    z = rand(*shape, low=-2, high=2)
    z_tensor = tensor(z)
    out = ndl.logsumexp(z_tensor, axes=axes)
    cotangent = np.random.default_rng(1).standard_normal(out.shape)
    (out * tensor(cotangent, requires_grad=False)).sum().backward()
    (expected,) = numerical_gradients(lambda a: np.sum(logsumexp_np(a, axes) * cotangent), [z])
    assert_close(z_tensor.grad, expected, rtol=1e-3, atol=1e-4, what="gradient of logsumexp")


def test_op_logsoftmax_forward():
    z = rand(4, 6, low=-3, high=3)
    expected = z - logsumexp_np(z.astype(np.float64), axis=1, keepdims=True)
    assert_close(ndl.logsoftmax(tensor(z)), expected)


def test_op_logsoftmax_forward_stable():
    z = rand(3, 5, low=-3, high=3) * 1e5
    got = ndl.logsoftmax(tensor(z)).numpy()
    assert np.all(np.isfinite(got)), "overflow: subtract each row's maximum first"
    expected = z.astype(np.float64) - logsumexp_np(z.astype(np.float64), axis=1, keepdims=True)
    assert_close(got, expected, rtol=1e-5, atol=1e-2)


def test_op_logsoftmax_backward():
    z = rand(4, 5, low=-2, high=2)
    check_module_gradients(ndl.logsoftmax, z, lambda a: a - logsumexp_np(a, axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Question 2b: modules


def test_nn_linear_weight_and_bias_init():
    np.random.seed(1337)
    layer = nn.Linear(7, 4)
    np.random.seed(1337)
    weight = ndl.init.rand(7, 4, low=-math.sqrt(6 / 7), high=math.sqrt(6 / 7)).numpy()
    bias = ndl.init.rand(4, 1, low=-math.sqrt(6 / 4), high=math.sqrt(6 / 4)).numpy()
    assert isinstance(layer.weight, nn.Parameter), "weight must be a Parameter"
    assert_close(layer.weight, weight, what="weight = kaiming_uniform(in, out), drawn first")
    assert isinstance(layer.bias, nn.Parameter), "bias must be a Parameter"
    assert_close(layer.bias, bias.reshape(1, 4), what="bias = kaiming_uniform(out, 1) as (1, out)")
    assert len(layer.parameters()) == 2
    assert nn.Linear(7, 4, bias=False).parameters().__len__() == 1, "bias=False: weight only"


@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (2, 3, 7)], ids=str)
def test_nn_linear_forward(shape):
    np.random.seed(199)
    layer = nn.Linear(7, 4)
    x = rand(*shape)
    expected = x @ layer.weight.numpy() + layer.bias.numpy().reshape(4)
    assert_close(layer(tensor(x)), expected, what="X W + b")


def test_nn_linear_backward():
    np.random.seed(199)
    layer = nn.Linear(6, 3)
    check_module_gradients(
        layer, rand(5, 6), lambda x, w, b: x @ w + b, params=[layer.weight, layer.bias]
    )


def test_nn_relu_forward():
    x = rand(4, 5)
    assert_close(nn.ReLU()(tensor(x)), np.maximum(x, 0))


def test_nn_relu_backward():
    x = rand(4, 5)
    x[np.abs(x) < 0.05] = 0.3
    check_module_gradients(nn.ReLU(), x, lambda a: np.maximum(a, 0))


def test_nn_sequential_forward_and_parameters():
    np.random.seed(42)
    first, second = nn.Linear(5, 8), nn.Linear(8, 3)
    model = nn.Sequential(first, nn.ReLU(), second)
    x = rand(4, 5)
    w1, b1, w2, b2 = (p.numpy() for p in (first.weight, first.bias, second.weight, second.bias))
    assert_close(model(tensor(x)), np.maximum(x @ w1 + b1, 0) @ w2 + b2, what="modules in order")
    assert len(model.parameters()) == 4, "Sequential must expose its modules' parameters"


def test_nn_sequential_backward():
    np.random.seed(42)
    first, second = nn.Linear(5, 8), nn.Linear(8, 3)
    model = nn.Sequential(first, nn.ReLU(), second)
    check_module_gradients(
        model,
        rand(4, 5),
        lambda x, w1, b1: np.maximum(x @ w1 + b1, 0) @ second.weight.numpy() + second.bias.numpy(),
        params=[first.weight, first.bias],
    )


def test_nn_softmax_loss_forward():
    logits = rand(8, 5, low=-3, high=3)
    labels = np.array([0, 4, 2, 2, 1, 3, 0, 4])
    loss = nn.SoftmaxLoss()(tensor(logits), tensor(labels, requires_grad=False))
    assert loss.shape in ((), (1,)), f"the loss must be a scalar, got shape {loss.shape}"
    assert float(loss.numpy()) == pytest.approx(
        softmax_loss_np(logits.astype(np.float64), labels), rel=1e-5
    )


def test_nn_softmax_loss_backward():
    logits = rand(6, 4, low=-2, high=2)
    labels = np.array([3, 0, 1, 1, 2, 0])
    z = tensor(logits)
    nn.SoftmaxLoss()(z, tensor(labels, requires_grad=False)).backward()
    (expected,) = numerical_gradients(lambda a: softmax_loss_np(a, labels), [logits])
    assert_close(z.grad, expected, rtol=1e-3, atol=1e-5, what="gradient of the loss")


def test_nn_layernorm_forward():
    x = rand(5, 6, low=-2, high=3)
    layer = nn.LayerNorm1d(6)
    assert_close(
        layer(tensor(x)),
        layernorm_np(x.astype(np.float64), 1.0, 0.0),
        rtol=1e-4,
        atol=1e-4,
        what="(x - mean) / sqrt(var + eps) per row, biased variance",
    )
    assert len(layer.parameters()) == 2, "LayerNorm1d has a weight and a bias"


def test_nn_layernorm_backward():
    layer = nn.LayerNorm1d(5)
    layer.weight.data = tensor(rand(5, seed=1) + 1.5, requires_grad=False)
    layer.bias.data = tensor(rand(5, seed=2), requires_grad=False)
    check_module_gradients(
        layer, rand(4, 5, low=-2, high=2), layernorm_np, params=[layer.weight, layer.bias]
    )


def test_nn_layernorm_single_feature():
    # With one feature every sample equals its own mean: the output is the bias, and the
    # gradient w.r.t. the input is zero.
    layer = nn.LayerNorm1d(1)
    x = tensor(rand(4, 1))
    out = layer(x)
    assert_close(out, np.zeros((4, 1)), atol=1e-6)
    out.sum().backward()
    assert_close(x.grad, np.zeros((4, 1)), atol=1e-5, what="gradient with dim=1")


def test_nn_flatten_forward():
    for shape in [(3, 4), (2, 3, 4), (2, 2, 3, 5), (1, 2, 2, 2, 2)]:
        x = rand(*shape)
        assert_close(nn.Flatten()(tensor(x)), x.reshape(shape[0], -1), what=f"Flatten {shape}")


def test_nn_flatten_backward():
    x = rand(2, 3, 4)
    check_module_gradients(nn.Flatten(), x, lambda a: a.reshape(2, 12))


def test_nn_batchnorm_forward_training():
    x = rand(6, 4, low=-2, high=3)
    layer = nn.BatchNorm1d(4)
    assert layer.training, "modules start in training mode"
    assert_close(
        layer(tensor(x)),
        batchnorm_train_np(x.astype(np.float64), 1.0, 0.0),
        rtol=1e-4,
        atol=1e-4,
        what="batch statistics (biased variance) in training",
    )


def test_nn_batchnorm_backward():
    layer = nn.BatchNorm1d(3)
    layer.weight.data = tensor(rand(3, seed=1) + 1.5, requires_grad=False)
    layer.bias.data = tensor(rand(3, seed=2), requires_grad=False)
    check_module_gradients(
        layer, rand(5, 3, low=-2, high=2), batchnorm_train_np, params=[layer.weight, layer.bias]
    )


def test_nn_batchnorm_running_statistics_and_eval():
    layer = nn.BatchNorm1d(3, momentum=0.1)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for seed in range(5):
        x = rand(8, 3, low=-1, high=4, seed=seed)
        layer(tensor(x))
        running_mean = 0.9 * running_mean + 0.1 * x.mean(axis=0)
        running_var = 0.9 * running_var + 0.1 * x.var(axis=0)  # biased, as in the batch
    assert_close(layer.running_mean, running_mean, rtol=1e-4, atol=1e-5, what="running_mean")
    assert_close(layer.running_var, running_var, rtol=1e-4, atol=1e-5, what="running_var")
    assert not isinstance(layer.running_mean, nn.Parameter), "running stats are not Parameters"
    assert len(layer.parameters()) == 2
    layer.eval()
    x = rand(4, 3, seed=9)
    expected = (x - running_mean) / np.sqrt(running_var + 1e-5)
    assert_close(layer(tensor(x)), expected, rtol=1e-4, atol=1e-4, what="eval uses running stats")


def test_nn_dropout_forward():
    x = rand(10, 20) + 2.0
    np.random.seed(3)
    out = nn.Dropout(0.3)(tensor(x)).numpy()
    np.random.seed(3)
    keep = ndl.init.randb(10, 20, p=0.7).numpy().astype(np.float32)
    assert_close(out, x * keep / 0.7, what="mask = randb(*x.shape, p=1-p); x * mask / (1 - p)")


def test_nn_dropout_eval_and_backward():
    layer = nn.Dropout(0.5)
    layer.eval()
    x = rand(4, 5)
    assert_close(layer(tensor(x)), x, what="Dropout is the identity in eval mode")
    layer.train()
    np.random.seed(5)
    x_tensor = tensor(x)
    layer(x_tensor).sum().backward()
    np.random.seed(5)
    keep = ndl.init.randb(4, 5, p=0.5).numpy().astype(np.float32)
    assert_close(x_tensor.grad, keep / 0.5, what="gradient = mask / (1 - p)")


def test_nn_residual_forward_and_backward():
    np.random.seed(7)
    inner = nn.Linear(4, 4)
    w, b = inner.weight.numpy(), inner.bias.numpy()
    x = rand(3, 4)
    assert_close(nn.Residual(inner)(tensor(x)), x @ w + b + x, what="fn(x) + x")
    check_module_gradients(nn.Residual(inner), x, lambda a: a @ w + b + a)


# ---------------------------------------------------------------------------------------------
# Question 3: optimizers. Each step is compared with the update rule applied in numpy to the
# same gradients.


def small_model(seed=0):
    np.random.seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def backward_on_batch(model, seed):
    x = rand(10, 6, seed=seed)
    y = np.random.default_rng(seed).integers(0, 3, size=10)
    loss = nn.SoftmaxLoss()(model(tensor(x, requires_grad=False)), tensor(y, requires_grad=False))
    loss.backward()


def run_optimizer(make_optimizer, numpy_update, steps=4):
    model = small_model()
    params = model.parameters()
    optimizer = make_optimizer(params)
    state = [dict() for _ in params]
    for step in range(1, steps + 1):
        optimizer.reset_grad()
        backward_on_batch(model, seed=step)
        before = [p.numpy().astype(np.float64) for p in params]
        grads = [p.grad.numpy().astype(np.float64) for p in params]
        optimizer.step()
        for i, p in enumerate(params):
            expected = numpy_update(before[i], grads[i], state[i], step)
            assert_close(p, expected, rtol=1e-4, atol=1e-6, what=f"parameter {i} after step {step}")
            assert p.dtype == "float32" or p.dtype == np.float32, f"dtype changed to {p.dtype}"
            assert_close(p.grad, grads[i], rtol=0, atol=0, what="step() must not change .grad")


@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.5, 0.1)], ids=str
)
def test_optim_sgd(momentum, weight_decay):
    lr = 0.1

    def update(theta, grad, state, step):
        g = grad + weight_decay * theta
        state["u"] = momentum * state.get("u", 0.0) + (1 - momentum) * g
        return theta - lr * state["u"]

    run_optimizer(
        lambda p: ndl.optim.SGD(p, lr=lr, momentum=momentum, weight_decay=weight_decay), update
    )


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=str)
def test_optim_adam(weight_decay):
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8

    def update(theta, grad, state, step):
        g = grad + weight_decay * theta
        state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * g
        state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * g * g
        m_hat = state["m"] / (1 - beta1**step)
        v_hat = state["v"] / (1 - beta2**step)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    run_optimizer(lambda p: ndl.optim.Adam(p, lr=lr, weight_decay=weight_decay), update)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_optim_sgd_and_optim_adam_build_no_graph(name):
    # Many steps must not keep more and more tensors alive (no graph across steps).
    model = small_model()
    optimizer = getattr(ndl.optim, name)(
        model.parameters(), lr=0.01, **({"momentum": 0.9} if name == "SGD" else {})
    )

    def one_step(seed):
        optimizer.reset_grad()
        backward_on_batch(model, seed)
        optimizer.step()

    for seed in range(3):
        one_step(seed)
    gc.collect()
    live = ndl.autograd.TENSOR_COUNTER
    for seed in range(20):
        one_step(seed)
    gc.collect()
    grown = ndl.autograd.TENSOR_COUNTER - live
    assert grown < 20, (
        f"{grown} more live tensors after 20 more steps: step() is building a graph; "
        "update with .data / detach()"
    )


def test_optim_sgd_clip_grad_norm():
    model = small_model()
    backward_on_batch(model, seed=1)
    params = model.parameters()
    grads = [p.grad.numpy().astype(np.float64) for p in params]
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    optimizer = ndl.optim.SGD(params, lr=0.1)
    returned = optimizer.clip_grad_norm(max_norm=norm / 4)
    assert returned == pytest.approx(norm, rel=1e-4), "clip_grad_norm returns the norm before"
    for p, g in zip(params, grads):
        assert_close(p.grad, g / 4, rtol=1e-4, atol=1e-7, what="gradients scaled to max_norm")
    optimizer.clip_grad_norm(max_norm=norm * 10)  # already small enough: unchanged
    for p, g in zip(params, grads):
        assert_close(p.grad, g / 4, rtol=1e-4, atol=1e-7, what="no clipping below max_norm")
