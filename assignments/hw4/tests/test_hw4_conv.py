"""Public tests of hw4, part 3: padding, flipping and dilation (``new_ops``), the convolution op
and ``nn.Conv`` (``conv_forward``, ``conv_backward``), and ResNet9 with its training loop
(``resnet9``).

Run one part with e.g. ``make check K=new_ops`` or ``python -m pytest tests -k conv_backward``.
Padding, flipping and dilation are checked against small examples written out by hand and
against numpy; convolutions against ``torch.nn.functional.conv2d`` and ``torch.nn.Conv2d``
with the same weights; ResNet9 against the same network built in PyTorch.
"""

from __future__ import annotations

import math

import needle as ndl
import numpy as np
import pytest
from hw4_support import assert_close, assert_on_device, rand, tensor

pytestmark = pytest.mark.hw4


def models():
    from apps import models as module  # imported here: a broken file fails only its tests

    return module


def simple_ml():
    from apps import simple_ml as module

    return module


def nd(array, device) -> ndl.NDArray:
    return ndl.NDArray(np.asarray(array, dtype=np.float32), device=device)


# ---------------------------------------------------------------------------------------------
# NDArray.pad


def test_new_ops_pad_small_example(device):
    a = nd([[1, 2], [3, 4]], device)
    got = a.pad(((1, 0), (0, 2)))
    expected = [[0, 0, 0, 0], [1, 2, 0, 0], [3, 4, 0, 0]]
    assert isinstance(got, ndl.NDArray), f"pad returns an NDArray, got {type(got).__name__}"
    assert_close(
        got, expected, rtol=0, atol=0, what="pad ((1, 0), (0, 2)): one row on top, 2 columns right"
    )
    assert_close(a, [[1, 2], [3, 4]], rtol=0, atol=0, what="pad must not change its input")


PAD_CASES = [
    ((3, 4), ((0, 0), (0, 0))),
    ((3, 4), ((2, 1), (1, 3))),
    ((2, 3, 4), ((0, 0), (1, 1), (2, 0))),
    ((2, 5, 5, 3), ((0, 0), (2, 2), (2, 2), (0, 0))),
    ((4,), ((3, 2),)),
]


@pytest.mark.parametrize("shape, widths", PAD_CASES, ids=str)
def test_new_ops_pad_forward(device, shape, widths):
    x = rand(*shape, seed=1)
    got = nd(x, device).pad(widths)
    assert got.device == device, f"the padded array stays on {device}, got {got.device}"
    assert_close(got, np.pad(x, widths), rtol=0, atol=0, what=f"pad {widths} (like np.pad)")


def test_new_ops_pad_of_a_non_compact_view(device):
    x = rand(3, 4, 5, seed=2)
    view = nd(x, device).permute((2, 0, 1))[1:4, :, ::2]  # strided, offset view
    widths = ((1, 0), (0, 1), (2, 2))
    expected = np.pad(x.transpose(2, 0, 1)[1:4, :, ::2], widths)
    assert_close(view.pad(widths), expected, rtol=0, atol=0, what="pad of a permuted, sliced view")


# ---------------------------------------------------------------------------------------------
# NDArray.flip and the Flip op


def test_new_ops_flip_small_example(device):
    a = nd([[1, 2, 3], [4, 5, 6]], device)
    assert_close(a.flip((0,)), [[4, 5, 6], [1, 2, 3]], rtol=0, atol=0, what="flip axis 0")
    assert_close(a.flip((1,)), [[3, 2, 1], [6, 5, 4]], rtol=0, atol=0, what="flip axis 1")
    assert_close(a.flip((0, 1)), [[6, 5, 4], [3, 2, 1]], rtol=0, atol=0, what="flip both")
    assert_close(a, [[1, 2, 3], [4, 5, 6]], rtol=0, atol=0, what="flip must not change its input")


FLIP_CASES = [
    ((5,), (0,)),
    ((3, 4), (1,)),
    ((2, 3, 4), (0, 2)),
    ((2, 3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), (0, 1, 2, 3)),
    ((3, 1, 4), (1,)),
]


@pytest.mark.parametrize("shape, axes", FLIP_CASES, ids=str)
def test_new_ops_flip_forward(device, shape, axes):
    x = rand(*shape, seed=3)
    got = nd(x, device).flip(axes)
    assert got.shape == x.shape, f"flip keeps the shape {x.shape}, got {got.shape}"
    assert_close(got, np.flip(x, axes), rtol=0, atol=0, what=f"flip on axes {axes}")
    assert got.is_compact(), "flip returns a compact array (call .compact() on the view)"


