"""Hidden probes of hw4 (needle on its NDArray: convolutions, ResNet9, RNN/LSTM, PTB language
model).

Units and what their probes exercise (points in ``assignments/hw4/assignment.toml``):

- ``new_nd_backend_activations`` / ``new_nd_backend_stack_split``: the new ops ``tanh`` and
  ``sigmoid``, then ``stack`` and ``split`` (one unit each, so a wrong derivative of tanh costs
  only the activations), forward and gradients;
- ``cifar10``: ``CIFAR10Dataset`` on a CIFAR-10-format folder the probe writes into the
  sandbox's private /tmp (lengths, pixels, labels, index arrays, transforms, a DataLoader);
- ``new_ops``: ``NDArray.pad`` and ``NDArray.flip`` (also on non-compact views), the ops
  ``flip``, ``dilate`` and ``undilate`` with their gradients;
- ``conv_forward`` / ``conv_backward``: the ``conv`` op (cases named ``op_*``, they need only
  the ops file and the NDArray file) and ``nn.Conv`` (cases named ``nn_conv_*``: also
  ``nn_conv.py``) — outputs, then gradients;
- ``resnet9``: the parameter count, logits of a seeded model, and the CIFAR training loop
  (``train_cifar10`` / ``evaluate_cifar10``) on a few images;
- ``rnn`` / ``lstm``: ``nn.Tanh``/``nn.Sigmoid``, cells and multi-layer stacks built from seeded
  initialisations: states, outputs and parameter gradients;
- ``ptb``: ``Dictionary``, ``Corpus`` (on text the probe writes and on the embedded PTB text),
  ``batchify``, ``get_batch``;
- ``language_model``: ``Embedding``, ``LanguageModel`` logits and states, and the PTB training
  loop (``train_ptb`` / ``evaluate_ptb``).

Seeds and shapes differ from the public tests. Modules are built right after
``np.random.seed(k)``, so their initial weights (drawn in the documented order) are part of
what is checked, as in the course.

The probes run on needle's ``cpu_numpy`` device: the NDArray class, the ops and the layers are
the submission's Python code on every device, and an hw4 submission holds no C++ (the kernels
are provided), so nothing is compiled (see ``BUILD``) and a probe run takes seconds. Code that
ignores the device it is given (``ndl.cpu()`` written into a layer) fails here, as it would on
a GPU.
"""

from typing import Any

from autograder.engine.kit import probe, rand, randint, randn
from autograder.engine.kit import rng as variant_rng
from autograder.engine.kit import seed as variant_seed

SEARCH_PATH = ["", "apps"]

# hw4 submissions contain no C++ ([submission] accept), and the probes use the numpy-backed
# NDArray device, so the grader has nothing to compile: a no-op instead of the CMake build.
BUILD = [["{python}", "-c", "pass"]]

# The training-loop units do a few dozen small steps; give them room on a busy machine.
LIMITS = {
    "resnet9": {"wall_s": 120.0, "cpu_s": 120},
    "language_model": {"wall_s": 120.0, "cpu_s": 120},
}

TRAINING: dict[str, Any] = {"rtol": 1e-3, "atol": 1e-4}


def _device():
    import needle as ndl

    return ndl.cpu_numpy()


def _tensor(array, requires_grad=True):
    import needle as ndl

    return ndl.Tensor(array, device=_device(), dtype="float32", requires_grad=requires_grad)


def _nd(array):
    import needle as ndl

    return ndl.NDArray(array, device=_device())


def _on_device(tensor):
    """What a probe reports about where a result lives: device name and data type."""
    import needle as ndl

    data = tensor.realize_cached_data()
    return [type(data).__name__ == ndl.NDArray.__name__, str(tensor.device), str(tensor.dtype)]


def _grads(tensors):
    return [None if t.grad is None else t.grad.numpy() for t in tensors]


def _backward(out, seed):
    """``out.backward(adjoint)`` with a seeded random adjoint of ``out``'s shape."""
    out.backward(_tensor(randn(*out.shape, seed=seed), requires_grad=False))


# --- new_nd_backend -------------------------------------------------------------------------


