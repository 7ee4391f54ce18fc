"""needle.nn: the Module system, and every layer against PyTorch with copied weights.

Each layer test runs the same input through needle and through PyTorch (a torch module with the
needle weights copied in, or a short PyTorch re-implementation written here), back-propagates
the same random cotangent, and compares the output, the input gradients and the gradients of
every parameter.
"""

import math

import needle as ndl
import needle.nn as nn
import numpy as np
import pytest
import torch
from needle import init

torch.set_num_threads(1)

RTOL, ATOL = 1e-5, 1e-5


# ---- helpers -------------------------------------------------------------------------------


def randn(*shape, scale=1.0):
    return (np.random.randn(*shape) * scale).astype(np.float32)


def to_needle(array, device, requires_grad=True):
    return ndl.Tensor(array, device=device, requires_grad=requires_grad)


def to_torch(array, requires_grad=True):
    return torch.tensor(np.asarray(array, dtype=np.float32), requires_grad=requires_grad)


def backward_both(needle_out, torch_out, seed=1):
    """Back-propagate one random cotangent through both graphs."""
    cotangent = np.random.RandomState(seed).randn(*needle_out.shape).astype(np.float32)
    (needle_out * ndl.Tensor(cotangent, device=needle_out.device)).sum().backward()
    (torch_out * torch.tensor(cotangent)).sum().backward()


def assert_close(needle_value, torch_value, rtol=RTOL, atol=ATOL, what=""):
    expected = torch_value.detach().numpy() if torch.is_tensor(torch_value) else torch_value
    got = needle_value.numpy() if isinstance(needle_value, ndl.Tensor) else needle_value
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=what)


def torch_copy_of_parameters(module):
    """``{name: leaf torch tensor}`` with the values of ``module.named_parameters()``."""
    return {name: to_torch(p.numpy()) for name, p in module.named_parameters()}


def assert_parameter_grads(module, torch_params, rtol=RTOL, atol=ATOL):
    names = [name for name, _ in module.named_parameters()]
    assert names == list(torch_params), "parameter names differ from the reference"
    for name, param in module.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert_close(param.grad, torch_params[name].grad, rtol, atol, what=f"grad of {name}")


# ---- Module system -------------------------------------------------------------------------


class Containers(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Parameter(init.ones(2))
        self.layers = [nn.Linear(2, 3), nn.Linear(3, 4, bias=False)]
        self.pair = (nn.ReLU(), nn.Linear(4, 1))
        self.by_name = {"norm": nn.BatchNorm1d(4), "drop": nn.Dropout(0.2)}
        self.nested = nn.Sequential(nn.Sequential(nn.LayerNorm1d(5)))
        self.shared = self.layers[0].weight  # the same parameter twice
        self.note = "not a parameter"


def test_parameters_are_found_through_attributes_lists_tuples_dicts():
    model = Containers()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "first",
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "pair.1.weight",
        "pair.1.bias",
        "by_name.norm.weight",
        "by_name.norm.bias",
        "nested.0.0.weight",
        "nested.0.0.bias",
    ]
    assert len(model.parameters()) == 10  # the shared weight counts once
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    assert model.num_parameters() == 2 + (6 + 3) + 12 + (4 + 1) + 8 + 10


def test_train_and_eval_reach_every_submodule():
    model = Containers()
    children = model._children()
    assert len(children) == 9  # 2 layers, 2 in the tuple, 2 in the dict, 3 nested
    model.eval()
    assert not model.training and all(not m.training for m in children)
    model.train()
    assert model.training and all(m.training for m in children)


def test_unknown_attribute_raises_a_clear_error():
    layer = nn.Linear(2, 3)
    with pytest.raises(AttributeError, match="'wieght'.*weight"):
        layer.wieght  # noqa: B018
    assert not hasattr(layer, "missing")


def test_setattr_refuses_to_hide_methods_and_checks_training():
    layer = nn.Linear(2, 3)
    with pytest.raises(AttributeError, match="hide the method"):
        layer.parameters = []
    with pytest.raises(TypeError, match="bool"):
        layer.training = 1


