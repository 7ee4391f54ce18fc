"""Hidden probes of hw2 (the neural-network library, on the numpy backend).

One unit per grading unit (docs/course.md#grading-units). Modules and initialisers draw from
numpy's global generator, as the course specifies, so probes call ``variant_seed(K)`` right before
constructing them; data inputs come from the kit's own seeded generators. Gradients are
those of ``backward()`` on a weighted sum of the output (random, seeded weights), so a wrong
gradient anywhere in a module shows.
"""

from typing import Any

from autograder.engine.kit import probe, rand, randint, randn
from autograder.engine.kit import seed as variant_seed

SEARCH_PATH = ["", "apps"]
GRAD: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-5}


def _t(array, requires_grad=True):
    import needle as ndl

    return ndl.Tensor(array, requires_grad=requires_grad)


def _backward(out, seed):
    """Backpropagate ``sum(out * W)`` for a seeded random ``W`` of ``out``'s shape."""
    import needle as ndl

    weights = ndl.Tensor(randn(*out.shape, seed=seed), requires_grad=False)
    (out * weights).sum().backward()


def _module_io(module, x_array, seed):
    """Forward value, input gradient and parameter gradients of ``module`` on ``x``."""
    x = _t(x_array)
    out = module(x)
    _backward(out, seed)
    return {
        "out": out.numpy(),
        "x_grad": x.grad.numpy(),
        "param_grads": [p.grad.numpy() for p in module.parameters()],
    }


# --- init -----------------------------------------------------------------------------------


@probe("init", rtol=1e-4, atol=1e-5)
def init_kaiming():
    import needle as ndl

    variant_seed(101)
    uniform = ndl.init.kaiming_uniform(6, 9).numpy()
    normal = ndl.init.kaiming_normal(7, 3).numpy()
    return [uniform, normal]


@probe("init", rtol=1e-4, atol=1e-5)
def init_xavier():
    import needle as ndl

    variant_seed(102)
    uniform = ndl.init.xavier_uniform(4, 10, gain=1.5).numpy()
    normal = ndl.init.xavier_normal(5, 2, gain=0.7).numpy()
    return [uniform, normal]


# --- modules --------------------------------------------------------------------------------


@probe("nn_linear", **GRAD)
def nn_linear_parameters_and_forward():
    import needle.nn as nn

    variant_seed(201)
    layer = nn.Linear(6, 4)
    return [layer.weight.numpy(), layer.bias.numpy(), _module_io(layer, randn(5, 6, seed=202), 203)]


@probe("nn_linear", **GRAD)
def nn_linear_batched_input_without_bias():
    import needle.nn as nn

    variant_seed(204)
    layer = nn.Linear(3, 5, bias=False)
    return [len(layer.parameters()), _module_io(layer, randn(2, 4, 3, seed=205), 206)]


@probe("nn_relu", **GRAD)
def nn_relu_forward_backward():
    import needle.nn as nn

    x = randn(4, 7, seed=301)
    x[0, :3] = 0.0
    return _module_io(nn.ReLU(), x, 302)


@probe("nn_sequential", **GRAD)
def nn_sequential_mlp():
    import needle.nn as nn

    variant_seed(401)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    return _module_io(model, randn(6, 5, seed=402), 403)