@probe("new_nd_backend_activations")
def tanh_forward():
    import needle as ndl

    x = _tensor(randn(3, 7, seed=1001, scale=2.0))
    out = ndl.tanh(x)
    return [out.numpy(), _on_device(out), ndl.tanh(_tensor([-40.0, 40.0])).numpy()]


@probe("new_nd_backend_activations", rtol=1e-4, atol=1e-6)
def tanh_backward():
    import needle as ndl

    x = _tensor(randn(4, 2, 3, seed=1002, scale=1.5))
    _backward(ndl.tanh(x), 1003)
    return x.grad.numpy()


@probe("new_nd_backend_activations", rtol=1e-4, atol=1e-6)
def sigmoid_forward_backward():
    import needle as ndl

    x = _tensor(randn(5, 4, seed=1004, scale=3.0))
    out = ndl.sigmoid(x)
    _backward(out, 1005)
    extremes = ndl.sigmoid(_tensor([-300.0, 0.0, 300.0])).numpy()
    return [out.numpy(), x.grad.numpy(), extremes]


@probe("new_nd_backend_stack_split")
def stack_forward():
    import needle as ndl

    arrays = [randn(2, 5, seed=1006 + i) for i in range(3)]
    results = []
    for axis in (0, 1, 2):
        out = ndl.stack([_tensor(a) for a in arrays], axis=axis)
        results.append([list(out.shape), out.numpy()])
    single = ndl.stack([_tensor(randn(4, seed=1009))], axis=1)
    return results + [[list(single.shape), single.numpy()], _on_device(out)]


@probe("new_nd_backend_stack_split")
def stack_backward():
    import needle as ndl

    inputs = [_tensor(randn(3, 2, 2, seed=1010 + i)) for i in range(4)]
    _backward(ndl.stack(inputs, axis=2), 1014)
    return _grads(inputs)


@probe("new_nd_backend_stack_split")
def split_forward():
    import needle as ndl

    x = _tensor(randn(3, 4, 2, seed=1015))
    answers = []
    for axis in (0, 1, 2):
        pieces = ndl.split(x, axis=axis)
        answers.append([len(pieces)] + [pieces[i].numpy() for i in range(len(pieces))])
    return answers


@probe("new_nd_backend_stack_split")
def split_backward():
    import needle as ndl

    x = _tensor(randn(2, 5, 3, seed=1016))
    pieces = ndl.split(x, axis=1)
    loss = None
    for i in range(5):
        weight = _tensor(randn(2, 3, seed=1017 + i), requires_grad=False)
        term = ndl.summation(pieces[i] * weight * (i + 1))
        loss = term if loss is None else loss + term
    loss.backward()
    return x.grad.numpy()


@probe("new_nd_backend_stack_split")
def stack_of_split_round_trip():
    import needle as ndl

    x = _tensor(randn(4, 3, seed=1022))
    out = ndl.stack(ndl.split(x, axis=0), axis=1)
    _backward(out, 1023)
    return [out.numpy(), x.grad.numpy()]


# --- cifar10 --------------------------------------------------------------------------------


def _cifar_folder(seed: int, per_batch: int, test_count: int):
    """A CIFAR-10-format folder in /tmp: pickled dicts with ``b"data"`` uint8 (n, 3072) and
    ``b"labels"`` (list of ints), ``data_batch_1..5`` and ``test_batch``."""
    import os
    import pickle
    import tempfile

    import numpy as np

    folder = os.path.join(tempfile.mkdtemp(prefix="cifar-"), "cifar-10-batches-py")
    os.makedirs(folder)
    rng = variant_rng(seed)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        n = test_count if name == "test_batch" else per_batch
        record = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        with open(os.path.join(folder, name), "wb") as stream:
            pickle.dump(record, stream, protocol=2)
    return folder


def _cifar(train: bool, transforms=None):
    import needle as ndl

    folder = _cifar_folder(seed=1101, per_batch=3, test_count=5)
    return ndl.data.CIFAR10Dataset(folder, train=train, transforms=transforms)


@probe("cifar10")
def cifar10_lengths():
    return [len(_cifar(True)), len(_cifar(False))]


