"""Hidden probes of hw3 (the NDArray: strided views, C++ CPU kernels, CUDA kernels).

Units and what their probes exercise (points in ``assignments/hw3/assignment.toml``):

- ``ndarray_python_ops``: ``reshape``, ``permute``, ``broadcast_to`` and ``__getitem__`` of
  ``ndarray.py`` on the numpy device (so a broken C++ build cannot cost these points): the
  shape, strides, offset, whether the view shares its base's buffer, and the values;
- ``ndarray_{cpu,cuda}_compact`` / ``_ewise_setitem`` / ``_scalar_setitem``: one unit per
  strided kernel, on views made with ``NDArray.make`` (provided code, so the student's Python
  views play no part), including negative and zero strides and up to 7 dimensions;
- ``ndarray_{cpu,cuda}_ops_<group>``: one unit per group of element-wise kernels (mul_div,
  power, maximum, eq, ge, log, exp, tanh), one probe per kernel: a strict ``>`` in
  ``EwiseGe`` costs ``ops_ge`` (half of it), nothing else;
- ``ndarray_{cpu,cuda}_reduce_sum`` / ``_reduce_max``: the kernels called directly, from single
  elements to rows of tens of thousands (a crash in one costs only its unit: one process per
  unit);
- ``ndarray_{cpu,cuda}_matmul`` (and on the CPU ``ndarray_cpu_matmul_tiled``): called directly.

The kernel units call the backend module through the device (``device.compact(...)``), never
through NDArray methods that the student wrote, so each unit depends on one file only:
``ndarray.py`` (python_ops), ``src/ndarray_backend_cpu.cc`` (cpu units) or
``src/ndarray_backend_cuda.cu`` (cuda units).

Shapes, seeds and values differ from the public tests. Sums and products use small integers
(exact in float32, whatever order a kernel adds in); transcendental functions use floats within
rtol 1e-5. Each answer is plain data: shapes, strides and the values (whole for small arrays;
for big ones the first 256, a seeded sample of 256 and float64 sums).

CUDA units without a GPU: a CUDA probe raises ``kit.NotGradable`` ("needs a CUDA GPU ...")
when ``needle.cuda()`` is not usable where the probe runs (no GPU, no CUDA build, or a sandbox
without the GPU device files); the grader then reports the case as not graded on this machine,
with no points, and never as a pass.
"""

import numpy as np

from autograder.engine.kit import NotGradable, probe, raises, rand, randint, randn

SEARCH_PATH = [""]

VALUES_IN_FULL = 1024  # arrays up to this size are returned whole
HEAD = 256
SAMPLE = 256


# --- helpers ---------------------------------------------------------------------------------


def _device(name):
    """The NDArray device ``name`` ("cpu_numpy", "cpu", "cuda"), or a clear error."""
    from needle import backend_ndarray as nd

    device = {"cpu_numpy": nd.cpu_numpy, "cpu": nd.cpu, "cuda": nd.cuda}[name]()
    if not device.enabled():
        reason = device.unavailable_reason
        if name == "cuda":
            raise NotGradable(f"needs a CUDA GPU; the CUDA backend is not usable here: {reason}")
        raise RuntimeError(f"the {name} backend is not available: {reason}")
    return device


def _values(array):
    """An array's values as an answer: whole when small, else head + seeded sample + sums."""
    flat = np.asarray(array, dtype=np.float32).reshape(-1)
    if flat.size <= VALUES_IN_FULL:
        return np.asarray(array, dtype=np.float32)
    picks = np.random.default_rng(flat.size).choice(flat.size, SAMPLE, replace=False)
    as64 = flat.astype(np.float64)
    return {
        "shape": list(np.shape(array)),
        "head": flat[:HEAD],
        "sample": flat[np.sort(picks)],
        "sum": float(as64.sum()),
        "abs_sum": float(np.abs(as64).sum()),
    }


def _array(values, device):
    from needle import backend_ndarray as nd

    return nd.NDArray(values, device=device)