@probe("nn_sequential", **GRAD)
def nn_sequential_empty_and_nested():
    import needle.nn as nn

    variant_seed(404)
    model = nn.Sequential(nn.Sequential(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    return _module_io(model, randn(3, 4, seed=405), 406)


@probe("op_logsumexp", **GRAD)
def op_logsumexp_axes():
    import needle as ndl

    x = randn(3, 4, 5, seed=501, scale=3.0)
    cases = []
    for axes in (None, (1,), (0, 2), (2,)):
        t = _t(x)
        out = ndl.logsumexp(t, axes=axes)
        _backward(out, 502)
        cases.append([out.numpy(), t.grad.numpy()])
    return cases


@probe("op_logsumexp", **GRAD)
def op_logsumexp_large_values():
    import needle as ndl

    x = randn(4, 6, seed=503, scale=1e4)
    x[1] = -1e4
    t = _t(x)
    out = ndl.logsumexp(t, axes=(1,))
    _backward(out, 504)
    return [out.numpy(), t.grad.numpy()]


@probe("op_logsoftmax", **GRAD)
def op_logsoftmax_forward_backward():
    import needle as ndl

    cases = []
    for seed, scale in ((601, 1.0), (602, 1e4)):
        t = _t(randn(5, 7, seed=seed, scale=scale))
        out = ndl.logsoftmax(t)
        _backward(out, seed + 10)
        cases.append([out.numpy(), t.grad.numpy()])
    return cases


@probe("nn_softmax_loss", **GRAD)
def nn_softmax_loss_value_and_gradient():
    import needle as ndl
    import needle.nn as nn
    import numpy as np

    cases = []
    for seed, batch, classes in ((701, 8, 5), (702, 3, 10)):
        logits = _t(randn(batch, classes, seed=seed, scale=2.0))
        labels = ndl.Tensor(randint(batch, seed=seed + 5, low=0, high=classes), requires_grad=False)
        loss = nn.SoftmaxLoss()(logits, labels)
        loss.backward()
        cases.append([np.asarray(loss.numpy()).reshape(()), logits.grad.numpy()])
    return cases


@probe("nn_layernorm", **GRAD)
def nn_layernorm_forward_backward():
    import needle.nn as nn

    norm = nn.LayerNorm1d(6, eps=1e-5)
    x = randn(4, 6, seed=801, scale=3.0) + 2.0
    return _module_io(norm, x, 802)


@probe("nn_layernorm", **GRAD)
def nn_layernorm_trained_affine():
    import needle as ndl
    import needle.nn as nn

    norm = nn.LayerNorm1d(3)
    norm.weight = nn.Parameter(ndl.Tensor(rand(3, seed=803, low=0.5, high=2.0)))
    norm.bias = nn.Parameter(ndl.Tensor(randn(3, seed=804)))
    return _module_io(norm, randn(5, 3, seed=805), 806)


@probe("nn_flatten", **GRAD)
def nn_flatten_shapes():
    import needle.nn as nn

    results = []
    for seed, shape in ((901, (2, 3, 4)), (902, (3, 1, 2, 5)), (903, (4, 6))):
        io = _module_io(nn.Flatten(), randn(*shape, seed=seed), seed + 10)
        results.append([list(io["out"].shape), io["out"], io["x_grad"]])
    return results


@probe("nn_batchnorm", **GRAD)
def nn_batchnorm_training_forward_backward():
    import needle.nn as nn

    norm = nn.BatchNorm1d(5, momentum=0.2)
    io = _module_io(norm, randn(6, 5, seed=1001, scale=2.0) + 1.0, 1002)
    return [io, norm.running_mean.numpy(), norm.running_var.numpy()]


@probe("nn_batchnorm", **GRAD)
def nn_batchnorm_running_statistics_and_eval():
    import needle.nn as nn

    norm = nn.BatchNorm1d(4)
    for step in range(4):
        norm(_t(randn(8, 4, seed=1003 + step, scale=1.5) - 0.5))
    stats = [norm.running_mean.numpy(), norm.running_var.numpy()]
    norm.eval()
    return [stats, _module_io(norm, randn(3, 4, seed=1010), 1011)]


@probe("nn_batchnorm")
def nn_batchnorm_eval_switch_reaches_nested_modules():
    import needle.nn as nn

    inner = nn.BatchNorm1d(3)
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(inner), nn.ReLU())
    model.eval()
    flags = [inner.training, model.training]
    model.train()
    return flags + [inner.training]


@probe("nn_dropout", **GRAD)
def nn_dropout_training_mask():
    import needle.nn as nn

    x = rand(6, 8, seed=1101, low=0.5, high=1.5)
    variant_seed(1102)
    return _module_io(nn.Dropout(p=0.4), x, 1103)


@probe("nn_dropout", **GRAD)
def nn_dropout_eval_is_identity():
    import needle.nn as nn

    dropout = nn.Dropout(p=0.7)
    dropout.eval()
    return _module_io(dropout, randn(3, 5, seed=1104), 1105)


@probe("nn_residual", **GRAD)
def nn_residual_forward_backward():
    import needle.nn as nn

    variant_seed(1201)
    block = nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    return _module_io(block, randn(5, 4, seed=1202), 1203)


# --- optimizers -----------------------------------------------------------------------------


def _train(make_optimizer, seed, steps=6, norm=None):
    """Train Linear-ReLU-[norm]-Linear on seeded data; final loss, weights and whether the
    optimizer left ``.grad`` untouched."""
    import needle as ndl
    import needle.nn as nn
    import numpy as np

    variant_seed(seed)
    layers = [nn.Linear(6, 10), nn.ReLU()]
    if norm is not None:
        layers.append(norm(10))
    model = nn.Sequential(*layers, nn.Linear(10, 3))
    optimizer = make_optimizer(model.parameters())
    X = randn(32, 6, seed=seed + 1)
    y = randint(32, seed=seed + 2, low=0, high=3)
    loss_fn = nn.SoftmaxLoss()
    losses, grads_kept = [], []
    for step in range(steps):
        batch = slice(8 * (step % 4), 8 * (step % 4) + 8)
        optimizer.reset_grad()
        loss = loss_fn(model(ndl.Tensor(X[batch])), ndl.Tensor(y[batch], requires_grad=False))
        loss.backward()
        before = model.parameters()[0].grad.numpy().copy()
        optimizer.step()
        grads_kept.append(bool(np.array_equal(before, model.parameters()[0].grad.numpy())))
        losses.append(float(loss.numpy()))
    weights = [p.numpy() for p in model.parameters()]
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    return {"losses": losses, "weights": weights, "grad_kept": all(grads_kept), "dtypes": dtypes}


@probe("optim_sgd", **GRAD)
def optim_sgd_plain_and_momentum():
    import needle as ndl

    return [
        _train(lambda params: ndl.optim.SGD(params, lr=0.1), 1301),
        _train(lambda params: ndl.optim.SGD(params, lr=0.05, momentum=0.9), 1302),
    ]


@probe("optim_sgd", **GRAD)
def optim_sgd_weight_decay_with_layernorm():
    import needle as ndl
    import needle.nn as nn

    make = lambda params: ndl.optim.SGD(params, lr=0.1, momentum=0.5, weight_decay=0.01)  # noqa: E731
    return _train(make, 1303, norm=nn.LayerNorm1d)


@probe("optim_adam", **GRAD)
def optim_adam_plain_and_weight_decay():
    import needle as ndl

    return [
        _train(lambda params: ndl.optim.Adam(params, lr=0.01), 1401),
        _train(lambda params: ndl.optim.Adam(params, lr=0.02, weight_decay=0.01), 1402),
    ]


@probe("optim_adam", **GRAD)
def optim_adam_betas_with_batchnorm():
    import needle as ndl
    import needle.nn as nn

    make = lambda params: ndl.optim.Adam(params, lr=0.005, beta1=0.8, beta2=0.99, eps=1e-6)  # noqa: E731
    return _train(make, 1403, steps=8, norm=nn.BatchNorm1d)


def _live_tensors_grow(make_optimizer, seed, steps=12):
    """Whether optimizer steps keep graphs alive: live needle tensors (the course's
    ``TENSOR_COUNTER``) after ``steps`` more steps, compared with the count after 3 warm-up
    steps. A step that updates with ``p.grad`` instead of its detached data (``.data``,
    ``detach()``) chains every step's backward graph into the optimizer's state."""
    import gc

    import needle as ndl
    import needle.nn as nn

    variant_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 4))
    optimizer = make_optimizer(model.parameters())
    X = randn(9, 5, seed=seed + 1)
    y = randint(9, seed=seed + 2, low=0, high=4)
    loss_fn = nn.SoftmaxLoss()

    def step():
        optimizer.reset_grad()
        loss_fn(model(ndl.Tensor(X)), ndl.Tensor(y, requires_grad=False)).backward()
        optimizer.step()

    for _ in range(3):
        step()
    gc.collect()
    live = ndl.autograd.TENSOR_COUNTER
    for _ in range(steps):
        step()
    gc.collect()
    grows = ndl.autograd.TENSOR_COUNTER - live >= steps
    # A string, not a bool: the engine compares 0-d bools as always equal (see the report).
    return "live tensors grow with the steps" if grows else "flat"


