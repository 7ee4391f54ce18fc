"""Hidden probes of hw1 (automatic differentiation on the numpy backend).

Units and what their probes exercise (points in ``assignments/hw1/assignment.toml``):

- ``forward``: ``compute`` of every hw1 op on shapes and values the public tests do not use;
- ``backward``: each op's ``gradient`` alone (``op.gradient_as_tuple`` with a random adjoint,
  so Q2 does not depend on Q4), including broadcast batch dimensions of ``matmul``;
- ``topo_sort``: the exact order of ``find_topo_sort`` on graphs made of *provided* ops only;
- ``compute_gradient``: ``backward()`` through provided ops only (fan-out, shared nodes,
  constants, second-order gradients), so this unit does not depend on the student's ops;
- ``softmax_loss_ndl``: the loss value of ``apps/simple_ml.softmax_loss``;
- ``nn_epoch_ndl``: ``ReLU`` forward/backward and the weights after ``nn_epoch``.

Every probe imports the submission inside its body and builds its inputs from fixed seeds.
"""

from autograder.engine.kit import probe, rand, randint, randn

SEARCH_PATH = ["", "apps"]


def _tensor(array, requires_grad=True):
    import needle as ndl

    return ndl.Tensor(array, requires_grad=requires_grad)


def _gradients(op, inputs, seed):
    """The op's gradient (alone, not through backward) for a random seeded adjoint."""
    import needle as ndl

    tensors = [_tensor(x) for x in inputs]
    out = op(*tensors)
    adjoint = ndl.Tensor(randn(*out.shape, seed=seed), requires_grad=False)
    return [g.numpy() for g in out.op.gradient_as_tuple(adjoint, out)]


# --- forward ---------------------------------------------------------------------------------


@probe("forward")
def forward_power_scalar():
    import needle as ndl

    x = _tensor(rand(4, 3, seed=101, low=0.5, high=2.0))
    return [ndl.power_scalar(x, 3).numpy(), ndl.power_scalar(x, -1.5).numpy()]


@probe("forward")
def forward_ewise_pow():
    import needle as ndl

    a = _tensor(rand(3, 5, seed=102, low=0.5, high=2.0))
    b = _tensor(rand(3, 5, seed=103, low=-1.0, high=2.0))
    return ndl.power(a, b).numpy()


@probe("forward")
def forward_divide():
    import needle as ndl

    a = _tensor(randn(2, 3, 4, seed=104))
    b = _tensor(rand(2, 3, 4, seed=105, low=0.5, high=3.0))
    return ndl.divide(a, b).numpy()


@probe("forward")
def forward_divide_scalar():
    import needle as ndl

    return ndl.divide_scalar(_tensor(randn(5, 2, seed=106)), 2.5).numpy()


@probe("forward")
def forward_matmul_2d():
    import needle as ndl

    a, b = _tensor(randn(7, 4, seed=107)), _tensor(randn(4, 6, seed=108))
    return ndl.matmul(a, b).numpy()


@probe("forward")
def forward_matmul_batched():
    import needle as ndl

    a, b = _tensor(randn(3, 4, 5, seed=109)), _tensor(randn(3, 5, 2, seed=110))
    return ndl.matmul(a, b).numpy()


@probe("forward")
def forward_matmul_broadcast():
    import needle as ndl

    a3, b2 = _tensor(randn(2, 3, 4, seed=111)), _tensor(randn(4, 5, seed=112))
    a2, b3 = _tensor(randn(3, 4, seed=113)), _tensor(randn(2, 4, 6, seed=114))
    return [ndl.matmul(a3, b2).numpy(), ndl.matmul(a2, b3).numpy()]


@probe("forward")
def forward_summation():
    import needle as ndl

    x = _tensor(randn(3, 4, 5, seed=115))
    return [
        ndl.summation(x).numpy(),
        ndl.summation(x, axes=(1,)).numpy(),
        ndl.summation(x, axes=(0, 2)).numpy(),
    ]


