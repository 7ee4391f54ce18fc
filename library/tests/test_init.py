"""needle.init: constructors and initialisers against numpy formulas with the same seed.

Every random constructor draws from numpy's global generator through the device
(``rand``/``randn`` in float64, cast to float32), so the expected values are computed here from
``np.random`` directly after re-seeding.
"""

import math

import needle as ndl
import numpy as np
import pytest
from needle import init


def _seeded(seed, draw):
    np.random.seed(seed)
    return draw()


def _float32(x):
    return np.asarray(x, dtype=np.float32)


# ---- basic constructors --------------------------------------------------------------------


def test_rand_matches_numpy_formula(device):
    got = _seeded(3, lambda: init.rand(4, 5, low=-2.0, high=3.0, device=device))
    expected = _seeded(3, lambda: np.random.rand(4, 5).astype(np.float32) * 5.0 - 2.0)
    assert got.shape == (4, 5)
    assert got.device == device
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_randn_matches_numpy_formula(device):
    got = _seeded(5, lambda: init.randn(3, 7, mean=1.5, std=0.5, device=device))
    expected = _seeded(5, lambda: np.random.randn(3, 7).astype(np.float32) * 0.5 + 1.5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_constant_ones_zeros(device):
    np.testing.assert_array_equal(init.constant(2, 3, c=2.5, device=device).numpy(), 2.5)
    np.testing.assert_array_equal(init.ones(4, device=device).numpy(), np.ones(4))
    np.testing.assert_array_equal(init.zeros(2, 2, device=device).numpy(), np.zeros((2, 2)))
    assert init.ones(4, device=device, requires_grad=True).requires_grad
    assert str(init.zeros(3, device=device).dtype) == "float32"


def test_constructors_default_to_default_device():
    assert init.rand(2).device == ndl.default_device()
    assert init.zeros(2).device == ndl.default_device()
    assert ndl.Tensor(np.zeros(2)).device == init.ones(2).device


def test_zeros_like_ones_like(device):
    x = init.rand(3, 4, device=device)
    z, o = init.zeros_like(x), init.ones_like(x, requires_grad=True)
    assert z.shape == o.shape == (3, 4)
    assert z.device == o.device == device
    assert o.requires_grad and not z.requires_grad
    np.testing.assert_array_equal(z.numpy(), 0.0)
    np.testing.assert_array_equal(o.numpy(), 1.0)


def test_randb_matches_uniform_threshold(device):
    got = _seeded(7, lambda: init.randb(50, 40, p=0.3, device=device))
    expected = _seeded(7, lambda: np.random.rand(50, 40).astype(np.float32) <= np.float32(0.3))
    np.testing.assert_array_equal(got.numpy().astype(bool), expected)
    assert abs(expected.mean() - 0.3) < 0.05  # and it is a Bernoulli(0.3) sample


def test_one_hot(device):
    labels = ndl.Tensor(np.array([2, 0, 1, 2]), device=device)
    got = init.one_hot(3, labels, device=device)
    np.testing.assert_array_equal(got.numpy(), np.eye(3)[[2, 0, 1, 2]])
    grid = init.one_hot(4, np.array([[0, 3], [1, 1]]), device=device)
    assert grid.shape == (2, 2, 4)
    np.testing.assert_array_equal(grid.numpy(), np.eye(4)[[[0, 3], [1, 1]]])
    with pytest.raises(ValueError, match="labels must lie in"):
        init.one_hot(3, np.array([0, 3]), device=device)


# ---- initialisers --------------------------------------------------------------------------


@pytest.mark.hw2
def test_xavier_uniform_seeded(device):
    fan_in, fan_out, gain = 5, 8, 1.5
    got = _seeded(42, lambda: init.xavier_uniform(fan_in, fan_out, gain=gain, device=device))
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    expected = _seeded(42, lambda: np.random.rand(5, 8).astype(np.float32) * 2 * bound - bound)
    assert got.shape == (5, 8)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.hw2
def test_xavier_normal_seeded(device):
    got = _seeded(42, lambda: init.xavier_normal(3, 5, gain=0.7, device=device))
    std = 0.7 * math.sqrt(2 / 8)
    expected = _seeded(42, lambda: np.random.randn(3, 5).astype(np.float32) * std)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.hw2
def test_kaiming_uniform_seeded(device):
    got = _seeded(42, lambda: init.kaiming_uniform(3, 5, device=device))
    bound = math.sqrt(2) * math.sqrt(3 / 3)
    expected = _seeded(42, lambda: np.random.rand(3, 5).astype(np.float32) * 2 * bound - bound)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.hw4
def test_kaiming_uniform_with_shape_keeps_fan_in_bound(device):
    fan_in = 3 * 3 * 4
    got = _seeded(0, lambda: init.kaiming_uniform(fan_in, 9 * 6, shape=(3, 3, 4, 6), device=device))
    bound = math.sqrt(6 / fan_in)
    draw = lambda: np.random.rand(3, 3, 4, 6).astype(np.float32) * 2 * bound - bound
    expected = _seeded(0, draw)
    assert got.shape == (3, 3, 4, 6)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.hw2
def test_kaiming_normal_seeded(device):
    got = _seeded(42, lambda: init.kaiming_normal(4, 6, device=device))
    expected = _seeded(42, lambda: np.random.randn(4, 6).astype(np.float32) * math.sqrt(2 / 4))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.hw2
@pytest.mark.parametrize(
    "make, expected_std",
    [
        (lambda: init.xavier_uniform(300, 200), math.sqrt(2 / 500)),  # U(±a): std a/sqrt(3)
        (lambda: init.xavier_normal(300, 200), math.sqrt(2 / 500)),
        (lambda: init.kaiming_uniform(300, 200), math.sqrt(2 / 300)),
        (lambda: init.kaiming_normal(300, 200), math.sqrt(2 / 300)),
    ],
    ids=["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"],
)
def test_initialiser_statistics(make, expected_std):
    sample = make().numpy()
    assert abs(sample.mean()) < 0.02 * expected_std  # the mean of 60,000 draws is ~0
    assert abs(sample.std() / expected_std - 1) < 0.02


def test_kaiming_rejects_other_nonlinearities():
    with pytest.raises(ValueError, match="relu"):
        init.kaiming_uniform(3, 4, nonlinearity="tanh")
    with pytest.raises(ValueError, match="relu"):
        init.kaiming_normal(3, 4, nonlinearity="sigmoid")


def test_initialisers_pass_keywords_on(device):
    weight = init.kaiming_uniform(3, 4, device=device, requires_grad=True)
    assert weight.device == device and weight.requires_grad
    assert str(weight.dtype) == "float32"
