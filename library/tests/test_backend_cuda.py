"""The CUDA kernel backend, called directly (``Array``/``from_numpy``/``to_numpy``) against numpy.

The expected values come from numpy on the same float32 inputs (float64 where rounding order
differs, e.g. sums and matrix products). Strided views are checked against an independent
oracle: the buffer position of every element, ``offset + sum(index_k * strides[k])``.

That every kernel of the table is exported and agrees with numpy on random inputs is checked
for all backends by ``test_kernel_contract.py``; this file has the CUDA backend's own cases.

Without a GPU every kernel test skips with a reason; the tests that need no GPU (the module
imports, counts 0 devices and raises RuntimeError on allocation) always run. The slow test
``test_kernels_on_the_cpu_emulator`` compiles the CUDA source with g++ against
``src/cuda_cpu_emulator.cuh`` (CUDA threads as fibers, real barrier and shuffle semantics) and
runs this file's kernel tests and the contract test's cuda cases on the CPU, so the kernels are
checked on machines without a GPU too. Setting ``NEEDLE_TEST_CUDA_EMULATOR`` to such an emulated
build makes both files test it instead of the installed module.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

MODULE_NAME = "needle.backend_ndarray.ndarray_backend_cuda"
EMULATOR_VARIABLE = "NEEDLE_TEST_CUDA_EMULATOR"
SOURCE_DIR = Path(__file__).resolve().parents[1] / "src"


def load_module_from(path: str):
    """Import a compiled build of the backend from ``path`` (e.g. an emulated build).

    It gets a name of its own: under the installed module's name, Python would hand back that
    module if it is already imported (it caches single-phase extension modules by name).
    """
    name = "emulated.ndarray_backend_cuda"
    if name in sys.modules:  # loaded by the other test file (a second load would clash)
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


EMULATED = bool(os.environ.get(EMULATOR_VARIABLE))
if EMULATED:
    NOT_BUILT, cuda = False, load_module_from(os.environ[EMULATOR_VARIABLE])
else:
    NOT_BUILT = importlib.util.find_spec(MODULE_NAME) is None
    cuda = None if NOT_BUILT else importlib.import_module(MODULE_NAME)
DEVICE_COUNT = cuda.device_count() if cuda is not None else 0

pytestmark = pytest.mark.hw3

needs_module = pytest.mark.skipif(
    NOT_BUILT, reason="the CUDA backend was not built (no CUDA compiler when needle was installed)"
)


def needs_gpu(test):
    """Run ``test`` only where a CUDA GPU is present (skipped with a reason elsewhere)."""
    reason = "no CUDA GPU here (device_count() == 0); the CUDA kernels run where a GPU is"
    if NOT_BUILT:
        reason = "the CUDA backend was not built"
    return pytest.mark.cuda(pytest.mark.skipif(DEVICE_COUNT == 0, reason=reason)(test))


# ---- helpers -------------------------------------------------------------------------------


def compact_strides(shape):
    strides, stride = [], 1
    for extent in reversed(shape):
        strides.insert(0, stride)
        stride *= extent
    return tuple(strides)


def to_gpu(values) -> object:
    """A new CUDA Array holding ``values`` (any shape) in row-major order."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    array = cuda.Array(values.size)
    cuda.from_numpy(values, array)
    return array


def from_gpu(array, shape) -> np.ndarray:
    """The first prod(shape) elements of a CUDA Array, as a numpy array of ``shape``."""
    return cuda.to_numpy(array, tuple(shape), compact_strides(shape), 0)


def strided_positions(shape, strides, offset) -> np.ndarray:
    """Buffer position of each element of a strided view, as an int64 array of ``shape``."""
    positions = np.full(shape, offset, dtype=np.int64)
    for axis, (extent, stride) in enumerate(zip(shape, strides)):
        along_axis = np.arange(extent, dtype=np.int64) * stride
        positions = positions + along_axis.reshape(
            [-1 if k == axis else 1 for k in range(len(shape))]
        )
    return positions