@probe("forward")
def forward_broadcast_to():
    import needle as ndl

    return [
        ndl.broadcast_to(_tensor(randn(3, 1, seed=116)), (3, 4)).numpy(),
        ndl.broadcast_to(_tensor(randn(1, 4, seed=117)), (2, 3, 4)).numpy(),
        ndl.broadcast_to(_tensor(randn(1, seed=118)), (2, 2)).numpy(),
    ]


@probe("forward")
def forward_reshape():
    import needle as ndl

    x = _tensor(randn(2, 3, 4, seed=119))
    return [ndl.reshape(x, (4, 6)).numpy(), ndl.reshape(x, (24,)).numpy()]


@probe("forward")
def forward_negate():
    import needle as ndl

    return ndl.negate(_tensor(randn(3, 3, seed=120))).numpy()


@probe("forward")
def forward_transpose():
    import needle as ndl

    x = _tensor(randn(2, 3, 4, 5, seed=121))
    return [
        ndl.transpose(x).numpy(),
        ndl.transpose(x, axes=(0, 2)).numpy(),
        ndl.transpose(x, axes=(1, 3)).numpy(),
    ]


@probe("forward")
def forward_log_exp():
    import needle as ndl

    positive = _tensor(rand(4, 4, seed=122, low=0.1, high=5.0))
    x = _tensor(randn(4, 4, seed=123))
    return [ndl.log(positive).numpy(), ndl.exp(x).numpy()]


# --- backward (each op's gradient alone) ----------------------------------------------------


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_power_scalar():
    import needle as ndl

    return _gradients(
        lambda x: ndl.power_scalar(x, 2.5), [rand(3, 4, seed=201, low=0.5, high=2)], 202
    )


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_ewise_pow():
    import needle as ndl

    inputs = [rand(3, 2, seed=203, low=0.5, high=2), rand(3, 2, seed=204, low=-1, high=2)]
    return _gradients(ndl.power, inputs, 205)


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_divide():
    import needle as ndl

    inputs = [randn(4, 3, seed=206), rand(4, 3, seed=207, low=0.5, high=2)]
    return _gradients(ndl.divide, inputs, 208)


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_divide_scalar():
    import needle as ndl

    return _gradients(lambda x: ndl.divide_scalar(x, 3.5), [randn(2, 5, seed=209)], 210)


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_matmul_2d():
    import needle as ndl

    return _gradients(ndl.matmul, [randn(5, 3, seed=211), randn(3, 4, seed=212)], 213)


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_matmul_batched():
    import needle as ndl

    inputs = [randn(2, 3, 4, 5, seed=214), randn(2, 3, 5, 2, seed=215)]
    return _gradients(ndl.matmul, inputs, 216)


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_matmul_broadcast_batch():
    import needle as ndl

    left = _gradients(ndl.matmul, [randn(2, 3, 4, 5, seed=217), randn(5, 3, seed=218)], 219)
    right = _gradients(ndl.matmul, [randn(4, 3, seed=220), randn(2, 2, 3, 5, seed=221)], 222)
    return left + right


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_summation():
    import needle as ndl

    x = randn(3, 4, 2, seed=223)
    return [
        _gradients(lambda t: ndl.summation(t), [x], 224),
        _gradients(lambda t: ndl.summation(t, axes=(1,)), [x], 225),
        _gradients(lambda t: ndl.summation(t, axes=(0, 2)), [x], 226),
        _gradients(lambda t: ndl.summation(t, axes=(0, 1)), [randn(5, 4, 1, seed=227)], 228),
    ]


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_broadcast_to():
    import needle as ndl

    return [
        _gradients(lambda t: ndl.broadcast_to(t, (3, 4)), [randn(3, 1, seed=229)], 230),
        _gradients(lambda t: ndl.broadcast_to(t, (4, 3)), [randn(1, 3, seed=231)], 232),
        _gradients(lambda t: ndl.broadcast_to(t, (2, 3, 3)), [randn(1, seed=233)], 234),
        _gradients(lambda t: ndl.broadcast_to(t, (2, 3, 4)), [randn(3, 1, seed=235)], 236),
        _gradients(lambda t: ndl.broadcast_to(t, (6, 5, 3)), [randn(6, 5, 1, seed=237)], 238),
    ]


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_reshape_negate_transpose():
    import needle as ndl

    return [
        _gradients(lambda t: ndl.reshape(t, (3, 8)), [randn(2, 3, 4, seed=239)], 240),
        _gradients(ndl.negate, [randn(3, 5, seed=241)], 242),
        _gradients(lambda t: ndl.transpose(t, axes=(0, 2)), [randn(2, 3, 4, seed=243)], 244),
        _gradients(lambda t: ndl.transpose(t), [randn(2, 3, 4, seed=245)], 246),
    ]


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_log_exp():
    import needle as ndl

    return [
        _gradients(ndl.log, [rand(4, 3, seed=247, low=0.5, high=3)], 248),
        _gradients(ndl.exp, [randn(4, 3, seed=249)], 250),
    ]