def test_new_ops_flip_of_a_non_compact_view(device):
    x = rand(4, 5, 6, seed=4)
    view = nd(x, device).permute((1, 2, 0))[1:5:2, 2:, :]  # offset and strides of a view
    expected = np.flip(x.transpose(1, 2, 0)[1:5:2, 2:, :], (0, 2))
    assert_close(
        view.flip((0, 2)),
        expected,
        rtol=0,
        atol=0,
        what="flip of a sliced, permuted view: start from ITS offset and strides",
    )


@pytest.mark.parametrize("shape, axes", FLIP_CASES, ids=str)
def test_new_ops_flip_op_forward_and_backward(device, shape, axes):
    x, adjoint = rand(*shape, seed=5), rand(*shape, seed=6)
    xt = tensor(x, device)
    out = ndl.flip(xt, axes)
    assert_on_device(out, device, "flip(x)")
    assert_close(out, np.flip(x, axes), rtol=0, atol=0, what=f"ops.flip on axes {axes}")
    out.backward(tensor(adjoint, device, requires_grad=False))
    assert_close(
        xt.grad, np.flip(adjoint, axes), rtol=0, atol=0, what="gradient of flip = flip of g"
    )


# ---------------------------------------------------------------------------------------------
# Dilate and UnDilate

DILATE_EXAMPLES = [
    (
        [[1, 2], [3, 4]],
        (0,),
        1,
        [[1, 2], [0, 0], [3, 4], [0, 0]],
    ),
    (
        [[1, 2], [3, 4]],
        (1,),
        2,
        [[1, 0, 0, 2, 0, 0], [3, 0, 0, 4, 0, 0]],
    ),
    (
        [[1, 2], [3, 4]],
        (0, 1),
        1,
        [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]],
    ),
    ([5, 6, 7], (0,), 0, [5, 6, 7]),
    ([[1, 2], [3, 4]], (2,), 1, [[1, 2], [3, 4]]),  # axes beyond ndim are ignored
]


@pytest.mark.parametrize("x, axes, dilation, expected", DILATE_EXAMPLES, ids=str)
def test_new_ops_dilate_examples(device, x, axes, dilation, expected):
    got = ndl.dilate(tensor(x, device), axes, dilation)
    assert_on_device(got, device, "dilate")
    assert_close(
        got,
        expected,
        rtol=0,
        atol=0,
        what=f"dilate(axes={axes}, dilation={dilation}): {dilation} zero(s) AFTER every element",
    )


def dilate_numpy(x, axes, dilation):
    shape = [n * (dilation + 1) if i in axes else n for i, n in enumerate(x.shape)]
    out = np.zeros(shape, dtype=x.dtype)
    out[
        tuple(slice(None, None, dilation + 1) if i in axes else slice(None) for i in range(x.ndim))
    ] = x
    return out


@pytest.mark.parametrize(
    "shape, axes, dilation",
    [
        ((2, 3, 3, 2), (1, 2), 1),
        ((2, 4, 3, 2), (1, 2), 2),
        ((3, 5), (0,), 3),
        ((2, 3, 4), (0, 2), 1),
    ],
    ids=str,
)
def test_new_ops_dilate_forward_and_backward(device, shape, axes, dilation):
    x = rand(*shape, seed=7)
    xt = tensor(x, device)
    out = ndl.dilate(xt, axes, dilation)
    assert_close(out, dilate_numpy(x, axes, dilation), rtol=0, atol=0, what="dilate")
    adjoint = rand(*out.shape, seed=8)
    out.backward(tensor(adjoint, device, requires_grad=False))
    keep = tuple(
        slice(None, None, dilation + 1) if i in axes else slice(None) for i in range(x.ndim)
    )
    assert_close(
        xt.grad,
        adjoint[keep],
        rtol=0,
        atol=0,
        what="gradient of dilate: the adjoint at the original positions (undilate)",
    )