def test_state_dict_names_include_buffers():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = model.state_dict()
    assert list(state) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
    ]
    np.testing.assert_array_equal(state["0.weight"], model[0].weight.numpy())
    state["0.weight"][:] = 7  # a copy: the model is unchanged
    assert not np.any(model[0].weight.numpy() == 7)


def test_save_and_load_round_trip(tmp_path, device):
    np.random.seed(0)
    x = to_needle(randn(6, 3), device, requires_grad=False)
    source = nn.Sequential(nn.Linear(3, 4, device=device), nn.BatchNorm1d(4, device=device))
    source(x)  # training forward: moves the running statistics away from 0 / 1
    path = tmp_path / "model.npz"
    source.save(path)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickle
        assert sorted(archive.files) == sorted(source.state_dict())

    np.random.seed(1)
    target = nn.Sequential(nn.Linear(3, 4, device=device), nn.BatchNorm1d(4, device=device))
    assert not np.allclose(target[0].weight.numpy(), source[0].weight.numpy())
    assert target.load(path) is target
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value, err_msg=name)
    source.eval(), target.eval()
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())
    assert target[0].weight.device == device


def test_load_state_dict_errors():
    model = nn.Linear(3, 4)
    state = model.state_dict()
    with pytest.raises(ValueError, match="shape"):
        model.load_state_dict({**state, "weight": np.zeros((4, 3))})
    with pytest.raises(KeyError, match="missing"):
        model.load_state_dict({"weight": state["weight"]})
    with pytest.raises(KeyError, match="unexpected"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    model.load_state_dict({"weight": np.zeros((3, 4))}, strict=False)
    np.testing.assert_array_equal(model.weight.numpy(), 0.0)


def test_repr_is_nested_and_shows_shapes():
    model = nn.Sequential(nn.Linear(3, 4), nn.Residual(nn.Sequential(nn.ReLU())))
    text = repr(model)
    assert text.splitlines() == [
        "Sequential(",
        "  (0): Linear(in_features=3, out_features=4, weight (3, 4), bias (1, 4))",
        "  (1): Residual(",
        "    (fn): Sequential(",
        "      (0): ReLU()",
        "    )",
        "  )",
        ")",
    ]


# ---- basic layers --------------------------------------------------------------------------


def torch_linear(layer):
    reference = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(layer.weight.numpy().T))
        if layer.bias is not None:
            reference.bias.copy_(torch.tensor(layer.bias.numpy()[0]))
    return reference


@pytest.mark.hw2
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (1, 3, 3, 7)], ids=["2d", "3d", "4d"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(device, shape, bias):
    np.random.seed(0)
    layer = nn.Linear(7, 4, bias=bias, device=device)
    reference = torch_linear(layer)
    x = randn(*shape)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    y_nd, y_th = layer(x_nd), reference(x_th)
    assert_close(y_nd, y_th)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad)
    assert_close(layer.weight.grad, reference.weight.grad.T)
    if bias:
        assert_close(layer.bias.grad, reference.bias.grad[None, :])


@pytest.mark.hw2
def test_linear_initialisation_order_and_bounds(device):
    np.random.seed(1337)
    layer = nn.Linear(6, 3, device=device)
    np.random.seed(1337)
    w_bound, b_bound = math.sqrt(6 / 6), math.sqrt(6 / 3)
    weight = np.random.rand(6, 3).astype(np.float32) * 2 * w_bound - w_bound
    bias = np.random.rand(3, 1).astype(np.float32) * 2 * b_bound - b_bound
    assert layer.weight.shape == (6, 3) and layer.bias.shape == (1, 3)
    np.testing.assert_allclose(layer.weight.numpy(), weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), bias.reshape(1, 3), rtol=1e-5, atol=1e-6)