@probe("backward", rtol=1e-4, atol=1e-5)
def backward_gradient_is_tensor_of_input_shape():
    """Gradients are needle Tensors shaped like the inputs (so they can be differentiated)."""
    import needle as ndl

    a, b = _tensor(randn(2, 3, 4, seed=251)), _tensor(randn(4, 5, seed=252))
    out = ndl.matmul(a, b)
    grads = out.op.gradient_as_tuple(ndl.Tensor(randn(2, 3, 5, seed=253)), out)
    return [[isinstance(g, ndl.Tensor), list(g.shape)] for g in grads]


# --- topological sort (provided ops only) --------------------------------------------------


def _labelled_graph(build):
    """Run ``build(leaf, label)``; return the labels of ``find_topo_sort`` of its output."""
    import needle as ndl

    labels = {}

    def label(tensor, name):
        labels[id(tensor)] = name
        return tensor

    def leaf(name, seed, shape=(2, 2)):
        return label(_tensor(randn(*shape, seed=seed)), name)

    output = build(leaf, label)
    order = ndl.autograd.find_topo_sort([output])
    return [labels.get(id(node), "?") for node in order]


@probe("topo_sort")
def topo_sort_chain():
    import needle as ndl

    def build(leaf, label):
        a = leaf("a", 301)
        b = label(ndl.mul_scalar(a, 2.0), "b")
        c = label(ndl.add_scalar(b, 1.0), "c")
        return label(ndl.multiply(c, a), "d")

    return _labelled_graph(build)


@probe("topo_sort")
def topo_sort_diamond():
    import needle as ndl

    def build(leaf, label):
        x, y = leaf("x", 302), leaf("y", 303)
        s = label(ndl.add(x, y), "s")
        p = label(ndl.multiply(x, y), "p")
        q = label(ndl.multiply(s, p), "q")
        return label(ndl.add(q, label(ndl.mul_scalar(s, 3.0), "t")), "out")

    return _labelled_graph(build)


@probe("topo_sort")
def topo_sort_shared_inputs():
    import needle as ndl

    def build(leaf, label):
        a, b, c = leaf("a", 304), leaf("b", 305), leaf("c", 306)
        u = label(ndl.add(b, a), "u")
        v = label(ndl.multiply(c, u), "v")
        w = label(ndl.add(u, c), "w")
        z = label(ndl.multiply(w, v), "z")
        return label(ndl.add(z, label(ndl.multiply(a, a), "aa")), "out")

    return _labelled_graph(build)


@probe("topo_sort")
def topo_sort_deep_chain():
    """2500 ops deep: deeper than Python's recursion limit, as in the public tests."""
    import needle as ndl

    def build(leaf, label):
        x = leaf("x0", 307)
        for i in range(1, 2500):
            x = label(ndl.add_scalar(x, 0.5) if i % 2 else ndl.mul_scalar(x, 0.9), f"x{i}")
        return x

    return _labelled_graph(build)