@pytest.mark.parametrize(
    "shape, axes, dilation",
    [((2, 6, 6, 2), (1, 2), 1), ((4, 9), (1,), 2), ((6, 4), (0, 1), 1)],
    ids=str,
)
def test_new_ops_undilate_forward_and_backward(device, shape, axes, dilation):
    x = rand(*shape, seed=9)
    xt = tensor(x, device)
    out = ndl.undilate(xt, axes, dilation)
    keep = tuple(
        slice(None, None, dilation + 1) if i in axes else slice(None) for i in range(x.ndim)
    )
    assert_close(out, x[keep], rtol=0, atol=0, what="undilate keeps every (dilation+1)-th entry")
    adjoint = rand(*out.shape, seed=10)
    out.backward(tensor(adjoint, device, requires_grad=False))
    assert_close(
        xt.grad,
        dilate_numpy(adjoint, axes, dilation),
        rtol=0,
        atol=0,
        what="gradient of undilate: the adjoint dilated back (zeros in between)",
    )


# ---------------------------------------------------------------------------------------------
# The convolution op (NHWC input, (K, K, C_in, C_out) weights)

# (N, H, W, C_in, C_out, K, stride, padding)
CONV_CASES = [
    (2, 5, 5, 3, 4, 3, 1, 0),
    (2, 5, 5, 3, 4, 3, 1, 1),
    (1, 8, 8, 3, 2, 5, 1, 2),
    (3, 6, 6, 4, 2, 1, 1, 0),
    (2, 7, 6, 2, 3, 3, 2, 1),
    (2, 8, 8, 2, 3, 3, 2, 0),  # (8 - 3) / 2 is not whole: the last row/column is unused
    (2, 9, 9, 3, 5, 3, 3, 1),
    (2, 11, 10, 2, 4, 5, 2, 0),
    (2, 6, 8, 3, 3, 4, 2, 1),
    (1, 14, 14, 8, 16, 3, 1, 1),
    (2, 4, 4, 2, 2, 3, 1, 2),
]


def conv_inputs(case, seed):
    n, h, w, c_in, c_out, k, _, _ = case
    return rand(n, h, w, c_in, seed=seed), rand(k, k, c_in, c_out, seed=seed + 1)


def torch_conv(torch, x, weight, stride, padding, adjoint=None):
    """(output NHWC, grad_x, grad_w) by PyTorch, with needle's layouts on both ends."""
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)  # NHWC -> NCHW
    wt = torch.tensor(weight.transpose(3, 2, 0, 1), requires_grad=True)  # KKIO -> OIKK
    out = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
    out_nhwc = out.permute(0, 2, 3, 1)
    if adjoint is None:
        return out_nhwc.detach().numpy(), None, None
    out_nhwc.backward(torch.tensor(adjoint))
    return (
        out_nhwc.detach().numpy(),
        xt.grad.numpy().transpose(0, 2, 3, 1),
        wt.grad.numpy().transpose(2, 3, 1, 0),
    )


@pytest.mark.parametrize(
    "case", CONV_CASES, ids=lambda c: "N{}_H{}_W{}_Cin{}_Cout{}_K{}_s{}_p{}".format(*c)
)
def test_conv_forward_op(device, torch, case):
    n, h, w, c_in, c_out, k, stride, padding = case
    x, weight = conv_inputs(case, seed=11)
    got = ndl.conv(tensor(x, device), tensor(weight, device), stride=stride, padding=padding)
    out_h, out_w = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    assert got.shape == (n, out_h, out_w, c_out), (
        f"output shape (N, (H+2p-K)//s+1, (W+2p-K)//s+1, C_out) = {(n, out_h, out_w, c_out)}, "
        f"got {got.shape}"
    )
    assert_on_device(got, device, "conv")
    expected, _, _ = torch_conv(torch, x, weight, stride, padding)
    assert_close(
        got, expected, rtol=1e-4, atol=1e-4, what=f"conv(stride={stride}, padding={padding})"
    )