def numpy_made_view(rng, ndim):
    """A view as NDArray makes them (permute, slices with steps, flips) of a random base array.

    Returns (buffer_size, shape, strides, offset) with strides in elements. Distinct indices map
    to distinct positions, so the view can also be written to.
    """
    base_shape = tuple(int(n) for n in rng.integers(1, 5, size=ndim))
    base = np.zeros(base_shape, dtype=np.float32)
    view = base.transpose(rng.permutation(ndim)) if ndim else base
    slices = []
    for extent in view.shape:
        step = int(rng.integers(1, 3)) * int(rng.choice([-1, 1]))
        start = int(rng.integers(0, extent))
        slices.append(slice(start, None, step) if rng.random() < 0.5 else slice(None, None, step))
    view = view[tuple(slices)] if ndim else view
    itemsize = base.itemsize
    offset = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // itemsize
    strides = tuple(s // itemsize for s in view.strides)
    return base.size, view.shape, strides, offset


def raw_view(rng, ndim):
    """A strided view with arbitrary strides: zero (broadcast), negative and overlapping ones."""
    shape = tuple(int(n) for n in rng.integers(1, 4, size=ndim))
    strides = tuple(int(s) for s in rng.integers(-6, 7, size=ndim))
    lowest = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    highest = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    offset = -lowest + int(rng.integers(0, 4))
    buffer_size = offset + highest + 1 + int(rng.integers(0, 4))
    return buffer_size, shape, strides, offset


def random_floats(rng, shape, low=-3.0, high=3.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


# ---- tests that run everywhere ---------------------------------------------------------------


def test_module_imports_and_counts_devices():
    if NOT_BUILT:
        pytest.skip("the CUDA backend was not built (no CUDA compiler when needle was installed)")
    module = importlib.import_module(MODULE_NAME)
    count = module.device_count()
    assert isinstance(count, int)
    assert count >= 0


@needs_module
@pytest.mark.skipif(DEVICE_COUNT > 0, reason="checks the behaviour without a GPU")
def test_without_gpu_allocation_raises_runtime_error():
    with pytest.raises(RuntimeError, match="cudaMalloc"):
        cuda.Array(4)
    with pytest.raises(RuntimeError, match="synchronize"):
        cuda.synchronize()
    assert cuda.Array(0).size == 0  # an empty buffer allocates nothing


# ---- buffers, copies, fill -------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 4), (1000,), (5, 0, 2)])
def test_from_numpy_to_numpy_roundtrip(shape):
    values = random_floats(np.random.default_rng(1), shape)
    array = to_gpu(values)
    assert array.size == values.size
    np.testing.assert_array_equal(from_gpu(array, shape), values)


@needs_gpu
def test_from_numpy_converts_dtype_and_layout():
    values = np.arange(12, dtype=np.float64).reshape(3, 4).T  # float64, Fortran order
    array = cuda.Array(12)
    cuda.from_numpy(values, array)
    np.testing.assert_array_equal(from_gpu(array, (4, 3)), values.astype(np.float32))


@needs_gpu
def test_from_numpy_rejects_a_size_mismatch():
    with pytest.raises(ValueError, match="from_numpy"):
        cuda.from_numpy(np.zeros(5, dtype=np.float32), cuda.Array(4))


@needs_gpu
def test_arrays_have_distinct_device_pointers():
    first, second = cuda.Array(10), cuda.Array(10)
    assert first.ptr() != 0 and second.ptr() != 0 and first.ptr() != second.ptr()


@needs_gpu
@pytest.mark.parametrize("ndim", range(0, 8))
def test_to_numpy_of_strided_views(ndim):
    rng = np.random.default_rng(100 + ndim)
    for make_view in (numpy_made_view, raw_view):
        buffer_size, shape, strides, offset = make_view(rng, ndim)
        flat = random_floats(rng, buffer_size)
        result = cuda.to_numpy(to_gpu(flat), shape, strides, offset)
        assert result.shape == tuple(shape)
        np.testing.assert_array_equal(result, flat[strided_positions(shape, strides, offset)])


@needs_gpu
@pytest.mark.parametrize("size", [0, 1, 255, 257, 100_000])
def test_fill(size):
    array = cuda.Array(size)
    cuda.fill(array, -2.5)
    np.testing.assert_array_equal(from_gpu(array, (size,)), np.full(size, -2.5, np.float32))


# ---- compact / setitem -----------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("ndim", range(0, 8))
def test_compact_gathers_strided_views(ndim):
    rng = np.random.default_rng(200 + ndim)
    for trial in range(6):
        make_view = numpy_made_view if trial % 2 else raw_view
        buffer_size, shape, strides, offset = make_view(rng, ndim)
        flat = random_floats(rng, buffer_size)
        out = cuda.Array(math.prod(shape))
        cuda.compact(to_gpu(flat), out, shape, strides, offset)
        expected = flat[strided_positions(shape, strides, offset)]
        np.testing.assert_array_equal(from_gpu(out, shape), expected)


@needs_gpu
def test_compact_of_transpose_broadcast_and_flip():
    base = np.arange(24, dtype=np.float32)
    gpu = to_gpu(base)
    cases = [
        ((4, 6), (1, 4), 0, base.reshape(6, 4).T),  # transpose
        ((3, 4, 2), (0, 2, 1), 0, np.broadcast_to(base[:8].reshape(4, 2), (3, 4, 2))),
        ((2, 3, 4), (-12, 4, -1), 15, base.reshape(2, 3, 4)[::-1, :, ::-1]),  # flip axes 0, 2
        ((2, 2), (12, 5), 3, base[[[3, 8], [15, 20]]]),
    ]
    for shape, strides, offset, expected in cases:
        out = cuda.Array(math.prod(shape))
        cuda.compact(gpu, out, shape, strides, offset)
        np.testing.assert_array_equal(from_gpu(out, shape), expected)


@needs_gpu
@pytest.mark.parametrize("ndim", range(0, 8))
def test_ewise_setitem_scatters_into_strided_views(ndim):
    rng = np.random.default_rng(300 + ndim)
    for _ in range(4):
        buffer_size, shape, strides, offset = numpy_made_view(rng, ndim)
        before = random_floats(rng, buffer_size)
        values = random_floats(rng, shape, 10.0, 20.0)
        out = to_gpu(before)
        cuda.ewise_setitem(to_gpu(values), out, shape, strides, offset)
        expected = before.copy()
        expected[strided_positions(shape, strides, offset)] = values
        np.testing.assert_array_equal(from_gpu(out, (buffer_size,)), expected)


@needs_gpu
@pytest.mark.parametrize("ndim", range(0, 8))
def test_scalar_setitem_fills_strided_views(ndim):
    rng = np.random.default_rng(400 + ndim)
    for _ in range(4):
        buffer_size, shape, strides, offset = numpy_made_view(rng, ndim)
        before = random_floats(rng, buffer_size)
        out = to_gpu(before)
        cuda.scalar_setitem(math.prod(shape), 7.25, out, shape, strides, offset)
        expected = before.copy()
        expected[strided_positions(shape, strides, offset)] = 7.25
        np.testing.assert_array_equal(from_gpu(out, (buffer_size,)), expected)


@needs_gpu
def test_setitem_into_a_large_view():
    # More elements than one grid of the 1-D launch covers, so the grid-stride loops run.
    rows, cols = 4500, 4000
    out = to_gpu(np.zeros(rows * cols, dtype=np.float32))
    values = np.arange(rows * cols // 2, dtype=np.float32)
    cuda.ewise_setitem(to_gpu(values), out, (rows, cols // 2), (cols, 2), 1)  # odd columns
    result = from_gpu(out, (rows, cols))
    np.testing.assert_array_equal(result[:, 1::2], values.reshape(rows, cols // 2))
    np.testing.assert_array_equal(result[:, 0::2], 0.0)


@needs_gpu
def test_strided_kernels_reject_views_outside_their_buffer():
    gpu = to_gpu(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="compact"):
        cuda.compact(gpu, cuda.Array(4), (2, 2), (5, 1), 5)  # reaches element 11
    with pytest.raises(ValueError, match="compact"):
        cuda.compact(gpu, cuda.Array(4), (4,), (-1,), 2)  # reaches element -1
    with pytest.raises(ValueError, match="ewise_setitem"):
        cuda.ewise_setitem(to_gpu(np.zeros(4)), gpu, (4,), (3,), 1)  # reaches 10
    with pytest.raises(ValueError, match="scalar_setitem"):
        cuda.scalar_setitem(3, 1.0, gpu, (3,), (1,), 8)
    with pytest.raises(ValueError, match="compact"):
        cuda.compact(gpu, cuda.Array(4), (2, 2), (1,), 0)  # strides of the wrong length
    with pytest.raises(ValueError, match="dimensions"):
        cuda.compact(gpu, cuda.Array(1), (1,) * 17, (0,) * 17, 0)
    with pytest.raises(ValueError, match="compact"):
        cuda.compact(gpu, cuda.Array(3), (2, 2), (2, 1), 0)  # out has the wrong size


# ---- element-wise kernels --------------------------------------------------------------------

# Every element-wise kernel is checked against numpy on random inputs of several sizes by
# test_kernel_contract.py (which takes the list of kernels from the kernel table, and also runs on
# the emulator below); here are the CUDA backend's special cases.


@needs_gpu
@pytest.mark.parametrize("size", [1, 1000])
def test_ewise_power(size):
    rng = np.random.default_rng(size + 3)
    base, exponent = random_floats(rng, size, 0.1, 3.0), random_floats(rng, size, -3.0, 3.0)
    out = cuda.Array(size)
    cuda.ewise_power(to_gpu(base), to_gpu(exponent), out)
    np.testing.assert_allclose(from_gpu(out, (size,)), base**exponent, rtol=1e-5)


@needs_gpu
@pytest.mark.parametrize("exponent", [5.0, 0.5, 0.0, -1.5, 2.0])
def test_scalar_power(exponent):
    a = random_floats(np.random.default_rng(7), 1000, 0.1, 3.0)
    out = cuda.Array(a.size)
    cuda.scalar_power(to_gpu(a), exponent, out)
    expected = np.power(a, np.float32(exponent))
    np.testing.assert_allclose(from_gpu(out, a.shape), expected, rtol=1e-5)


@needs_gpu
def test_elementwise_special_values_follow_ieee_and_numpy():
    a = np.array([1.0, -1.0, 0.0, np.nan, 2.0, np.inf, -np.inf, 0.0], dtype=np.float32)
    b = np.array([0.0, 0.0, 0.0, 1.0, np.nan, 1.0, 1.0, -0.0], dtype=np.float32)
    gpu_a, gpu_b, out = to_gpu(a), to_gpu(b), cuda.Array(a.size)
    with np.errstate(all="ignore"):
        for name, expected in [
            ("div", a / b),
            ("maximum", np.maximum(a, b)),  # NaN in either input gives NaN
            ("eq", (a == b).astype(np.float32)),
            ("ge", (a >= b).astype(np.float32)),
        ]:
            getattr(cuda, f"ewise_{name}")(gpu_a, gpu_b, out)
            np.testing.assert_array_equal(from_gpu(out, a.shape), expected, err_msg=name)
        cuda.ewise_log(gpu_a, out)
        np.testing.assert_array_equal(from_gpu(out, a.shape), np.log(a))
        small_out = cuda.Array(3)
        cuda.ewise_exp(to_gpu([-np.inf, 100.0, 0.0]), small_out)
        np.testing.assert_array_equal(from_gpu(small_out, (3,)), [0.0, np.inf, 1.0])
        cuda.scalar_maximum(gpu_a, 0.5, out)
        np.testing.assert_array_equal(from_gpu(out, a.shape), np.maximum(a, np.float32(0.5)))


@needs_gpu
def test_elementwise_over_more_elements_than_one_grid():
    size = 65535 * 256 + 1001  # beyond the capped 1-D grid: the grid-stride loop must cover it
    a = np.arange(size, dtype=np.float32) % 1000
    out = cuda.Array(size)
    cuda.scalar_mul(to_gpu(a), 2.0, out)
    result = from_gpu(out, (size,))
    np.testing.assert_array_equal(result[-5000:], 2.0 * a[-5000:])
    np.testing.assert_array_equal(result, 2.0 * a)


@needs_gpu
def test_elementwise_kernels_reject_size_mismatches():
    small, large = cuda.Array(3), cuda.Array(4)
    with pytest.raises(ValueError, match="ewise_mul"):
        cuda.ewise_mul(small, large, large)
    with pytest.raises(ValueError, match="scalar_power"):
        cuda.scalar_power(small, 2.0, large)
    with pytest.raises(ValueError, match="ewise_tanh"):
        cuda.ewise_tanh(large, small)


# ---- reductions ------------------------------------------------------------------------------

REDUCE_SHAPES = [
    (1, 1),
    (7, 1),
    (3, 5),
    (1000, 31),  # one thread per row
    (10, 32),  # one warp per row from here on
    (5, 33),
    (3, 1000),
    (2000, 100),
    (3, 4097),  # few long rows: split into segments, then reduced again
    (2, 100_000),
    (1, 3_000_000),
    (1500, 5000),  # long rows but many of them: no split
]


@needs_gpu
@pytest.mark.parametrize("rows, reduce_size", REDUCE_SHAPES)
def test_reduce_sum(rows, reduce_size):
    a = random_floats(np.random.default_rng(reduce_size), (rows, reduce_size))
    out = cuda.Array(rows)
    cuda.reduce_sum(to_gpu(a), out, reduce_size)
    expected = a.astype(np.float64).sum(axis=1)
    # Float32 sums in any order stay within a small multiple of eps * sum(|a|).
    tolerance = 1e-5 * np.abs(a).astype(np.float64).sum(axis=1) + 1e-6
    assert np.all(np.abs(from_gpu(out, (rows,)) - expected) <= tolerance)


@needs_gpu
@pytest.mark.parametrize("rows, reduce_size", REDUCE_SHAPES)
def test_reduce_max(rows, reduce_size):
    a = random_floats(np.random.default_rng(reduce_size + 1), (rows, reduce_size))
    a[:, -1] = -10.0  # the maximum is never in the last column ...
    a[rows // 2, reduce_size // 2] = 50.0  # ... and sometimes in the middle of a row
    out = cuda.Array(rows)
    cuda.reduce_max(to_gpu(a), out, reduce_size)
    np.testing.assert_array_equal(from_gpu(out, (rows,)), a.max(axis=1))


@needs_gpu
def test_reductions_special_cases():
    a = np.array([[1.0, np.nan, 3.0], [-np.inf, -np.inf, -np.inf], [-5.0, -2.0, -7.0]], np.float32)
    out = cuda.Array(3)
    cuda.reduce_max(to_gpu(a), out, 3)
    np.testing.assert_array_equal(from_gpu(out, (3,)), a.max(axis=1))
    longer = np.arange(20, dtype=np.float32)  # the buffer may be longer than rows * reduce_size
    cuda.reduce_sum(to_gpu(longer), out, 4)
    np.testing.assert_array_equal(from_gpu(out, (3,)), longer[:12].reshape(3, 4).sum(axis=1))
    cuda.reduce_sum(cuda.Array(0), out, 0)  # empty blocks sum to 0
    np.testing.assert_array_equal(from_gpu(out, (3,)), np.zeros(3))
    cuda.reduce_sum(to_gpu(longer), cuda.Array(0), 5)  # no outputs: nothing to do
    with pytest.raises(ValueError, match="reduce_max"):
        cuda.reduce_max(cuda.Array(0), out, 0)
    with pytest.raises(ValueError, match="reduce_sum"):
        cuda.reduce_sum(to_gpu(longer), out, 7)  # needs 21 elements


# ---- matmul ----------------------------------------------------------------------------------

MATMUL_SIZES = [
    (1, 1, 1),
    (1, 100, 1),
    (2, 3, 4),
    (16, 16, 16),
    (64, 64, 64),
    (72, 73, 74),
    (65, 17, 129),
    (128, 128, 128),
    (1, 300, 200),
    (300, 5, 1),
    (129, 1000, 67),
    (500, 64, 700),
]


@needs_gpu
@pytest.mark.parametrize("m, n, p", MATMUL_SIZES)
def test_matmul(m, n, p):
    rng = np.random.default_rng(m * 10_000 + n * 100 + p)
    a, b = random_floats(rng, (m, n), -1, 1), random_floats(rng, (n, p), -1, 1)
    out = cuda.Array(m * p)
    cuda.matmul(to_gpu(a), to_gpu(b), out, m, n, p)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(from_gpu(out, (m, p)), expected, rtol=1e-4, atol=2e-6 * n)


@needs_gpu
def test_matmul_edge_cases():
    out = to_gpu(np.full(15, 9.0))
    cuda.matmul(cuda.Array(0), cuda.Array(0), out, 3, 0, 5)  # empty inner dimension: zeros
    np.testing.assert_array_equal(from_gpu(out, (15,)), np.zeros(15))
    cuda.matmul(cuda.Array(0), to_gpu(np.ones(20)), out, 0, 4, 5)  # no rows: nothing written
    a, b = np.arange(6, dtype=np.float32), np.arange(12, dtype=np.float32)
    longer = to_gpu(np.concatenate([b, [100.0, 200.0]]))  # buffers may be longer than needed
    cuda.matmul(to_gpu(a), longer, out, 2, 3, 4)
    np.testing.assert_array_equal(from_gpu(out, (2, 4)), a.reshape(2, 3) @ b.reshape(3, 4))
    with pytest.raises(ValueError, match="matmul"):
        cuda.matmul(to_gpu(a), to_gpu(b), cuda.Array(7), 2, 3, 4)


@needs_gpu
def test_synchronize_after_work():
    out = cuda.Array(1000)
    cuda.fill(out, 1.0)
    cuda.synchronize()
    assert cuda.device_name()


# ---- the kernels on the CPU emulator (no GPU needed) ------------------------------------------

# Small limits for the emulated build, so that test arrays of a few thousand elements already
# run the grid-stride loops (3-block grids), the matmul kernel's loop over tiles (2 blocks) and
# the multi-pass reductions (segments of 40 elements).
EMULATOR_SUBSTITUTIONS = [
    ("kMaxGridBlocks = 65535", "kMaxGridBlocks = 3"),
    ("static_cast<size_t>(INT32_MAX)", "static_cast<size_t>(2)"),
    ("kReduceFewRows = 1024", "kReduceFewRows = 64"),
    ("kReduceSegment = 4096", "kReduceSegment = 40"),
]
KERNEL_LAUNCH = re.compile(r"(\b[\w:]+(?:<[\w:, ]*>)?)<<<(.*?)>>>\(")


def build_emulated_backend(directory: Path) -> Path:
    """Compile ndarray_backend_cuda.cu with g++ against the CPU emulator; returns the module."""
    import pybind11

    source = (SOURCE_DIR / "ndarray_backend_cuda.cu").read_text()
    source, launches = KERNEL_LAUNCH.subn(r"emu::Launch(\2, \1, ", source)
    assert launches >= 10, "kernel launches not found in the CUDA source"
    for old, new in EMULATOR_SUBSTITUTIONS:
        assert old in source, f"{old!r} is gone from the CUDA source: update EMULATOR_SUBSTITUTIONS"
        source = source.replace(old, new)
    include = directory / "include"
    include.mkdir()
    emulator = SOURCE_DIR / "cuda_cpu_emulator.cuh"
    (include / "cuda_runtime.h").write_text(f'#include "{emulator}"\n')
    cpp = directory / "ndarray_backend_cuda_emulated.cpp"
    cpp.write_text(source)
    module = directory / f"ndarray_backend_cuda{sysconfig.get_config_var('EXT_SUFFIX')}"
    command = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wno-unknown-pragmas"]
    # A namespace of its own, so its types do not clash with the installed module's in
    # pybind11's process-wide type registry.
    command += ["-Dneedle=needle_emulated"]
    # SOURCE_DIR: the source's own headers (kernel_list.h), as next to the original file.
    command += ["-I", str(include), "-I", str(SOURCE_DIR), "-I", pybind11.get_include()]
    command += ["-I", sysconfig.get_paths()["include"], str(cpp), "-o", str(module)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-5000:]
    return module


@pytest.mark.slow
@pytest.mark.skipif(EMULATED, reason="already running on the emulator")
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("g++") is None,
    reason="the CUDA emulator needs Linux (ucontext fibers) and g++",
)
@pytest.mark.skipif(
    importlib.util.find_spec("pybind11") is None, reason="pybind11 is not installed"
)
def test_kernels_on_the_cpu_emulator(tmp_path):
    module = build_emulated_backend(tmp_path)
    # The two tests sized for real GPUs (17 M elements) are left out: the small emulator grid
    # limits exercise the same loops.
    # test_kernel_contract.py checks every kernel of the table (only its cuda cases run here).
    selection = "not emulator and not more_elements_than_one_grid and not large_view"
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += [__file__, str(Path(__file__).with_name("test_kernel_contract.py")), "-k", selection]
    env = {**os.environ, EMULATOR_VARIABLE: str(module)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 240, result.stdout[-2000:]