@probe("topo_sort")
def topo_sort_multiple_outputs():
    import needle as ndl

    labels = {}
    a = _tensor(randn(2, seed=308))
    b = _tensor(randn(2, seed=309))
    c = ndl.add(a, b)
    d = ndl.multiply(c, a)
    e = ndl.mul_scalar(b, 2.0)
    for tensor, name in ((a, "a"), (b, "b"), (c, "c"), (d, "d"), (e, "e")):
        labels[id(tensor)] = name
    order = ndl.autograd.find_topo_sort([d, e])
    return [labels.get(id(node), "?") for node in order]


# --- reverse-mode AD (provided ops only) ------------------------------------------------------


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_fan_out():
    import needle as ndl

    x = _tensor(randn(3, 2, seed=401))
    y = ndl.add(ndl.multiply(x, x), ndl.mul_scalar(x, 3.0))
    y.backward(ndl.Tensor(randn(3, 2, seed=402)))
    return x.grad.numpy()


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_diamond():
    import needle as ndl

    x, y = _tensor(randn(4, seed=403)), _tensor(randn(4, seed=404))
    a = ndl.multiply(x, y)
    b = ndl.add(a, x)
    c = ndl.multiply(b, a)
    c.backward(ndl.Tensor(randn(4, seed=405)))
    return [x.grad.numpy(), y.grad.numpy()]


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_repeated_use():
    import needle as ndl

    x, w = _tensor(randn(2, 3, seed=406)), _tensor(rand(2, 3, seed=407, low=0.2, high=0.9))
    z = x
    for _ in range(25):
        z = ndl.add(ndl.multiply(z, w), x)
    z.backward(ndl.Tensor(randn(2, 3, seed=408)))
    return [x.grad.numpy(), w.grad.numpy()]


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_constants():
    import needle as ndl

    x = _tensor(randn(3, seed=409))
    c = _tensor(randn(3, seed=410), requires_grad=False)
    y = ndl.add(ndl.multiply(x, c), ndl.add_scalar(c, 2.0))
    y.backward(ndl.Tensor(randn(3, seed=411)))
    return x.grad.numpy()


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_intermediate_nodes():
    import needle as ndl

    x = _tensor(randn(2, 2, seed=412))
    h = ndl.mul_scalar(x, 1.5)
    out = ndl.multiply(h, h)
    out.backward(ndl.Tensor(randn(2, 2, seed=413)))
    return [h.grad.numpy(), x.grad.numpy()]


@probe("compute_gradient", rtol=1e-4, atol=1e-5)
def compute_gradient_second_order():
    import needle as ndl

    x2, x3 = _tensor(randn(3, seed=414)), _tensor(randn(3, seed=415))
    y = ndl.add(ndl.multiply(x2, x2), ndl.multiply(x2, x3))
    y.backward()
    first = [x2.grad.numpy(), x3.grad.numpy()]
    grad_x2 = x2.grad
    grad_x2.backward(ndl.Tensor(randn(3, seed=416)))
    return first + [x2.grad.numpy(), x3.grad.numpy()]


# --- apps/simple_ml.py ------------------------------------------------------------------------


def _softmax_loss_value(batch, classes, seed, scale):
    import needle as ndl
    import numpy as np
    from simple_ml import softmax_loss

    logits = randn(batch, classes, seed=seed, scale=scale)
    labels = randint(batch, seed=seed + 1, low=0, high=classes)
    one_hot = np.eye(classes, dtype="float32")[labels]
    loss = softmax_loss(ndl.Tensor(logits), ndl.Tensor(one_hot))
    return np.asarray(loss.numpy(), dtype="float64").reshape(())


@probe("softmax_loss_ndl", rtol=1e-5, atol=1e-6)
def softmax_loss_zero_logits():
    import needle as ndl
    import numpy as np
    from simple_ml import softmax_loss

    one_hot = np.eye(7, dtype="float32")[randint(20, seed=501, low=0, high=7)]
    loss = softmax_loss(ndl.Tensor(np.zeros((20, 7), "float32")), ndl.Tensor(one_hot))
    return np.asarray(loss.numpy(), dtype="float64").reshape(())