def test_conv_forward_op_default_padding_of_the_helper(device, torch):
    # The course's helper ops.conv(a, b) pads by 1 by default; the Conv op itself by 0.
    x, weight = conv_inputs((1, 5, 5, 2, 3, 3, 1, 1), seed=12)
    expected, _, _ = torch_conv(torch, x, weight, 1, 1)
    assert_close(
        ndl.conv(tensor(x, device), tensor(weight, device)), expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "case", CONV_CASES, ids=lambda c: "N{}_H{}_W{}_Cin{}_Cout{}_K{}_s{}_p{}".format(*c)
)
def test_conv_backward_op(device, torch, case):
    _, _, _, _, _, _, stride, padding = case
    x, weight = conv_inputs(case, seed=13)
    xt, wt = tensor(x, device), tensor(weight, device)
    out = ndl.conv(xt, wt, stride=stride, padding=padding)
    adjoint = rand(*out.shape, seed=14)
    out.backward(tensor(adjoint, device, requires_grad=False))
    _, grad_x, grad_w = torch_conv(torch, x, weight, stride, padding, adjoint)
    assert xt.grad is not None and wt.grad is not None, "conv's gradient must reach both inputs"
    assert_close(
        xt.grad, grad_x, rtol=1e-4, atol=1e-4, what="gradient w.r.t. the input (N, H, W, C_in)"
    )
    assert_close(
        wt.grad,
        grad_w,
        rtol=1e-4,
        atol=1e-4,
        what="gradient w.r.t. the weights (K, K, C_in, C_out)",
    )


def test_conv_backward_op_second_use_of_the_graph(device, torch):
    # conv followed by conv: the first conv's input gradient flows through the second.
    x, w1 = rand(2, 6, 6, 2, seed=15), rand(3, 3, 2, 3, seed=16)
    w2 = rand(3, 3, 3, 2, seed=17)
    xt = tensor(x, device)
    out = ndl.conv(
        ndl.conv(xt, tensor(w1, device), stride=1, padding=1),
        tensor(w2, device),
        stride=2,
        padding=1,
    )
    out.sum().backward()
    X = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    F = torch.nn.functional
    y = F.conv2d(
        F.conv2d(X, torch.tensor(w1.transpose(3, 2, 0, 1)), padding=1),
        torch.tensor(w2.transpose(3, 2, 0, 1)),
        stride=2,
        padding=1,
    )
    y.sum().backward()
    assert_close(
        xt.grad,
        X.grad.numpy().transpose(0, 2, 3, 1),
        rtol=1e-4,
        atol=1e-4,
        what="x.grad through two convs",
    )


# ---------------------------------------------------------------------------------------------
# nn.Conv (NCHW in and out, "same" padding k // 2)


def test_conv_forward_nn_conv_parameters(device):
    np.random.seed(0)
    conv = ndl.nn.Conv(3, 5, 3, stride=1, bias=True, device=device)
    assert conv.weight.shape == (3, 3, 3, 5), (
        f"weight is (k, k, C_in, C_out), got {conv.weight.shape}"
    )
    assert conv.bias.shape == (5,), f"bias is (C_out,), got {conv.bias.shape}"
    # Kaiming uniform with fan_in = C_in * k * k: bound sqrt(6 / fan_in); bias bound 1/sqrt(fan_in).
    # Weight first, then bias, both from numpy's global generator.
    np.random.seed(0)
    fan_in = 3 * 3 * 3
    weight_bound, bias_bound = math.sqrt(6 / fan_in), 1 / math.sqrt(fan_in)
    expected_weight = np.random.rand(3, 3, 3, 5) * 2 * weight_bound - weight_bound
    expected_bias = np.random.rand(5) * 2 * bias_bound - bias_bound
    assert_close(
        conv.weight,
        expected_weight,
        rtol=1e-5,
        atol=1e-6,
        what="weight = kaiming_uniform(shape=(k, k, C_in, C_out))",
    )
    assert_close(
        conv.bias,
        expected_bias,
        rtol=1e-5,
        atol=1e-6,
        what="bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn after the weight",
    )
    assert isinstance(conv.weight, ndl.nn.Parameter) and isinstance(conv.bias, ndl.nn.Parameter)
    assert len(conv.parameters()) == 2
    no_bias = ndl.nn.Conv(3, 5, 3, bias=False, device=device)
    assert len(no_bias.parameters()) == 1, "bias=False: the weight is the only parameter"


# (N, C_in, C_out, H, W, k, stride, bias)
NN_CONV_CASES = [
    (2, 3, 4, 8, 8, 3, 1, True),
    (2, 3, 4, 8, 8, 3, 2, True),
    (1, 2, 3, 7, 9, 5, 1, True),
    (2, 4, 2, 6, 6, 1, 1, False),
    (3, 2, 3, 9, 9, 3, 3, True),
    (1, 16, 8, 14, 14, 3, 2, True),
]


def torch_conv_module(torch, conv, c_in, c_out, k, stride, bias):
    module = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(conv.weight.numpy().transpose(3, 2, 0, 1)))
        if bias:
            module.bias.copy_(torch.tensor(conv.bias.numpy()))
    return module