@probe("optim_sgd")
def optim_sgd_builds_no_graph_across_steps():
    import needle as ndl

    make = lambda params: ndl.optim.SGD(params, lr=0.05, momentum=0.8, weight_decay=0.001)  # noqa: E731
    return _live_tensors_grow(make, 1304)


@probe("optim_adam")
def optim_adam_builds_no_graph_across_steps():
    import needle as ndl

    make = lambda params: ndl.optim.Adam(params, lr=0.003, weight_decay=0.001)  # noqa: E731
    return _live_tensors_grow(make, 1404)


# --- data -----------------------------------------------------------------------------------


@probe("flip_horizontal")
def flip_horizontal_seeded():
    import needle as ndl

    flip = ndl.data.RandomFlipHorizontal(p=0.5)
    variant_seed(1501)
    images = [randn(4, 5, 3, seed=1502 + i) for i in range(8)]
    return [flip(image) for image in images]


@probe("flip_horizontal")
def flip_horizontal_always_and_never():
    import needle as ndl

    image = randn(3, 6, 2, seed=1510)
    return [
        ndl.data.RandomFlipHorizontal(p=1.0)(image),
        ndl.data.RandomFlipHorizontal(p=0.0)(image),
    ]


@probe("random_crop")
def random_crop_seeded():
    import needle as ndl

    results = []
    variant_seed(1601)
    for i, padding in enumerate((1, 2, 3, 4)):
        crop = ndl.data.RandomCrop(padding=padding)
        results.append(crop(randn(6, 7, 2, seed=1602 + i)))
    return results