@probe("softmax_loss_ndl", rtol=1e-5, atol=1e-6)
def softmax_loss_random_logits():
    return [_softmax_loss_value(50, 10, 502, 1.0), _softmax_loss_value(13, 4, 503, 2.5)]


@probe("softmax_loss_ndl", rtol=1e-5, atol=1e-6)
def softmax_loss_single_example():
    return _softmax_loss_value(1, 6, 504, 1.0)


# --- nn_epoch and ReLU ------------------------------------------------------------------------


@probe("nn_epoch_ndl")
def relu_forward():
    import needle as ndl

    x = randn(4, 5, seed=601)
    x[0, :2] = 0.0
    return ndl.relu(_tensor(x)).numpy()


@probe("nn_epoch_ndl", rtol=1e-4, atol=1e-5)
def relu_backward():
    import needle as ndl

    return _gradients(ndl.relu, [randn(5, 3, seed=602)], 603)


def _nn_epoch(samples, features, hidden, classes, lr, batch, seed):
    import needle as ndl
    import numpy as np
    from simple_ml import nn_epoch

    X = randn(samples, features, seed=seed) / np.float32(np.sqrt(features))
    y = randint(samples, seed=seed + 1, low=0, high=classes).astype("uint8")
    W1 = ndl.Tensor(randn(features, hidden, seed=seed + 2) / np.float32(np.sqrt(hidden)))
    W2 = ndl.Tensor(randn(hidden, classes, seed=seed + 3) / np.float32(np.sqrt(classes)))
    W1, W2 = nn_epoch(X, y, W1, W2, lr=lr, batch=batch)
    return [W1.numpy(), W2.numpy()]


@probe("nn_epoch_ndl", rtol=1e-4, atol=1e-5)
def nn_epoch_one_batch():
    return _nn_epoch(40, 12, 8, 5, lr=0.5, batch=40, seed=604)


@probe("nn_epoch_ndl", rtol=1e-4, atol=1e-5)
def nn_epoch_several_batches():
    return _nn_epoch(60, 10, 16, 3, lr=0.2, batch=15, seed=605)


@probe("nn_epoch_ndl", rtol=1e-4, atol=1e-5)
def nn_epoch_partial_last_batch():
    """Batches of 9, 9, 9, 9 and a last one of 4: it is trained on, averaged over its 4 rows."""
    return _nn_epoch(40, 7, 6, 4, lr=0.4, batch=9, seed=606)


def _graph_size(*tensors):
    """How many graph nodes the tensors reach through ``.inputs`` (an explicit stack)."""
    seen, stack = set(), list(tensors)
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.inputs)
    return len(seen)


@probe("nn_epoch_ndl")
def nn_epoch_graph_stays_flat():
    """The returned weights must not carry the graph of every step: the graph they reach is
    as small after 6 minibatches as after 2 (``W = W - lr * W.grad`` keeps it all, and each
    later backward pass walks the whole history: training turns quadratic)."""
    import needle as ndl
    import numpy as np
    from simple_ml import nn_epoch

    X = randn(48, 6, seed=607) / np.float32(np.sqrt(6))
    y = randint(48, seed=608, low=0, high=3).astype("uint8")
    sizes = []
    for samples in (16, 48):
        W1 = ndl.Tensor(randn(6, 5, seed=609) / np.float32(np.sqrt(5)))
        W2 = ndl.Tensor(randn(5, 3, seed=610) / np.float32(np.sqrt(3)))
        W1, W2 = nn_epoch(X[:samples], y[:samples], W1, W2, lr=0.1, batch=8)
        sizes.append(_graph_size(W1, W2))
    # A string, not a bool: the engine compares 0-d bools as always equal (see the report).
    return "the graph grows with the steps" if sizes[1] > sizes[0] else "flat"