@pytest.mark.parametrize("case", NN_CONV_CASES, ids=str)
def test_conv_forward_nn_conv(device, torch, case):
    n, c_in, c_out, h, w, k, stride, bias = case
    np.random.seed(1)
    conv = ndl.nn.Conv(c_in, c_out, k, stride=stride, bias=bias, device=device)
    x = rand(n, c_in, h, w, seed=18)
    got = conv(tensor(x, device))
    assert_on_device(got, device, "nn.Conv output")
    reference = torch_conv_module(torch, conv, c_in, c_out, k, stride, bias)
    expected = reference(torch.tensor(x)).detach().numpy()
    assert_close(
        got, expected, rtol=1e-4, atol=1e-4, what=f"nn.Conv NCHW output (padding {k // 2})"
    )


@pytest.mark.parametrize("case", NN_CONV_CASES, ids=str)
def test_conv_backward_nn_conv(device, torch, case):
    n, c_in, c_out, h, w, k, stride, bias = case
    np.random.seed(2)
    conv = ndl.nn.Conv(c_in, c_out, k, stride=stride, bias=bias, device=device)
    x = rand(n, c_in, h, w, seed=19)
    xt = tensor(x, device)
    out = conv(xt)
    adjoint = rand(*out.shape, seed=20)
    out.backward(tensor(adjoint, device, requires_grad=False))
    reference = torch_conv_module(torch, conv, c_in, c_out, k, stride, bias)
    X = torch.tensor(x, requires_grad=True)
    reference(X).backward(torch.tensor(adjoint))
    assert_close(xt.grad, X.grad, rtol=1e-4, atol=1e-4, what="nn.Conv: gradient w.r.t. the input")
    assert_close(
        conv.weight.grad,
        reference.weight.grad.numpy().transpose(2, 3, 1, 0),
        rtol=1e-4,
        atol=1e-4,
        what="nn.Conv: gradient w.r.t. the weight (k, k, C_in, C_out)",
    )
    if bias:
        assert_close(
            conv.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-4, what="nn.Conv: bias gradient"
        )


# ---------------------------------------------------------------------------------------------
# ResNet9


def torch_resnet9(torch):
    """The same network in PyTorch (module and parameter order as in needle's ResNet9)."""
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, *layers):
            super().__init__()
            self.fn = nn.Sequential(*layers)

        def forward(self, x):
            return self.fn(x) + x

    def conv_bn(a, b, k, s):
        return nn.Sequential(
            nn.Conv2d(a, b, k, stride=s, padding=k // 2), nn.BatchNorm2d(b), nn.ReLU()
        )

    return nn.Sequential(
        conv_bn(3, 16, 7, 4),
        conv_bn(16, 32, 3, 2),
        Residual(conv_bn(32, 32, 3, 1), conv_bn(32, 32, 3, 1)),
        conv_bn(32, 64, 3, 2),
        conv_bn(64, 128, 3, 2),
        Residual(conv_bn(128, 128, 3, 1), conv_bn(128, 128, 3, 1)),
        nn.Flatten(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def copy_parameters_to_torch(torch, model, reference):
    """Copy needle's parameters into the PyTorch model, in order, converting layouts."""
    ours = model.parameters()
    theirs = list(reference.named_parameters())
    assert len(ours) == len(theirs), (
        f"ResNet9 has {len(theirs)} parameter tensors (weight and bias of 8 convs, 8 batch norms "
        f"and 2 linear layers), yours has {len(ours)}"
    )
    with torch.no_grad():
        for index, (mine, (name, target)) in enumerate(zip(ours, theirs)):
            value = mine.numpy()
            if value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)  # (k, k, in, out) -> (out, in, k, k)
            elif value.ndim == 2 and target.ndim == 2:
                value = value.T  # Linear: (in, out) -> (out, in)
            value = value.reshape(target.shape) if value.size == target.numel() else value
            assert tuple(value.shape) == tuple(target.shape), (
                f"parameter {index} ({name} in the reference) should have {target.numel()} "
                f"entries, yours has shape {mine.shape}; build the layers in the documented order"
            )
            target.copy_(torch.tensor(value))


def test_resnet9_parameter_count_and_output_shape(device):
    np.random.seed(0)
    model = models().ResNet9(device=device, dtype="float32")
    count = sum(math.prod(p.shape) for p in model.parameters())
    assert count == 431946, f"ResNet9 has 431,946 parameters, yours has {count:,}"
    out = model(tensor(rand(2, 3, 32, 32, seed=21), device))
    assert out.shape == (2, 10), f"logits are (N, 10), got {out.shape}"
    assert_on_device(out, device, "ResNet9 logits")


def test_resnet9_forward_and_backward_match_pytorch(device, torch):
    np.random.seed(0)
    model = models().ResNet9(device=device, dtype="float32")
    reference = torch_resnet9(torch)
    copy_parameters_to_torch(torch, model, reference)
    x = rand(4, 3, 32, 32, seed=22)
    labels = np.array([1, 7, 3, 3])
    logits = model(tensor(x, device))
    expected = reference(torch.tensor(x))
    assert_close(
        logits, expected, rtol=1e-3, atol=1e-3, what="ResNet9 logits (training-mode batch norm)"
    )
    loss = ndl.nn.SoftmaxLoss()(logits, tensor(labels, device, requires_grad=False))
    loss.backward()
    torch.nn.functional.cross_entropy(expected, torch.tensor(labels)).backward()
    first, last = model.parameters()[0], model.parameters()[-2]
    theirs = list(reference.parameters())
    assert_close(
        first.grad,
        theirs[0].grad.numpy().transpose(2, 3, 1, 0),
        rtol=1e-3,
        atol=1e-4,
        what="gradient of the first conv's weight",
    )
    assert_close(
        last.grad,
        theirs[-2].grad.numpy().T,
        rtol=1e-3,
        atol=1e-4,
        what="gradient of the last linear layer's weight",
    )


def torch_linear(torch, layer):
    module = torch.nn.Linear(*layer.weight.shape)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.weight.numpy().T))
        module.bias.copy_(torch.tensor(layer.bias.numpy().reshape(-1)))
    return module