@probe("cifar10")
def cifar10_items():
    import numpy as np

    answers = []
    for train, indices in ((True, (0, 4, 14)), (False, (2,))):
        dataset = _cifar(train)
        for index in indices:
            image, label = dataset[index]
            image = np.asarray(image)
            answers.append(
                [list(image.shape), str(image.dtype), image[:, 5, :8], image[2, 31], int(label)]
            )
    return answers


@probe("cifar10")
def cifar10_arrays():
    import numpy as np

    dataset = _cifar(True)
    X = np.asarray(dataset.X)
    return [list(X.shape), str(X.dtype), X[:, 1, 7, 3], np.asarray(dataset.y).reshape(-1)]


@probe("cifar10")
def cifar10_index_array_and_slice():
    import numpy as np

    dataset = _cifar(True)
    images, labels = dataset[np.array([9, 1, 6])]
    sliced, sliced_labels = dataset[3:7]
    return [
        list(np.shape(images)),
        np.asarray(images)[:, 0, 0, :6],
        np.asarray(labels).reshape(-1),
        list(np.shape(sliced)),
        np.asarray(sliced_labels).reshape(-1),
    ]


@probe("cifar10")
def cifar10_transforms_see_height_width_channels():
    import needle as ndl
    import numpy as np

    dataset = _cifar(False, transforms=[ndl.data.RandomFlipHorizontal(p=1.0)])
    image, _ = dataset[1]
    image = np.asarray(image)
    return [list(image.shape), image[1, 3, :10]]


@probe("cifar10")
def cifar10_data_loader():
    import needle as ndl

    loader = ndl.data.DataLoader(_cifar(True), batch_size=4, shuffle=False, device=_device())
    answers = []
    for X, y in loader:
        answers.append([list(X.shape), X.numpy()[:, 2, 10, 10], y.numpy()])
    return answers + [_on_device(X)]


# --- new_ops --------------------------------------------------------------------------------


@probe("new_ops")
def pad_forward():
    answers = []
    cases = [
        ((2, 3), ((1, 2), (0, 1))),
        ((3, 2, 2), ((0, 0), (2, 0), (1, 1))),
        ((1, 4, 4, 2), ((0, 0), (1, 1), (1, 1), (0, 0))),
        ((5,), ((0, 3),)),
    ]
    for index, (shape, widths) in enumerate(cases):
        out = _nd(randn(*shape, seed=1201 + index)).pad(widths)
        answers.append([list(out.shape), out.numpy()])
    return answers


@probe("new_ops")
def pad_of_a_view():
    view = _nd(randn(4, 3, 5, seed=1205)).permute((1, 2, 0))[:, 1:5:2, 1:]
    out = view.pad(((2, 0), (1, 1), (0, 2)))
    return [list(out.shape), out.numpy()]


@probe("new_ops")
def flip_forward():
    answers = []
    cases = [((6,), (0,)), ((3, 4), (0,)), ((2, 3, 4), (1, 2)), ((2, 2, 3, 3), (0, 3))]
    for index, (shape, axes) in enumerate(cases):
        out = _nd(randn(*shape, seed=1206 + index)).flip(axes)
        answers.append([list(out.shape), out.numpy(), bool(out.is_compact())])
    return answers


@probe("new_ops")
def flip_of_a_view():
    view = _nd(randn(5, 4, 3, seed=1210)).permute((2, 0, 1))[1:, ::2, 1:4]
    return view.flip((1, 2)).numpy()


@probe("new_ops")
def flip_op_forward_backward():
    import needle as ndl

    x = _tensor(randn(3, 2, 4, seed=1211))
    out = ndl.flip(x, (0, 2))
    _backward(out, 1212)
    return [out.numpy(), x.grad.numpy()]


@probe("new_ops")
def dilate_forward():
    import needle as ndl

    answers = []
    cases = [((3, 2), (0,), 2), ((2, 3), (1,), 1), ((2, 2, 3), (0, 2), 1), ((4,), (0,), 0)]
    for index, (shape, axes, dilation) in enumerate(cases):
        out = ndl.dilate(_tensor(randn(*shape, seed=1213 + index)), axes, dilation)
        answers.append([list(out.shape), out.numpy()])
    ignored = ndl.dilate(_tensor(randn(2, 3, seed=1217)), (1, 2), 1)  # axis 2 does not exist
    return answers + [[list(ignored.shape), ignored.numpy()]]


