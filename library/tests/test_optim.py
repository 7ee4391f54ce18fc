"""needle.optim: optimiser trajectories against torch.optim (or numpy), memory, schedules.

torch's SGD with ``dampening=momentum`` computes the same dampened momentum as needle once its
momentum buffers start at zero (torch would otherwise copy the first gradient undampened), and
torch's Adam with ``weight_decay`` adds the L2 term to the gradient as needle does.
"""

import gc
import math

import needle as ndl
import needle.nn as nn
import numpy as np
import pytest
import torch
from needle import autograd

torch.set_num_threads(1)


def make_models(device, seed=0):
    """The same Linear-ReLU-Linear network in needle and in torch."""
    np.random.seed(seed)
    model = nn.Sequential(nn.Linear(6, 8, device=device), nn.ReLU(), nn.Linear(8, 3, device=device))
    reference = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for ours, theirs in [(model[0], reference[0]), (model[2], reference[2])]:
            theirs.weight.copy_(torch.tensor(ours.weight.numpy().T))
            theirs.bias.copy_(torch.tensor(ours.bias.numpy()[0]))
    return model, reference


def batches(count=6, size=16, seed=1):
    rng = np.random.RandomState(seed)
    return [
        (rng.randn(size, 6).astype(np.float32), rng.randint(0, 3, size=size)) for _ in range(count)
    ]


def train_needle(model, opt, data, device):
    loss_fn = nn.SoftmaxLoss()
    for x, y in data:
        opt.reset_grad()
        loss = loss_fn(model(ndl.Tensor(x, device=device)), ndl.Tensor(y, device=device))
        loss.backward()
        opt.step()


def train_torch(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(y)).backward()
        opt.step()


def assert_same_parameters(model, reference, rtol=1e-5, atol=1e-6):
    for ours, theirs in [(model[0], reference[0]), (model[2], reference[2])]:
        np.testing.assert_allclose(
            ours.weight.numpy(), theirs.weight.detach().numpy().T, rtol=rtol, atol=atol
        )
        np.testing.assert_allclose(
            ours.bias.numpy()[0], theirs.bias.detach().numpy(), rtol=rtol, atol=atol
        )