@pytest.mark.hw2
def test_flatten_relu_identity_residual_sequential(device):
    np.random.seed(0)
    x = randn(2, 3, 4, 5)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    flat = nn.Flatten()(x_nd)
    assert_close(flat, x.reshape(2, 60))
    assert nn.Identity()(x_nd) is x_nd

    layer = nn.Linear(60, 60, device=device)
    model = nn.Sequential(nn.Flatten(), nn.Residual(nn.Sequential(layer, nn.ReLU())), nn.ReLU())
    reference = torch_linear(layer)
    y_nd = model(x_nd)
    flat_th = x_th.reshape(2, 60)
    y_th = torch.relu(torch.relu(reference(flat_th)) + flat_th)
    assert_close(y_nd, y_th)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad)
    assert_close(layer.weight.grad, reference.weight.grad.T)
    assert len(model) == 3 and model[0].__class__ is nn.Flatten


@pytest.mark.hw2
def test_softmax_loss_matches_torch(device):
    np.random.seed(0)
    logits = randn(8, 5, scale=3.0)
    labels = np.random.randint(0, 5, size=8)
    z_nd, z_th = to_needle(logits, device), to_torch(logits)
    loss_nd = nn.SoftmaxLoss()(z_nd, ndl.Tensor(labels, device=device))
    loss_th = torch.nn.functional.cross_entropy(z_th, torch.tensor(labels))
    assert_close(loss_nd, loss_th)
    loss_nd.backward()
    loss_th.backward()
    assert_close(z_nd.grad, z_th.grad)


def set_random_affine(norm, torch_norm, seed):
    rng = np.random.RandomState(seed)
    weight = (rng.rand(norm.dim) + 0.5).astype(np.float32)
    bias = rng.randn(norm.dim).astype(np.float32)
    norm.weight = nn.Parameter(ndl.Tensor(weight, device=norm.weight.device))
    norm.bias = nn.Parameter(ndl.Tensor(bias, device=norm.bias.device))
    with torch.no_grad():
        torch_norm.weight.copy_(torch.tensor(weight))
        torch_norm.bias.copy_(torch.tensor(bias))


@pytest.mark.hw2
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batchnorm_training_matches_torch(device, kind):
    np.random.seed(0)
    if kind == "1d":
        norm, reference = nn.BatchNorm1d(4, device=device), torch.nn.BatchNorm1d(4)
        shapes = [(6, 4), (5, 4), (7, 4)]
    else:
        norm, reference = nn.BatchNorm2d(3, device=device), torch.nn.BatchNorm2d(3)
        shapes = [(2, 3, 4, 5), (3, 3, 2, 2), (2, 3, 3, 1)]
    set_random_affine(norm, reference, seed=2)
    reduce_axes = (0,) if kind == "1d" else (0, 2, 3)
    running_var = np.ones(norm.dim, dtype=np.float64)
    for step, shape in enumerate(shapes):
        x = randn(*shape, scale=2.0) + 1.0
        x_nd, x_th = to_needle(x, device), to_torch(x)
        y_nd, y_th = norm(x_nd), reference(x_th)
        assert_close(y_nd, y_th, rtol=1e-4, atol=1e-4)
        norm.weight.grad = norm.bias.grad = None
        reference.zero_grad()
        backward_both(y_nd, y_th, seed=step)
        assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-4)
        assert_close(norm.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
        assert_close(norm.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)
        # torch keeps the *unbiased* variance in running_var; needle (like the course) the biased
        running_var = 0.9 * running_var + 0.1 * x.astype(np.float64).var(axis=reduce_axes)
    assert_close(norm.running_mean, reference.running_mean, rtol=1e-5, atol=1e-6)
    assert_close(norm.running_var, running_var.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert not isinstance(norm.running_mean, nn.Parameter)
    assert len(norm.parameters()) == 2


@pytest.mark.hw2
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_batchnorm_eval_uses_running_statistics(device, kind):
    np.random.seed(0)
    if kind == "1d":
        norm, reference, shape = nn.BatchNorm1d(4, device=device), torch.nn.BatchNorm1d(4), (5, 4)
    else:
        norm, reference = nn.BatchNorm2d(4, device=device), torch.nn.BatchNorm2d(4)
        shape = (2, 4, 3, 3)
    set_random_affine(norm, reference, seed=3)
    mean, var = randn(4), np.random.rand(4).astype(np.float32) + 0.5
    norm.running_mean = ndl.Tensor(mean, device=device, requires_grad=False)
    norm.running_var = ndl.Tensor(var, device=device, requires_grad=False)
    with torch.no_grad():
        reference.running_mean.copy_(torch.tensor(mean))
        reference.running_var.copy_(torch.tensor(var))
    norm.eval(), reference.eval()
    x = randn(*shape)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    y_nd, y_th = norm(x_nd), reference(x_th)
    assert_close(y_nd, y_th)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad)
    assert_close(norm.weight.grad, reference.weight.grad)
    np.testing.assert_array_equal(norm.running_mean.numpy(), mean)  # eval does not update


@pytest.mark.hw2
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)], ids=["2d", "3d"])
def test_layernorm_matches_torch(device, shape):
    np.random.seed(0)
    norm, reference = nn.LayerNorm1d(5, device=device), torch.nn.LayerNorm(5, eps=1e-5)
    set_random_affine(norm, reference, seed=4)
    x = randn(*shape, scale=3.0) + 2.0
    x_nd, x_th = to_needle(x, device), to_torch(x)
    y_nd, y_th = norm(x_nd), reference(x_th)
    assert_close(y_nd, y_th, rtol=1e-4, atol=1e-5)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-4)
    assert_close(norm.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    assert_close(norm.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.hw2
def test_dropout_mask_is_seeded_and_scaled(device):
    p = 0.3
    x = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
    x_nd = to_needle(x, device)
    np.random.seed(3)
    y = nn.Dropout(p)(x_nd)
    np.random.seed(3)
    keep = np.random.rand(4, 6).astype(np.float32) <= np.float32(1 - p)
    np.testing.assert_allclose(y.numpy(), x * keep / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x_nd.grad.numpy(), keep / (1 - p), rtol=1e-6)


@pytest.mark.hw2
def test_dropout_statistics_and_modes(device):
    np.random.seed(0)
    x = ndl.Tensor(np.ones((200, 100), dtype=np.float32), device=device)
    layer = nn.Dropout(0.25)
    y = layer(x).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.03  # inverted dropout keeps the expectation
    layer.eval()
    assert layer(x) is x
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), 1.0)
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), 0.0)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