@probe("new_ops")
def dilate_backward():
    import needle as ndl

    x = _tensor(randn(2, 3, 2, 2, seed=1218))
    out = ndl.dilate(x, (1, 2), 2)
    _backward(out, 1219)
    return x.grad.numpy()


@probe("new_ops")
def undilate_forward_backward():
    import needle as ndl

    x = _tensor(randn(1, 6, 4, 3, seed=1220))
    out = ndl.undilate(x, (1, 2), 1)
    _backward(out, 1221)
    y = _tensor(randn(9, 2, seed=1222))
    return [out.numpy(), x.grad.numpy(), ndl.undilate(y, (0,), 2).numpy()]


# --- conv_forward / conv_backward -----------------------------------------------------------

# (N, H, W, C_in, C_out, K, stride, padding)
_CONV_CASES = {
    "k3_s1_p1": (2, 6, 5, 3, 2, 3, 1, 1),
    "k2_s2_p0": (1, 7, 7, 2, 3, 2, 2, 0),
    "k5_s1_p2": (1, 7, 6, 2, 2, 5, 1, 2),
    "k1_s1_p0": (3, 4, 4, 5, 3, 1, 1, 0),
    "k3_s3_p2": (2, 10, 9, 2, 4, 3, 3, 2),
}


def _conv_op(name, seed):
    import needle as ndl

    n, h, w, c_in, c_out, k, stride, padding = _CONV_CASES[name]
    x = _tensor(randn(n, h, w, c_in, seed=seed))
    weight = _tensor(randn(k, k, c_in, c_out, seed=seed + 1))
    return x, weight, ndl.conv(x, weight, stride=stride, padding=padding)


def _conv_forward_answer(name, seed):
    _, _, out = _conv_op(name, seed)
    return [list(out.shape), out.numpy()]


def _conv_backward_answer(name, seed):
    x, weight, out = _conv_op(name, seed)
    _backward(out, seed + 2)
    return [x.grad.numpy(), weight.grad.numpy()]


@probe("conv_forward", rtol=1e-4, atol=1e-4)
def op_conv_forward_stride_1():
    return [_conv_forward_answer(name, 1301) for name in ("k3_s1_p1", "k5_s1_p2", "k1_s1_p0")]


@probe("conv_forward", rtol=1e-4, atol=1e-4)
def op_conv_forward_strided():
    return [_conv_forward_answer(name, 1302) for name in ("k2_s2_p0", "k3_s3_p2")]


@probe("conv_forward", rtol=1e-4, atol=1e-4)
def op_conv_forward_helper_default_padding():
    import needle as ndl

    x = _tensor(randn(1, 4, 5, 2, seed=1303))
    out = ndl.conv(x, _tensor(randn(3, 3, 2, 2, seed=1304)))
    return [list(out.shape), out.numpy()]


def _nn_conv(c_in, c_out, k, stride, bias, seed):
    import needle as ndl

    variant_seed(seed)
    return ndl.nn.Conv(c_in, c_out, k, stride=stride, bias=bias, device=_device())


@probe("conv_forward", rtol=1e-5, atol=1e-6)
def nn_conv_parameters():
    conv = _nn_conv(4, 3, 3, 1, True, 1305)
    plain = _nn_conv(2, 5, 5, 2, False, 1306)
    return [
        list(conv.weight.shape),
        conv.weight.numpy(),
        conv.bias.numpy(),
        len(conv.parameters()),
        list(plain.weight.shape),
        len(plain.parameters()),
    ]


@probe("conv_forward", rtol=1e-4, atol=1e-4)
def nn_conv_forward():
    answers = []
    for index, (c_in, c_out, k, stride, bias, h, w) in enumerate(
        [(3, 4, 3, 1, True, 6, 6), (2, 3, 5, 2, True, 9, 8), (4, 2, 1, 1, False, 5, 5)]
    ):
        conv = _nn_conv(c_in, c_out, k, stride, bias, 1307 + index)
        out = conv(_tensor(randn(2, c_in, h, w, seed=1310 + index)))
        answers.append([list(out.shape), out.numpy()])
    return answers + [_on_device(out)]