def _view_answer(view, base):
    """What a view must get right: its layout, that it is a view of ``base``, its values."""
    return {
        "shape": [int(d) for d in view.shape],
        "strides": [int(s) for s in view.strides],
        "offset": int(view._offset),
        "shares_memory": view._handle.ptr() == base._handle.ptr(),
        "values": _values(view.numpy()),
    }


def _layout(numpy_view, numpy_base):
    """(strides, offset) in elements of a numpy view of ``numpy_base``."""
    strides = tuple(s // 4 for s in numpy_view.strides)
    offset = (numpy_view.__array_interface__["data"][0] - numpy_base.ctypes.data) // 4
    return strides, offset


# --- ndarray_python_ops (ndarray.py, on the numpy device) ------------------------------------


@probe("ndarray_python_ops")
def python_reshape():
    device = _device("cpu_numpy")
    answers: list = []
    for shape, new_shape in [
        ((6, 10), (3, 20)),
        ((2, 3, 10), (5, 12)),
        ((60,), (3, 1, 4, 5)),
        ((3, 4, 5), (-1, 10)),
        ((1,), (1, 1, 1)),
    ]:
        base = _array(randint(*shape, seed=301 + len(answers), low=-20, high=20), device)
        answers.append(_view_answer(base.reshape(new_shape), base))
    return answers


@probe("ndarray_python_ops")
def python_reshape_errors():
    device = _device("cpu_numpy")
    base = _array(randn(4, 6, seed=306), device)
    strided = base.as_strided((6, 4), (1, 6))  # a transposed view (provided as_strided)
    return [raises(lambda: base.reshape((5, 5))), raises(lambda: strided.reshape((24,)))]


@probe("ndarray_python_ops")
def python_permute():
    device = _device("cpu_numpy")
    answers: list = []
    for shape, axes in [
        ((5, 3), (1, 0)),
        ((2, 5, 3), (1, 2, 0)),
        ((3, 2, 4, 5), (2, 0, 3, 1)),
        ((2, 3, 1, 4, 2), (4, 3, 2, 1, 0)),
    ]:
        base = _array(randint(*shape, seed=310 + len(answers), low=-20, high=20), device)
        answers.append(_view_answer(base.permute(axes), base))
    return answers


@probe("ndarray_python_ops")
def python_broadcast_to():
    device = _device("cpu_numpy")
    answers: list = []
    for shape, new_shape in [
        ((3, 1), (3, 5)),
        ((1, 4, 1), (6, 4, 2)),
        ((2, 1, 3, 1), (2, 4, 3, 5)),
        ((1, 1), (1, 1)),
    ]:
        base = _array(randint(*shape, seed=320 + len(answers), low=-20, high=20), device)
        answers.append(_view_answer(base.broadcast_to(new_shape), base))
    return answers


@probe("ndarray_python_ops")
def python_getitem():
    device = _device("cpu_numpy")
    answers: list = []
    for shape, index in [
        ((9, 7), (slice(2, 8), slice(1, 6, 2))),
        ((9, 7), (4, slice(None))),
        ((9, 7), (slice(None, None, 4), -3)),
        ((9, 7), (slice(-4, None), slice(None, -2))),
        ((4, 5, 6), (slice(1, 3), slice(None), slice(5, 0, -2))),
        ((4, 5, 6), (2,)),
        ((2, 3, 4, 5, 6, 7), (1, slice(None, None, 2), slice(1, 4), 3, slice(2, 6, 3), slice(4))),
    ]:
        base = _array(randint(*shape, seed=330 + len(answers), low=-20, high=20), device)
        answers.append(_view_answer(base[index], base))
    return answers


@probe("ndarray_python_ops")
def python_views_compose():
    device = _device("cpu_numpy")
    base = _array(randint(5, 6, 7, seed=340, low=-20, high=20), device)
    first = base.permute((1, 2, 0))[1:5:2, ::3, 1:]
    column = _array(randint(5, 1, seed=341, low=-20, high=20), device)
    second = column.broadcast_to((5, 4))[::2, 1:3]
    third = base.reshape((30, 7)).permute((1, 0))[2:5, 10:20]
    return [
        _view_answer(first, base),
        _view_answer(second, column),
        _view_answer(third, base),
    ]


@probe("ndarray_python_ops")
def python_slices_of_slices():
    """Views of views whose own offset is not zero: the second slice starts from the first's
    offset (``A[2:5, 1:][1:3, 2:4]`` is not ``A[1:3, 2:4]``), also with negative steps, after a
    permute and on a broadcast column."""
    device = _device("cpu_numpy")
    base = _array(randint(6, 7, 8, seed=342, low=-20, high=20), device)
    column = _array(randint(6, 1, seed=343, low=-20, high=20), device)
    matrix = _array(randint(9, 11, seed=344, low=-20, high=20), device)
    return [
        _view_answer(matrix[2:7, 1:][1:3, 2:9:3], matrix),
        _view_answer(matrix[3:4, :][0:1, 4:7], matrix),
        _view_answer(base[1:5, 2:, 1:7][1:3, ::2, 2:5], base),
        _view_answer(base[4:, 1:6, ::-2][1:, 1:4, 1:], base),
        _view_answer(base.permute((2, 0, 1))[3:, 1:5][2:4, 1:, 3:], base),
        _view_answer(column.broadcast_to((6, 5))[2:, 1:][1:3, 2:], column),
    ]


# --- compact and setitem (the backend's strided kernels) ----------------------------------------

# (base shape, numpy view of the base) pairs; the NDArray view is made with the same layout.
COMPACT_VIEWS = [
    ((6, 11), lambda x: x.T),
    ((37, 29), lambda x: x.T[3:, ::2]),
    ((4, 3, 5, 2), lambda x: x.transpose(3, 1, 0, 2)),
    ((18, 2, 21), lambda x: x.transpose(2, 1, 0)),
    ((3, 1, 7), lambda x: np.broadcast_to(x, (3, 4, 7))),
    ((1, 13), lambda x: np.broadcast_to(x, (19, 13))),
    ((10, 12), lambda x: x[::-1, 2:11:3]),
    ((10, 12), lambda x: x[8:1:-3, ::-1]),
    ((2, 3, 4, 3, 2, 3, 2), lambda x: x.transpose(5, 2, 0, 6, 1, 4, 3)[:, 1:, ::2]),
    ((4, 5, 3, 4, 5, 3), lambda x: x[1:3, ::2, 1:, :3, ::-2, 2:]),
    ((7,), lambda x: x[3:4]),
]


def _compact_probe(device_name):
    from needle import backend_ndarray as nd

    device = _device(device_name)
    answers: list = []
    for number, (shape, make_view) in enumerate(COMPACT_VIEWS):
        data = randint(*shape, seed=350 + number, low=-50, high=50).astype(np.float32)
        expected = make_view(data)
        strides, offset = _layout(expected, data)
        base = _array(data, device)
        out = nd.NDArray.make(expected.shape, device=device)
        device.compact(base._handle, out._handle, list(expected.shape), list(strides), offset)
        answers.append(_values(out.numpy()))
    return answers


# (target shape, numpy view of the target that is written)
SETITEM_VIEWS = [
    ((7, 9), lambda x: x[2:6, 1:8:2]),
    ((6, 8), lambda x: x[::-1, ::3]),
    ((40, 36), lambda x: x.T[5:30, 2:38]),
    ((3, 4, 5, 6), lambda x: x.transpose(2, 0, 3, 1)[1:4, :, ::2]),
    ((2, 3, 2, 3, 2, 3, 2), lambda x: x[:, 1:, :, ::2, 1:, :, ::-1]),
    ((5, 5), lambda x: x[4:5, 0:1]),
]


def _setitem_probe(device_name, scalar):
    device = _device(device_name)
    answers: list = []
    for number, (shape, make_view) in enumerate(SETITEM_VIEWS):
        data = randint(*shape, seed=370 + number, low=-50, high=50).astype(np.float32)
        region = make_view(data)
        strides, offset = _layout(region, data)
        target = _array(data, device)
        if scalar:
            device.scalar_setitem(
                int(region.size), -7.25, target._handle, list(region.shape), list(strides), offset
            )
        else:
            source = _array(randint(*region.shape, seed=380 + number, low=60, high=99), device)
            device.ewise_setitem(
                source._handle, target._handle, list(region.shape), list(strides), offset
            )
        answers.append(_values(target.numpy()))
    return answers


# --- element-wise kernels ----------------------------------------------------------------------
# One unit per kernel group (``ndarray_{dev}_ops_<group>``) and one probe per kernel, so a
# wrong comparison costs that comparison's unit only, and a kernel that crashes its process
# costs only its own small unit.

OPS_SHAPE = (13, 71)


def _ops_inputs():
    a_np = rand(*OPS_SHAPE, seed=390, low=0.25, high=3.0)
    b_np = rand(*OPS_SHAPE, seed=391, low=0.25, high=3.0)
    b_np[:, ::5] = a_np[:, ::5]  # ties for eq / ge / maximum
    return a_np, b_np


def _run_kernel(device_name, kernel, *inputs):
    """``kernel`` of the device on ``inputs`` (numpy arrays, or a Python scalar last)."""
    device = _device(device_name)
    args = [
        _array(value, device)._handle if isinstance(value, np.ndarray) else value
        for value in inputs
    ]
    out = device.empty(OPS_SHAPE)
    getattr(device, kernel)(*args, out._handle)
    return _values(out.numpy())


def _ewise(device_name, kernel):
    a_np, b_np = _ops_inputs()
    return _run_kernel(device_name, kernel, a_np, b_np)


def _scalar(device_name, kernel, scalar):
    a_np, _ = _ops_inputs()
    if scalar is None:  # a value that occurs in the array (ties)
        scalar = float(a_np[0, 0])
    else:  # every 4th column equals the scalar: ties for ge / maximum (a strict > shows)
        a_np[:, ::4] = np.float32(scalar)
    return _run_kernel(device_name, kernel, a_np, scalar)


def _scalar_powers(device_name):
    a_np, _ = _ops_inputs()
    return {
        f"scalar_power_{exponent:g}": _run_kernel(device_name, "scalar_power", a_np, exponent)
        for exponent in (3.0, 0.5, 2.0, -1.0, 0.0, -2.5)
    }


def _unary(device_name, kernel):
    if kernel == "ewise_log":
        return _run_kernel(device_name, kernel, rand(*OPS_SHAPE, seed=393, low=1e-3, high=1e3))
    if kernel == "ewise_exp":
        return _run_kernel(device_name, kernel, rand(*OPS_SHAPE, seed=392, low=-30.0, high=30.0))
    a_np, _ = _ops_inputs()
    return {
        "wide": _run_kernel(device_name, kernel, rand(*OPS_SHAPE, seed=392, low=-30.0, high=30.0)),
        "small": _run_kernel(device_name, kernel, a_np - np.float32(1.5)),
    }


# --- reductions ------------------------------------------------------------------------------

REDUCTIONS = [(7, 1), (5, 9), (640, 3), (12, 37), (4, 333), (3, 25_001), (1, 70_000)]


def _reduce_probe(device_name, kernel):
    device = _device(device_name)
    answers: list = []
    for number, (outputs, reduce_size) in enumerate(REDUCTIONS):
        data = randint(outputs * reduce_size, seed=400 + number, low=-100, high=100)
        a = _array(data.astype("float32"), device)
        out = device.empty((outputs,))
        getattr(device, kernel)(a._handle, out._handle, reduce_size)
        answers.append(_values(out.numpy()))
    # Long rows with a trend: the largest values lie in the first or the last block of 8192
    # only (random rows have the same maximum in every block, which hides a wrong combine).
    steps = np.arange(30_011) // 997
    trend = np.concatenate([steps, steps[::-1], -steps - 40, 7 - steps[::-1]])
    a = _array(trend.astype("float32"), device)
    out = device.empty((4,))
    getattr(device, kernel)(a._handle, out._handle, 30_011)
    answers.append(_values(out.numpy()))
    return answers


# --- matmul ----------------------------------------------------------------------------------

MATMULS = [(1, 1, 1), (2, 7, 3), (9, 1, 9), (31, 33, 35), (64, 8, 96), (130, 270, 66), (5, 300, 7)]


def _matmul_probe(device_name, sizes):
    device = _device(device_name)
    answers: list = []
    for number, (m, n, p) in enumerate(sizes):
        a = _array(randint(m, n, seed=420 + number, low=-4, high=5).astype("float32"), device)
        b = _array(randint(n, p, seed=440 + number, low=-4, high=5).astype("float32"), device)
        out = device.empty((m, p))
        device.matmul(a._handle, b._handle, out._handle, m, n, p)
        answers.append(_values(out.numpy()))
    return answers


# --- ndarray_cpu_* -------------------------------------------------------------------------


@probe("ndarray_cpu_compact")
def cpu_compact():
    return _compact_probe("cpu")


@probe("ndarray_cpu_ewise_setitem")
def cpu_ewise_setitem():
    return _setitem_probe("cpu", scalar=False)


@probe("ndarray_cpu_scalar_setitem")
def cpu_scalar_setitem():
    return _setitem_probe("cpu", scalar=True)


@probe("ndarray_cpu_ops_mul_div")
def cpu_ewise_mul():
    return _ewise("cpu", "ewise_mul")


@probe("ndarray_cpu_ops_mul_div")
def cpu_ewise_div():
    return _ewise("cpu", "ewise_div")


@probe("ndarray_cpu_ops_mul_div")
def cpu_scalar_mul():
    return _scalar("cpu", "scalar_mul", -1.75)


@probe("ndarray_cpu_ops_mul_div")
def cpu_scalar_div():
    return _scalar("cpu", "scalar_div", 0.625)


@probe("ndarray_cpu_ops_power")
def cpu_ewise_power():
    return _ewise("cpu", "ewise_power")


@probe("ndarray_cpu_ops_power")
def cpu_scalar_power():
    return _scalar_powers("cpu")


@probe("ndarray_cpu_ops_maximum")
def cpu_ewise_maximum():
    return _ewise("cpu", "ewise_maximum")


@probe("ndarray_cpu_ops_maximum")
def cpu_scalar_maximum():
    return _scalar("cpu", "scalar_maximum", 1.5)


@probe("ndarray_cpu_ops_eq")
def cpu_ewise_eq():
    return _ewise("cpu", "ewise_eq")


@probe("ndarray_cpu_ops_eq")
def cpu_scalar_eq():
    return _scalar("cpu", "scalar_eq", None)


@probe("ndarray_cpu_ops_ge")
def cpu_ewise_ge():
    return _ewise("cpu", "ewise_ge")


@probe("ndarray_cpu_ops_ge")
def cpu_scalar_ge():
    return _scalar("cpu", "scalar_ge", 1.25)


@probe("ndarray_cpu_ops_log")
def cpu_ewise_log():
    return _unary("cpu", "ewise_log")


@probe("ndarray_cpu_ops_exp")
def cpu_ewise_exp():
    return _unary("cpu", "ewise_exp")


@probe("ndarray_cpu_ops_tanh")
def cpu_ewise_tanh():
    return _unary("cpu", "ewise_tanh")


@probe("ndarray_cpu_reduce_sum")
def cpu_reduce_sum():
    return _reduce_probe("cpu", "reduce_sum")


@probe("ndarray_cpu_reduce_max")
def cpu_reduce_max():
    return _reduce_probe("cpu", "reduce_max")


@probe("ndarray_cpu_matmul")
def cpu_matmul():
    return _matmul_probe("cpu", MATMULS)


@probe("ndarray_cpu_matmul_tiled")
def cpu_matmul_tiled():
    """The tiled kernel on the course's [rows/T][cols/T][T][T] layout."""
    device = _device("cpu")
    tile = int(device.tile_size)

    def tiles(matrix):
        rows, cols = matrix.shape
        return matrix.reshape(rows // tile, tile, cols // tile, tile).transpose(0, 2, 1, 3).copy()

    answers: list = []
    for number, (m, n, p) in enumerate(
        [(tile, 2 * tile, 3 * tile), (6 * tile, 4 * tile, 5 * tile), (7 * tile, 5 * tile, 3 * tile)]
    ):
        a = randint(m, n, seed=460 + number, low=-4, high=5).astype(np.float32)
        b = randint(n, p, seed=470 + number, low=-4, high=5).astype(np.float32)
        out = device.empty((m // tile, p // tile, tile, tile))
        device.matmul_tiled(
            _array(tiles(a), device)._handle,
            _array(tiles(b), device)._handle,
            out._handle,
            m,
            n,
            p,
        )
        answers.append(_values(out.numpy()))
    return answers


# --- ndarray_cuda_* (need a GPU where the probes run) -----------------------------------------


@probe("ndarray_cuda_compact")
def cuda_compact():
    return _compact_probe("cuda")


@probe("ndarray_cuda_ewise_setitem")
def cuda_ewise_setitem():
    return _setitem_probe("cuda", scalar=False)


@probe("ndarray_cuda_scalar_setitem")
def cuda_scalar_setitem():
    return _setitem_probe("cuda", scalar=True)


@probe("ndarray_cuda_ops_mul_div")
def cuda_ewise_mul():
    return _ewise("cuda", "ewise_mul")


@probe("ndarray_cuda_ops_mul_div")
def cuda_ewise_div():
    return _ewise("cuda", "ewise_div")


@probe("ndarray_cuda_ops_mul_div")
def cuda_scalar_mul():
    return _scalar("cuda", "scalar_mul", -1.75)


@probe("ndarray_cuda_ops_mul_div")
def cuda_scalar_div():
    return _scalar("cuda", "scalar_div", 0.625)


@probe("ndarray_cuda_ops_power")
def cuda_ewise_power():
    return _ewise("cuda", "ewise_power")


@probe("ndarray_cuda_ops_power")
def cuda_scalar_power():
    return _scalar_powers("cuda")


@probe("ndarray_cuda_ops_maximum")
def cuda_ewise_maximum():
    return _ewise("cuda", "ewise_maximum")


@probe("ndarray_cuda_ops_maximum")
def cuda_scalar_maximum():
    return _scalar("cuda", "scalar_maximum", 1.5)


@probe("ndarray_cuda_ops_eq")
def cuda_ewise_eq():
    return _ewise("cuda", "ewise_eq")


@probe("ndarray_cuda_ops_eq")
def cuda_scalar_eq():
    return _scalar("cuda", "scalar_eq", None)


@probe("ndarray_cuda_ops_ge")
def cuda_ewise_ge():
    return _ewise("cuda", "ewise_ge")


@probe("ndarray_cuda_ops_ge")
def cuda_scalar_ge():
    return _scalar("cuda", "scalar_ge", 1.25)


@probe("ndarray_cuda_ops_log")
def cuda_ewise_log():
    return _unary("cuda", "ewise_log")


@probe("ndarray_cuda_ops_exp")
def cuda_ewise_exp():
    return _unary("cuda", "ewise_exp")


@probe("ndarray_cuda_ops_tanh")
def cuda_ewise_tanh():
    return _unary("cuda", "ewise_tanh")


@probe("ndarray_cuda_reduce_sum")
def cuda_reduce_sum():
    return _reduce_probe("cuda", "reduce_sum")


@probe("ndarray_cuda_reduce_max")
def cuda_reduce_max():
    return _reduce_probe("cuda", "reduce_max")


@probe("ndarray_cuda_matmul")
def cuda_matmul():
    return _matmul_probe("cuda", MATMULS + [(257, 129, 300)])