@pytest.mark.hw2
@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.01)]
)
def test_sgd_trajectory_matches_torch(device, momentum, weight_decay):
    model, reference = make_models(device)
    data = batches()
    opt = ndl.optim.SGD(model.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    train_needle(model, opt, data, device)
    torch_opt = torch.optim.SGD(
        reference.parameters(),
        lr=0.1,
        momentum=momentum,
        dampening=momentum,
        weight_decay=weight_decay,
    )
    if momentum:
        for p in reference.parameters():  # u starts at 0, as in needle
            torch_opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    train_torch(reference, torch_opt, data)
    assert_same_parameters(model, reference)


@pytest.mark.hw2
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_trajectory_matches_torch(device, weight_decay):
    model, reference = make_models(device)
    data = batches()
    opt = ndl.optim.Adam(model.parameters(), lr=0.01, weight_decay=weight_decay)
    train_needle(model, opt, data, device)
    torch_opt = torch.optim.Adam(
        reference.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay
    )
    train_torch(reference, torch_opt, data)
    assert opt.t == len(data)
    assert_same_parameters(model, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.hw2
def test_adam_bias_correction_against_numpy():
    """Two steps with hand-made gradients, one parameter skipped (grad None)."""
    theta = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    frozen = ndl.nn.Parameter(ndl.Tensor(np.ones(2, dtype=np.float32)))
    param = ndl.nn.Parameter(ndl.Tensor(theta))
    opt = ndl.optim.Adam([frozen, param], lr=0.1, beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.2)
    m = v = np.zeros(3)
    expected = theta.astype(np.float64)
    for t, grad in enumerate([[1.0, -2.0, 0.5], [0.3, 0.3, -4.0]], start=1):
        param.grad = ndl.Tensor(np.array(grad, dtype=np.float32))
        opt.step()
        g = np.array(grad) + 0.2 * expected
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g**2
        m_hat, v_hat = m / (1 - 0.8**t), v / (1 - 0.9**t)
        expected = expected - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-3)
        np.testing.assert_allclose(param.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(frozen.numpy(), 1.0)  # no gradient: untouched


@pytest.mark.hw2
@pytest.mark.parametrize("make_opt", [ndl.optim.SGD, ndl.optim.Adam], ids=["sgd", "adam"])
def test_step_leaves_grad_alone_and_keeps_float32(make_opt, device):
    model, _ = make_models(device)
    opt = make_opt(model.parameters(), lr=0.1, weight_decay=0.01)
    x, y = batches(count=1)[0]
    loss = nn.SoftmaxLoss()(model(ndl.Tensor(x, device=device)), ndl.Tensor(y, device=device))
    loss.backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    opt.step()
    for p, grad in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad.numpy(), grad)
        assert str(p.dtype) == "float32"
        assert p.op is None and p.requires_grad  # still a trainable leaf


@pytest.mark.hw2
@pytest.mark.parametrize("make_opt", [ndl.optim.SGD, ndl.optim.Adam], ids=["sgd", "adam"])
def test_step_builds_no_graph(make_opt):
    """The number of live tensors stays flat over many training steps."""
    model, _ = make_models(ndl.default_device())
    model = nn.Sequential(model, nn.BatchNorm1d(3))  # buffers updated in forward too
    opt = (
        make_opt(model.parameters(), lr=0.01, momentum=0.9)
        if make_opt is ndl.optim.SGD
        else (make_opt(model.parameters(), lr=0.01))
    )
    data = batches(count=1)
    train_needle(model, opt, data * 3, ndl.default_device())
    gc.collect()
    before = autograd.TENSOR_COUNTER
    train_needle(model, opt, data * 30, ndl.default_device())
    gc.collect()
    assert autograd.TENSOR_COUNTER - before <= 2


@pytest.mark.hw2
def test_clip_grad_norm_matches_torch(device):
    model, reference = make_models(device)
    x, y = batches(count=1)[0]
    nn.SoftmaxLoss()(model(ndl.Tensor(x, device=device)), ndl.Tensor(y, device=device)).backward()
    torch.nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(y)).backward()
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    norm = opt.clip_grad_norm(max_norm=0.05)
    torch_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm=0.05)
    assert norm == pytest.approx(float(torch_norm), rel=1e-5)
    for ours, theirs in [(model[0], reference[0]), (model[2], reference[2])]:
        np.testing.assert_allclose(
            ours.weight.grad.numpy(), theirs.weight.grad.numpy().T, rtol=1e-5, atol=1e-7
        )
    total = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in model.parameters()))
    assert total == pytest.approx(0.05, rel=1e-4)
    # a norm already below the limit is left alone
    before = [p.grad.numpy().copy() for p in model.parameters()]
    opt.clip_grad_norm(max_norm=10.0)
    for p, grad in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.grad.numpy(), grad)


def test_seeded_training_is_bit_for_bit_reproducible():
    def run():
        model, _ = make_models(ndl.default_device(), seed=3)
        model = nn.Sequential(model, nn.Dropout(0.3))
        opt = ndl.optim.Adam(model.parameters(), lr=0.01)
        np.random.seed(11)  # dropout masks
        train_needle(model, opt, batches(count=4), ndl.default_device())
        return [p.numpy().copy() for p in model.parameters()]

    for first, second in zip(run(), run()):
        np.testing.assert_array_equal(first, second)


def test_reset_grad_clears_every_gradient():
    model, _ = make_models(ndl.default_device())
    x, y = batches(count=1)[0]
    nn.SoftmaxLoss()(model(ndl.Tensor(x)), ndl.Tensor(y)).backward()
    opt = ndl.optim.SGD(model.parameters())
    assert all(p.grad is not None for p in model.parameters())
    opt.reset_grad()
    assert all(p.grad is None for p in model.parameters())


def test_learning_rate_schedules():
    opt = ndl.optim.SGD([], lr=1.0)
    step = ndl.optim.StepLR(opt, step_size=2, gamma=0.5)
    assert [step.step() for _ in range(5)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert opt.lr == 0.25

    opt = ndl.optim.Adam([], lr=0.1)
    cosine = ndl.optim.CosineLR(opt, total_epochs=4, min_lr=0.01)
    lrs = [cosine.step() for _ in range(5)]
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4, 4)]
    assert lrs == pytest.approx(expected)
    with pytest.raises(ValueError):
        ndl.optim.StepLR(opt, step_size=0)