def _mnist_files(count: int, seed: int) -> tuple[str, str]:
    import gzip
    import struct

    pixels = randint(count, 28, 28, seed=seed, low=0, high=256, dtype="uint8")
    labels = randint(count, seed=seed + 1, low=0, high=10, dtype="uint8")
    images_path, labels_path = f"/tmp/images-{seed}.gz", f"/tmp/labels-{seed}.gz"
    with gzip.open(images_path, "wb") as stream:
        stream.write(struct.pack(">4I", 2051, count, 28, 28) + pixels.tobytes())
    with gzip.open(labels_path, "wb") as stream:
        stream.write(struct.pack(">2I", 2049, count) + labels.tobytes())
    return images_path, labels_path


@probe("mnist_dataset", rtol=1e-6)
def mnist_dataset_items_and_slices():
    import needle as ndl

    dataset = ndl.data.MNISTDataset(*_mnist_files(12, seed=1701))
    image, label = dataset[5]
    images, labels = dataset[2:6]
    return [len(dataset), image, int(label), images, labels]


@probe("mnist_dataset", rtol=1e-6)
def mnist_dataset_with_transforms():
    import needle as ndl

    transforms = [ndl.data.RandomCrop(3), ndl.data.RandomFlipHorizontal(0.6)]
    dataset = ndl.data.MNISTDataset(*_mnist_files(6, seed=1702), transforms=transforms)
    variant_seed(1703)
    return [dataset[i][0] for i in range(6)]


@probe("dataloader")
def dataloader_in_order():
    import needle as ndl

    X, y = randn(10, 3, seed=1801), randint(10, seed=1802, low=0, high=4)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), batch_size=4)
    return [[batch.numpy() for batch in pair] for pair in loader]


@probe("dataloader")
def dataloader_shuffled_epochs():
    import needle as ndl
    import numpy as np

    X = np.arange(14, dtype=np.float32).reshape(7, 2)
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X), batch_size=3, shuffle=True)
    variant_seed(1803)
    first = [pair[0].numpy() for pair in loader]
    second = [pair[0].numpy() for pair in loader]
    return [first, second]


# --- MLPResNet ------------------------------------------------------------------------------


def _parameter_count(model):
    import numpy as np

    return int(sum(np.prod(p.shape) for p in model.parameters()))


@probe("mlp_resnet", **GRAD)
def mlp_resnet_residual_block():
    import needle.nn as nn
    from mlp_resnet import ResidualBlock

    variant_seed(1901)
    block = ResidualBlock(8, 5, norm=nn.LayerNorm1d, drop_prob=0.0)
    return [_parameter_count(block), _module_io(block, randn(4, 8, seed=1902), 1903)]


@probe("mlp_resnet", **GRAD)
def mlp_resnet_model_in_eval_mode():
    from mlp_resnet import MLPResNet

    variant_seed(1904)
    model = MLPResNet(12, hidden_dim=10, num_blocks=2, num_classes=4, drop_prob=0.3)
    model.eval()
    return [_parameter_count(model), _module_io(model, randn(3, 12, seed=1905), 1906)]


@probe("mlp_resnet", rtol=1e-4, atol=1e-5)
def mlp_resnet_epoch_train_then_eval():
    import needle as ndl
    from mlp_resnet import MLPResNet, epoch

    variant_seed(1907)
    model = MLPResNet(16, hidden_dim=8, num_blocks=1, num_classes=3)
    X = randn(40, 4, 4, 1, seed=1908)
    y = randint(40, seed=1909, low=0, high=3, dtype="uint8")
    loader = ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), batch_size=10, shuffle=True)
    optimizer = ndl.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    model.eval()  # epoch() must put the model back into training mode itself
    trained = [float(v) for v in epoch(loader, model, optimizer)]
    model.train()  # ... and into eval mode without an optimizer
    evaluated = [float(v) for v in epoch(loader, model)]
    return [trained, evaluated, model.training]