@probe("conv_backward", rtol=1e-4, atol=1e-4)
def op_conv_backward_stride_1():
    return [_conv_backward_answer(name, 1401) for name in ("k3_s1_p1", "k5_s1_p2", "k1_s1_p0")]


@probe("conv_backward", rtol=1e-4, atol=1e-4)
def op_conv_backward_strided():
    return [_conv_backward_answer(name, 1402) for name in ("k2_s2_p0", "k3_s3_p2")]


@probe("conv_backward", rtol=1e-4, atol=1e-4)
def op_conv_backward_two_layers():
    import needle as ndl

    x = _tensor(randn(1, 6, 6, 2, seed=1403))
    w1, w2 = _tensor(randn(3, 3, 2, 3, seed=1404)), _tensor(randn(3, 3, 3, 2, seed=1405))
    out = ndl.conv(ndl.conv(x, w1, stride=2, padding=1), w2, stride=1, padding=1)
    _backward(out, 1406)
    return [x.grad.numpy(), w1.grad.numpy(), w2.grad.numpy()]


@probe("conv_backward", rtol=1e-4, atol=1e-4)
def nn_conv_backward():
    answers = []
    for index, (c_in, c_out, k, stride, h) in enumerate([(3, 2, 3, 1, 5), (2, 4, 3, 2, 7)]):
        conv = _nn_conv(c_in, c_out, k, stride, True, 1407 + index)
        x = _tensor(randn(2, c_in, h, h, seed=1409 + index))
        _backward(conv(x), 1411 + index)
        answers.append([x.grad.numpy(), conv.weight.grad.numpy(), conv.bias.grad.numpy()])
    return answers


# --- resnet9 --------------------------------------------------------------------------------


def _resnet9(seed):
    import models

    variant_seed(seed)
    return models.ResNet9(device=_device(), dtype="float32")


@probe("resnet9")
def resnet9_parameter_count():
    import math

    model = _resnet9(1501)
    return [sum(math.prod(p.shape) for p in model.parameters()), len(model.parameters())]


@probe("resnet9", rtol=1e-4, atol=1e-4)
def resnet9_logits():
    model = _resnet9(1502)
    out = model(_tensor(rand(3, 3, 32, 32, seed=1503)))
    return [list(out.shape), out.numpy()]


@probe("resnet9", rtol=1e-3, atol=1e-4)
def resnet9_gradients():
    import needle as ndl
    import numpy as np

    model = _resnet9(1504)
    logits = model(_tensor(rand(2, 3, 32, 32, seed=1505)))
    labels = _tensor(np.array([3, 8], dtype="float32"), requires_grad=False)
    ndl.nn.SoftmaxLoss()(logits, labels).backward()
    params = model.parameters()
    return [params[0].grad.numpy()[:, :, 0, :4], params[-2].grad.numpy()[:8]]


def _image_loader(count, batch, seed, shape=(3, 32, 32)):
    import needle as ndl
    import numpy as np

    images = rand(count, *shape, seed=seed)
    labels = randint(count, seed=seed + 1, low=0, high=10).astype(np.float32)
    dataset = ndl.data.NDArrayDataset(images, labels)
    return ndl.data.DataLoader(dataset, batch_size=batch, shuffle=False, device=_device())


@probe("resnet9", **TRAINING)
def resnet9_train_cifar10_two_epochs():
    import needle as ndl
    import simple_ml

    model = _resnet9(1506)
    loader = _image_loader(10, 4, 1507)
    result = simple_ml.train_cifar10(
        model, loader, n_epochs=2, optimizer=ndl.optim.Adam, lr=0.01, weight_decay=0.001
    )
    return [list(map(float, result)), model.parameters()[-1].numpy(), bool(model.training)]


@probe("resnet9", **TRAINING)
def resnet9_evaluate_cifar10():
    import simple_ml

    model = _resnet9(1508)
    result = simple_ml.evaluate_cifar10(model, _image_loader(6, 4, 1509))
    return [list(map(float, result)), bool(model.training)]