# ---- convolution ---------------------------------------------------------------------------


@pytest.mark.hw4
@pytest.mark.parametrize(
    "in_channels, out_channels, kernel, stride, bias, size",
    [(3, 4, 3, 1, True, 6), (2, 5, 3, 2, True, 7), (4, 2, 5, 1, False, 6), (3, 3, 1, 2, True, 5)],
    ids=["k3s1", "k3s2", "k5s1-nobias", "k1s2"],
)
def test_conv_matches_torch(device, in_channels, out_channels, kernel, stride, bias, size):
    np.random.seed(0)
    conv = nn.Conv(in_channels, out_channels, kernel, stride=stride, bias=bias, device=device)
    reference = torch.nn.Conv2d(
        in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=bias
    )
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(conv.weight.numpy().transpose(3, 2, 0, 1)))
        if bias:
            reference.bias.copy_(torch.tensor(conv.bias.numpy()))
    x = randn(2, in_channels, size, size)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    y_nd, y_th = conv(x_nd), reference(x_th)
    assert_close(y_nd, y_th, rtol=1e-4, atol=1e-4)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-4)
    weight_grad = reference.weight.grad.numpy().transpose(2, 3, 1, 0)
    assert_close(conv.weight.grad, weight_grad, rtol=1e-4, atol=1e-4)
    if bias:
        assert_close(conv.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.hw4
def test_conv_on_data_that_needs_no_gradient(device):
    np.random.seed(0)
    conv = nn.Conv(3, 4, 7, stride=4, device=device)
    x = randn(2, 3, 16, 16)
    conv(to_needle(x, device, requires_grad=False)).sum().backward()
    weight_grad, bias_grad = conv.weight.grad.numpy(), conv.bias.grad.numpy()
    conv.weight.grad = conv.bias.grad = None
    x_nd = to_needle(x, device)
    conv(x_nd).sum().backward()
    np.testing.assert_allclose(weight_grad, conv.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias_grad, conv.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert x_nd.grad.shape == x.shape


@pytest.mark.hw4
def test_conv_initialisation(device):
    np.random.seed(0)
    conv = nn.Conv(3, 8, (3, 3), stride=(2, 2), device=device)
    np.random.seed(0)
    fan_in = 3 * 3 * 3
    w_bound, b_bound = math.sqrt(6 / fan_in), 1 / math.sqrt(fan_in)
    weight = np.random.rand(3, 3, 3, 8).astype(np.float32) * 2 * w_bound - w_bound
    bias = np.random.rand(8).astype(np.float32) * 2 * b_bound - b_bound
    np.testing.assert_allclose(conv.weight.numpy(), weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conv.bias.numpy(), bias, rtol=1e-5, atol=1e-6)
    assert conv.kernel_size == 3 and conv.stride == 2 and conv.padding == 1


# ---- sequence models -----------------------------------------------------------------------


@pytest.mark.hw4
def test_sigmoid_and_tanh_match_torch_even_for_large_inputs(device):
    x = np.array([[-100.0, -5.0, -0.5, 0.0, 0.5, 5.0, 100.0]], dtype=np.float32)
    for module, function in [(nn.Sigmoid(), torch.sigmoid), (nn.Tanh(), torch.tanh)]:
        x_nd, x_th = to_needle(x, device), to_torch(x)
        y_nd, y_th = module(x_nd), function(x_th)
        assert_close(y_nd, y_th, rtol=1e-6, atol=1e-7)
        backward_both(y_nd, y_th)
        assert np.all(np.isfinite(x_nd.grad.numpy()))
        assert_close(x_nd.grad, x_th.grad, rtol=1e-5, atol=1e-7)


def copy_cells_to_torch(cells, reference, bias):
    with torch.no_grad():
        for layer, cell in enumerate(cells):
            getattr(reference, f"weight_ih_l{layer}").copy_(torch.tensor(cell.W_ih.numpy().T))
            getattr(reference, f"weight_hh_l{layer}").copy_(torch.tensor(cell.W_hh.numpy().T))
            if bias:
                getattr(reference, f"bias_ih_l{layer}").copy_(torch.tensor(cell.bias_ih.numpy()))
                getattr(reference, f"bias_hh_l{layer}").copy_(torch.tensor(cell.bias_hh.numpy()))


def assert_cell_grads(cells, reference, bias, rtol=1e-4, atol=1e-5):
    for layer, cell in enumerate(cells):
        torch_grad = lambda name: getattr(reference, f"{name}_l{layer}").grad  # noqa: B023
        assert_close(cell.W_ih.grad, torch_grad("weight_ih").T, rtol, atol, f"W_ih l{layer}")
        assert_close(cell.W_hh.grad, torch_grad("weight_hh").T, rtol, atol, f"W_hh l{layer}")
        if bias:
            assert_close(cell.bias_ih.grad, torch_grad("bias_ih"), rtol, atol, f"b_ih l{layer}")
            assert_close(cell.bias_hh.grad, torch_grad("bias_hh"), rtol, atol, f"b_hh l{layer}")
        else:
            assert cell.bias_ih is None and cell.bias_hh is None


SEQUENCE_CASES = [
    # (num_layers, bias, init_hidden, nonlinearity)
    (1, True, False, "tanh"),
    (2, True, True, "tanh"),
    (2, False, True, "relu"),
    (1, False, False, "relu"),
]


@pytest.mark.hw4
@pytest.mark.parametrize("num_layers, bias, init_hidden, nonlinearity", SEQUENCE_CASES)
def test_rnn_matches_torch(device, num_layers, bias, init_hidden, nonlinearity):
    np.random.seed(0)
    seq_len, batch, input_size, hidden = 5, 3, 4, 6
    model = nn.RNN(input_size, hidden, num_layers, bias, nonlinearity, device=device)
    reference = torch.nn.RNN(input_size, hidden, num_layers, nonlinearity=nonlinearity, bias=bias)
    copy_cells_to_torch(model.rnn_cells, reference, bias)
    x, h0 = randn(seq_len, batch, input_size), randn(num_layers, batch, hidden)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    h0_nd, h0_th = (to_needle(h0, device), to_torch(h0)) if init_hidden else (None, None)
    (out_nd, h_nd), (out_th, h_th) = model(x_nd, h0_nd), reference(x_th, h0_th)
    assert_close(out_nd, out_th)
    assert_close(h_nd, h_th)
    # Gradients through both outputs: the top layer's sequence and every layer's last state.
    backward_both(
        ndl.ops.stack([out_nd.sum(axes=(0,)), h_nd.sum(axes=(0,))], 0),
        torch.stack([out_th.sum(0), h_th.sum(0)], 0),
    )
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-5)
    if init_hidden:
        assert_close(h0_nd.grad, h0_th.grad, rtol=1e-4, atol=1e-5)
    assert_cell_grads(model.rnn_cells, reference, bias)


@pytest.mark.hw4
@pytest.mark.parametrize("num_layers, bias, init_hidden", [c[:3] for c in SEQUENCE_CASES])
def test_lstm_matches_torch(device, num_layers, bias, init_hidden):
    np.random.seed(0)
    seq_len, batch, input_size, hidden = 5, 3, 4, 6
    model = nn.LSTM(input_size, hidden, num_layers, bias, device=device)
    reference = torch.nn.LSTM(input_size, hidden, num_layers, bias=bias)
    copy_cells_to_torch(model.lstm_cells, reference, bias)
    x = randn(seq_len, batch, input_size)
    h0, c0 = randn(num_layers, batch, hidden), randn(num_layers, batch, hidden)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    if init_hidden:
        state_nd = (to_needle(h0, device), to_needle(c0, device))
        state_th = (to_torch(h0), to_torch(c0))
    else:
        state_nd = state_th = None
    out_nd, (h_nd, c_nd) = model(x_nd, state_nd)
    out_th, (h_th, c_th) = reference(x_th, state_th)
    assert_close(out_nd, out_th)
    assert_close(h_nd, h_th)
    assert_close(c_nd, c_th)
    # Gradients through every output: the sequence, the last h and the last c.
    total_nd = ndl.ops.stack([h_nd, c_nd], 0)
    total_th = torch.stack([h_th, c_th], 0)
    backward_both(
        ndl.ops.stack([out_nd.sum(axes=(0,)), total_nd.sum(axes=(0, 1))], 0),
        torch.stack([out_th.sum(0), total_th.sum((0, 1))], 0),
    )
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-5)
    if init_hidden:
        assert_close(state_nd[0].grad, state_th[0].grad, rtol=1e-4, atol=1e-5)
        assert_close(state_nd[1].grad, state_th[1].grad, rtol=1e-4, atol=1e-5)
    assert_cell_grads(model.lstm_cells, reference, bias)