def tiny_classifier(device):
    np.random.seed(3)
    linear = ndl.nn.Linear(3 * 4 * 4, 5, device=device)
    return ndl.nn.Sequential(ndl.nn.Flatten(), linear), linear


def test_resnet9_train_and_evaluate_loops_match_pytorch(device, torch):
    images, labels = rand(20, 3, 4, 4, seed=23), np.random.default_rng(24).integers(0, 5, size=20)
    dataset = ndl.data.NDArrayDataset(images, labels.astype(np.float32))
    loader = ndl.data.DataLoader(dataset, batch_size=8, shuffle=False, device=device)
    model, linear = tiny_classifier(device)
    reference = torch_linear(torch, linear)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=0.001)

    def torch_epoch(train):
        correct, total_loss = 0, 0.0
        for start in range(0, 20, 8):
            X = torch.tensor(images[start : start + 8].reshape(-1, 48))
            y = torch.tensor(labels[start : start + 8])
            logits = reference(X)
            loss = torch.nn.functional.cross_entropy(logits, y)
            if train:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct += int((logits.argmax(1) == y).sum())
            total_loss += loss.item() * len(y)
        return correct / 20, total_loss / 20

    accuracy, loss = simple_ml().train_cifar10(
        model, loader, n_epochs=2, optimizer=ndl.optim.Adam, lr=0.01, weight_decay=0.001
    )
    torch_epoch(True)
    expected = torch_epoch(True)
    assert model.training, "train_cifar10 leaves the model in training mode"
    assert accuracy == pytest.approx(expected[0]), (
        "accuracy of the last epoch (fraction of samples right)"
    )
    assert loss == pytest.approx(expected[1], rel=1e-4), (
        "loss of the last epoch: batch losses (before each step) weighted by batch size"
    )
    assert_close(
        linear.weight,
        reference.weight.detach().numpy().T,
        rtol=1e-4,
        atol=1e-5,
        what="weights after 2 epochs of Adam",
    )

    accuracy, loss = simple_ml().evaluate_cifar10(model, loader)
    assert not model.training, "evaluate_cifar10 puts the model in eval mode"
    with torch.no_grad():
        expected = torch_epoch(False)
    assert accuracy == pytest.approx(expected[0]) and loss == pytest.approx(expected[1], rel=1e-4)
    assert_close(
        linear.weight,
        reference.weight.detach().numpy().T,
        rtol=1e-4,
        atol=1e-5,
        what="evaluation must not change the weights",
    )