@probe("resnet9", **TRAINING)
def epoch_general_cifar10_with_sgd():
    import needle as ndl
    import simple_ml

    variant_seed(1510)
    model = ndl.nn.Sequential(ndl.nn.Flatten(), ndl.nn.Linear(3 * 5 * 5, 10, device=_device()))
    loader = _image_loader(9, 4, 1511, shape=(3, 5, 5))
    opt = ndl.optim.SGD(model.parameters(), lr=0.1)
    result = simple_ml.epoch_general_cifar10(loader, model, ndl.nn.SoftmaxLoss(), opt)
    return [list(map(float, result)), model.parameters()[0].numpy()[:5]]


# --- rnn ------------------------------------------------------------------------------------


@probe("rnn", rtol=1e-5, atol=1e-6)
def rnn_activation_modules():
    import needle as ndl

    x = _tensor(randn(3, 4, seed=1601, scale=3.0))
    return [ndl.nn.Tanh()(x).numpy(), ndl.nn.Sigmoid()(x).numpy()]


def _seeded(cls, seed, *args, **kwargs):

    variant_seed(seed)
    return cls(*args, device=_device(), **kwargs)


@probe("rnn", rtol=1e-5, atol=1e-6)
def rnn_cell_parameters():
    import needle as ndl

    cell = _seeded(ndl.nn.RNNCell, 1602, 3, 5)
    return [cell.W_ih.numpy(), cell.W_hh.numpy(), cell.bias_ih.numpy(), cell.bias_hh.numpy()]


@probe("rnn", rtol=1e-4, atol=1e-5)
def rnn_cell_forward_backward():
    import needle as ndl

    answers = []
    for index, (bias, nonlinearity, with_state) in enumerate(
        [(True, "tanh", True), (False, "relu", True), (True, "relu", False)]
    ):
        cell = _seeded(ndl.nn.RNNCell, 1603 + index, 4, 3, bias=bias, nonlinearity=nonlinearity)
        x = _tensor(randn(5, 4, seed=1606 + index))
        h0 = _tensor(randn(5, 3, seed=1609 + index)) if with_state else None
        h = cell(x, h0)
        _backward(h, 1612 + index)
        answers.append([h.numpy(), cell.W_ih.grad.numpy(), cell.W_hh.grad.numpy(), x.grad.numpy()])
    return answers


@probe("rnn", rtol=1e-4, atol=1e-5)
def rnn_multi_layer():
    import needle as ndl

    model = _seeded(ndl.nn.RNN, 1615, 3, 4, num_layers=2)
    x = _tensor(randn(6, 2, 3, seed=1616))
    h0 = _tensor(randn(2, 2, 4, seed=1617))
    output, h_n = model(x, h0)
    _backward(output, 1618)
    first, top = model.rnn_cells[0], model.rnn_cells[1]
    return [
        output.numpy(),
        h_n.numpy(),
        first.W_ih.grad.numpy(),
        top.W_hh.grad.numpy(),
        x.grad.numpy(),
        h0.grad.numpy(),
    ]


@probe("rnn", rtol=1e-4, atol=1e-5)
def rnn_three_layers_relu_no_state():
    import needle as ndl

    model = _seeded(ndl.nn.RNN, 1619, 2, 3, num_layers=3, nonlinearity="relu", bias=False)
    output, h_n = model(_tensor(randn(4, 3, 2, seed=1620)))
    return [output.numpy(), h_n.numpy(), len(model.parameters())]


# --- lstm -----------------------------------------------------------------------------------


@probe("lstm", rtol=1e-5, atol=1e-6)
def lstm_cell_parameters():
    import needle as ndl

    cell = _seeded(ndl.nn.LSTMCell, 1701, 2, 3)
    return [cell.W_ih.numpy(), cell.W_hh.numpy(), cell.bias_ih.numpy(), cell.bias_hh.numpy()]