@pytest.mark.hw4
def test_cells_match_torch_cells(device):
    np.random.seed(0)
    x, h, c = randn(3, 4), randn(3, 5), randn(3, 5)
    rnn_cell, lstm_cell = nn.RNNCell(4, 5, device=device), nn.LSTMCell(4, 5, device=device)
    torch_rnn, torch_lstm = torch.nn.RNNCell(4, 5), torch.nn.LSTMCell(4, 5)
    for cell, reference in [(rnn_cell, torch_rnn), (lstm_cell, torch_lstm)]:
        with torch.no_grad():
            reference.weight_ih.copy_(torch.tensor(cell.W_ih.numpy().T))
            reference.weight_hh.copy_(torch.tensor(cell.W_hh.numpy().T))
            reference.bias_ih.copy_(torch.tensor(cell.bias_ih.numpy()))
            reference.bias_hh.copy_(torch.tensor(cell.bias_hh.numpy()))
    x_nd, x_th = to_needle(x, device), to_torch(x)
    assert_close(rnn_cell(x_nd), torch_rnn(x_th))  # h = None means zeros
    h_nd, c_nd = lstm_cell(x_nd, (to_needle(h, device), to_needle(c, device)))
    h_th, c_th = torch_lstm(x_th, (to_torch(h), to_torch(c)))
    assert_close(h_nd, h_th)
    assert_close(c_nd, c_th)