@probe("lstm", rtol=1e-4, atol=1e-5)
def lstm_cell_forward_backward():
    import needle as ndl

    answers = []
    for index, (bias, with_state) in enumerate([(True, True), (False, True), (True, False)]):
        cell = _seeded(ndl.nn.LSTMCell, 1702 + index, 3, 4, bias=bias)
        x = _tensor(randn(2, 3, seed=1705 + index))
        state = None
        if with_state:
            state = (_tensor(randn(2, 4, seed=1708 + index)), _tensor(randn(2, 4, seed=1711)))
        h, c = cell(x, state)
        _backward(h + c, 1712 + index)
        answers.append([h.numpy(), c.numpy(), cell.W_ih.grad.numpy(), x.grad.numpy()])
    return answers


@probe("lstm", rtol=1e-4, atol=1e-5)
def lstm_multi_layer():
    import needle as ndl

    model = _seeded(ndl.nn.LSTM, 1715, 2, 3, num_layers=2)
    x = _tensor(randn(5, 3, 2, seed=1716))
    h0, c0 = _tensor(randn(2, 3, 3, seed=1717)), _tensor(randn(2, 3, 3, seed=1718))
    output, (h_n, c_n) = model(x, (h0, c0))
    _backward(output, 1719)
    return [
        output.numpy(),
        h_n.numpy(),
        c_n.numpy(),
        model.lstm_cells[0].W_hh.grad.numpy(),
        model.lstm_cells[1].W_ih.grad.numpy(),
        x.grad.numpy(),
    ]


@probe("lstm", rtol=1e-4, atol=1e-5)
def lstm_three_layers_no_state():
    import needle as ndl

    model = _seeded(ndl.nn.LSTM, 1720, 3, 2, num_layers=3)
    output, (h_n, c_n) = model(_tensor(randn(3, 2, 3, seed=1721)))
    return [output.numpy(), h_n.numpy(), c_n.numpy(), len(model.lstm_cells)]


# --- ptb ------------------------------------------------------------------------------------

_TRAIN_TEXT = "we saw a cat\nthe cat saw N dogs\n\nno <unk> here at all\nwe saw the end\n"
_TEST_TEXT = "a new word appears\nthe cat\n"