@pytest.mark.hw4
def test_sequence_initialisation_bounds():
    np.random.seed(0)
    lstm = nn.LSTMCell(3, 16)
    assert lstm.W_ih.shape == (3, 64) and lstm.W_hh.shape == (16, 64)
    assert lstm.bias_ih.shape == (64,) and lstm.bias_hh.shape == (64,)
    for p in lstm.parameters():
        assert np.abs(p.numpy()).max() <= 1 / 4 + 1e-7
    np.random.seed(0)
    rnn = nn.RNNCell(3, 4)
    np.random.seed(0)
    np.testing.assert_allclose(
        rnn.W_ih.numpy(), np.random.rand(3, 4).astype(np.float32) - 0.5, rtol=1e-6
    )
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")


@pytest.mark.hw4
def test_embedding_matches_torch(device):
    np.random.seed(0)
    layer = nn.Embedding(10, 4, device=device)
    reference = torch.nn.Embedding(10, 4)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(layer.weight.numpy()))
    ids = np.array([[1, 2, 9], [1, 0, 4]])
    y_nd = layer(ndl.Tensor(ids, device=device, requires_grad=False))
    y_th = reference(torch.tensor(ids))
    assert y_nd.shape == (2, 3, 4)
    assert_close(y_nd, y_th)
    backward_both(y_nd, y_th)
    assert_close(layer.weight.grad, reference.weight.grad)