def _ptb_folder():
    import os
    import tempfile

    folder = tempfile.mkdtemp(prefix="ptb-")
    for name, text in (("train.txt", _TRAIN_TEXT), ("test.txt", _TEST_TEXT)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as stream:
            stream.write(text)
    return folder


def _ids(stream):
    """A stream of word ids as an int64 array (a list or an array are both fine)."""
    import numpy as np

    return np.asarray(stream, dtype="int64")


@probe("ptb")
def ptb_dictionary():
    import needle as ndl

    dictionary = ndl.data.Dictionary()
    ids = [dictionary.add_word(w) for w in "b a b c a d <eos> c".split()]
    pairs = sorted((str(w), int(i)) for w, i in dictionary.word2idx.items())
    return [_ids(ids), len(dictionary), list(dictionary.idx2word), pairs]


@probe("ptb")
def ptb_corpus():
    import needle as ndl

    corpus = ndl.data.Corpus(_ptb_folder())
    limited = ndl.data.Corpus(_ptb_folder(), max_lines=2)
    return [
        _ids(corpus.train),
        _ids(corpus.test),
        len(corpus.dictionary),
        list(corpus.dictionary.idx2word),
        _ids(limited.train),
        _ids(limited.test),
    ]


@probe("ptb")
def ptb_corpus_embedded_text():
    import warnings

    import needle as ndl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = ndl.data.Corpus(ndl.data.ptb_dir(), max_lines=120)
    return [len(corpus.train), len(corpus.test), len(corpus.dictionary), _ids(corpus.test)[-40:]]


@probe("ptb")
def ptb_batchify():
    import needle as ndl
    import numpy as np

    data = list(randint(23, seed=1801, low=0, high=40))
    answers = []
    for batch_size in (1, 3, 5, 23):
        out = ndl.data.batchify(data, batch_size, device=_device(), dtype="float32")
        answers.append([list(np.shape(out)), np.asarray(out).astype("int64")])
    return answers


@probe("ptb")
def ptb_get_batch():
    import needle as ndl
    import numpy as np

    batches = np.arange(36).reshape(9, 4)
    answers = []
    for i, bptt in ((0, 3), (2, 5), (6, 4), (7, 1)):
        data, target = ndl.data.get_batch(batches, i, bptt, device=_device(), dtype="float32")
        answers.append(
            [list(data.shape), data.numpy(), list(target.shape), target.numpy()]
            + _on_device(data)
            + _on_device(target)
        )
    return answers


# --- language_model -------------------------------------------------------------------------


@probe("language_model", rtol=1e-5, atol=1e-6)
def embedding_forward_backward():
    import needle as ndl
    import numpy as np

    embedding = _seeded(ndl.nn.Embedding, 1901, 7, 3)
    ids = np.array([[6, 0], [2, 6], [2, 2]], dtype="float32")
    out = embedding(_tensor(ids, requires_grad=False))
    _backward(out, 1902)
    return [embedding.weight.numpy(), list(out.shape), out.numpy(), embedding.weight.grad.numpy()]


def _language_model(seq_model, seed, vocab=11, layers=2):
    import models

    variant_seed(seed)
    return models.LanguageModel(
        5, vocab, 4, num_layers=layers, seq_model=seq_model, device=_device(), dtype="float32"
    )


def _state_answer(h):
    if isinstance(h, (tuple, list)):
        return [t.numpy() for t in h]
    return [h.numpy()]


@probe("language_model", rtol=1e-4, atol=1e-5)
def language_model_rnn_logits():
    import numpy as np

    model = _language_model("rnn", 1903)
    ids = np.array([[1, 10, 3], [4, 4, 0]], dtype="float32")
    logits, h = model(_tensor(ids, requires_grad=False))
    return [list(logits.shape), logits.numpy(), _state_answer(h)]


@probe("language_model", rtol=1e-4, atol=1e-5)
def language_model_lstm_logits_with_state():
    import numpy as np

    model = _language_model("lstm", 1904, layers=1)
    ids = np.array([[5, 2], [9, 9], [0, 7]], dtype="float32")
    logits, h = model(_tensor(ids, requires_grad=False))
    state = tuple(t.detach() for t in h)
    logits2, h2 = model(_tensor(ids[::-1].copy(), requires_grad=False), state)
    return [logits.numpy(), logits2.numpy(), _state_answer(h2)]


@probe("language_model")
def language_model_every_parameter_learns():
    import numpy as np

    answers = []
    for seq_model in ("rnn", "lstm"):
        model = _language_model(seq_model, 1905)
        ids = np.array([[1, 2], [3, 4]], dtype="float32")
        logits, _ = model(_tensor(ids, requires_grad=False))
        logits.sum().backward()
        answers.append([[list(p.shape), p.grad is not None] for p in model.parameters()])
    return answers


def _tiny_ptb():
    import warnings

    import needle as ndl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corpus = ndl.data.Corpus(ndl.data.ptb_dir(), max_lines=6)
    return corpus


@probe("language_model", **TRAINING)
def language_model_train_ptb():
    import needle as ndl
    import simple_ml

    corpus = _tiny_ptb()
    data = ndl.data.batchify(corpus.train, 3, device=_device(), dtype="float32")
    model = _language_model("rnn", 1906, vocab=len(corpus.dictionary))
    result = simple_ml.train_ptb(
        model, data, seq_len=5, n_epochs=2, optimizer=ndl.optim.SGD, lr=0.5, device=_device()
    )
    evaluation = simple_ml.evaluate_ptb(model, data, seq_len=7, device=_device())
    return [list(map(float, result)), list(map(float, evaluation)), bool(model.training)]


@probe("language_model", **TRAINING)
def language_model_train_ptb_lstm_adam_clip():
    import needle as ndl
    import simple_ml

    corpus = _tiny_ptb()
    data = ndl.data.batchify(corpus.test, 2, device=_device(), dtype="float32")
    model = _language_model("lstm", 1907, vocab=len(corpus.dictionary), layers=1)
    result = simple_ml.train_ptb(
        model,
        data,
        seq_len=6,
        n_epochs=1,
        optimizer=ndl.optim.Adam,
        lr=0.01,
        clip=0.5,
        device=_device(),
    )
    return [list(map(float, result)), model.parameters()[-1].numpy()[:, :6]]