# ---- Transformer ---------------------------------------------------------------------------


class NumpyMasks:
    """Dropout masks drawn from numpy's global RNG exactly as needle draws them."""

    def __init__(self, p):
        self.keep = 1 - p

    def __call__(self, x):
        mask = np.random.rand(*x.shape).astype(np.float32) <= np.float32(self.keep)
        return x * torch.tensor(mask.astype(np.float32)) / self.keep


def key(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def torch_layernorm(x, params, prefix, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    normalized = (x - mean) / torch.sqrt(var + eps)
    return params[key(prefix, "weight")] * normalized + params[key(prefix, "bias")]


def torch_attention_layer(q, k, v, params, prefix, num_head, dim_head, causal, dropout):
    batch, q_len, _ = q.shape
    k_len = k.shape[1]

    def heads(x, name, length):
        x = torch_layernorm(x, params, key(prefix, f"prenorm_{name}"))
        x = x @ params[key(prefix, f"{name}_projection.weight")]
        return x.reshape(batch, length, num_head, dim_head).transpose(1, 2)

    qh, kh, vh = heads(q, "q", q_len), heads(k, "k", k_len), heads(v, "v", k_len)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(dim_head)
    if causal:
        future = torch.triu(torch.ones(q_len, k_len), diagonal=k_len - q_len + 1)
        scores = scores - torch.finfo(torch.float32).max * future
    probs = dropout(torch.softmax(scores, dim=-1))
    merged = (probs @ vh).transpose(1, 2).reshape(batch, q_len, num_head * dim_head)
    return merged @ params[key(prefix, "out_projection.weight")], probs


def torch_transformer_layer(x, params, prefix, num_head, dim_head, causal, dropout):
    attention, _ = torch_attention_layer(
        x, x, x, params, key(prefix, "attention"), num_head, dim_head, causal, dropout
    )
    x = x + dropout(attention)
    hidden = torch_layernorm(x, params, key(prefix, "layernorm"))
    hidden = hidden @ params[key(prefix, "linear1.weight")] + params[key(prefix, "linear1.bias")]
    hidden = dropout(torch.relu(hidden))
    hidden = hidden @ params[key(prefix, "linear2.weight")] + params[key(prefix, "linear2.bias")]
    return x + dropout(hidden)


@pytest.mark.hw4_extra
@pytest.mark.parametrize("causal", [True, False])
def test_multihead_attention_matches_softmax_attention(device, causal):
    np.random.seed(0)
    q, k, v = randn(2, 3, 4, 5), randn(2, 3, 6, 5), randn(2, 3, 6, 7)
    attention = nn.MultiHeadAttention(causal=causal, device=device)
    nd = [to_needle(a, device) for a in (q, k, v)]
    th = [to_torch(a) for a in (q, k, v)]
    result_nd, probs_nd = attention(*nd)
    scores = th[0] @ th[1].transpose(-1, -2) / math.sqrt(5)
    if causal:  # query i sees keys up to i + (6 - 4)
        scores = scores.masked_fill(torch.triu(torch.ones(4, 6, dtype=torch.bool), 3), -1e30)
    probs_th = torch.softmax(scores, -1)
    result_th = probs_th @ th[2]
    assert_close(probs_nd, probs_th)
    assert_close(result_nd, result_th)
    backward_both(result_nd, result_th)
    for a_nd, a_th in zip(nd, th):
        assert_close(a_nd.grad, a_th.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.hw4_extra
def test_attention_layer_with_distinct_kv_features(device):
    np.random.seed(0)
    layer = nn.AttentionLayer(
        6, 2, 3, k_features=5, v_features=4, out_features=7, causal=False, device=device
    )
    params = torch_copy_of_parameters(layer)
    q, k, v = randn(2, 3, 6), randn(2, 4, 5), randn(2, 4, 4)
    nd = [to_needle(a, device) for a in (q, k, v)]
    th = [to_torch(a) for a in (q, k, v)]
    out_nd = layer(*nd)
    out_th, _ = torch_attention_layer(*th, params, "", 2, 3, False, lambda x: x)
    assert out_nd.shape == (2, 3, 7)
    assert_close(out_nd, out_th, rtol=1e-4, atol=1e-5)
    backward_both(out_nd, out_th)
    for a_nd, a_th in zip(nd, th):
        assert_close(a_nd.grad, a_th.grad, rtol=1e-4, atol=1e-5)
    assert_parameter_grads(layer, params, rtol=1e-4, atol=1e-5)


@pytest.mark.hw4_extra
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_transformer_layer_matches_reference(device, dropout):
    np.random.seed(19943)
    x = randn(2, 5, 8)
    layer = nn.TransformerLayer(8, 2, 4, 16, dropout=dropout, causal=True, device=device)
    params = torch_copy_of_parameters(layer)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    np.random.seed(7)  # the dropout masks: drawn in the same order by both
    y_nd = layer(x_nd)
    np.random.seed(7)
    y_th = torch_transformer_layer(x_th, params, "", 2, 4, True, NumpyMasks(dropout))
    assert_close(y_nd, y_th, rtol=1e-4, atol=1e-5)
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-4)
    assert_parameter_grads(layer, params, rtol=1e-4, atol=1e-4)


@pytest.mark.hw4_extra
@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_model_matches_reference(device, batch_first):
    np.random.seed(19943)
    model = nn.Transformer(
        8, 12, 2, num_head=2, dim_head=4, device=device, batch_first=batch_first, sequence_len=9
    )
    names = [name for name, _ in model.named_parameters()]
    assert names[0] == "positional_embedding.weight"  # built before the layers
    params = torch_copy_of_parameters(model)
    x = randn(3, 6, 8) if batch_first else randn(6, 3, 8)
    x_nd, x_th = to_needle(x, device), to_torch(x)
    y_nd, h_nd = model(x_nd)
    h = x_th if batch_first else x_th.transpose(0, 1)
    h = h + params["positional_embedding.weight"][:6][None]
    for layer in range(2):
        h = torch_transformer_layer(h, params, f"layers.{layer}", 2, 4, True, lambda t: t)
    y_th = h if batch_first else h.transpose(0, 1)
    assert_close(y_nd, y_th, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(h_nd.numpy(), 0.0)
    assert h_nd.shape == y_nd.shape
    backward_both(y_nd, y_th)
    assert_close(x_nd.grad, x_th.grad, rtol=1e-4, atol=1e-4)
    assert_parameter_grads(model, params, rtol=1e-4, atol=1e-4)
    too_long = randn(3, 10, 8) if batch_first else randn(10, 3, 8)
    with pytest.raises(ValueError, match="sequence_len"):
        model(to_needle(too_long, device))
