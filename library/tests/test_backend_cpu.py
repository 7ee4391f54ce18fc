"""The C++ CPU backend's kernels called directly (Array / from_numpy / to_numpy), numpy as oracle.

These tests sit below NDArray: each one builds flat buffers, calls one kernel with explicit
shape/strides/offset or sizes, and compares with the same computation in numpy. Strided views
are made by numpy itself (transposes, slices with steps, flips, broadcasts), and their element
strides and offsets are read back from numpy, so the oracle never shares code with the kernel.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

try:
    from needle.backend_ndarray import ndarray_backend_cpu as cpu
except ImportError as error:  # the native module is optional (numpy backends still work)
    pytest.skip(f"C++ CPU backend not built: {error}", allow_module_level=True)

pytestmark = pytest.mark.hw3

FLOAT_BYTES = 4


def to_array(x):
    """A backend Array holding a copy of x (as compact float32)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    array = cpu.Array(x.size)
    cpu.from_numpy(x, array)
    return array


def compact_strides(shape):
    strides, step = [], 1
    for dim in reversed(shape):
        strides.insert(0, step)
        step *= dim
    return strides


def to_numpy(array, shape):
    """The first prod(shape) elements of a compact Array as a numpy array of that shape."""
    return cpu.to_numpy(array, list(shape), compact_strides(shape), 0)


def view_layout(base, view):
    """(shape, strides, offset) of a numpy view of the 1-D array base, counted in elements."""
    offset_bytes = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    assert offset_bytes % FLOAT_BYTES == 0
    strides = [s // FLOAT_BYTES for s in view.strides]
    return list(view.shape), strides, offset_bytes // FLOAT_BYTES


@pytest.fixture
def threads():
    """Set the kernels' thread count inside a test; restored afterwards."""
    before = cpu.get_num_threads()
    yield cpu.set_num_threads
    cpu.set_num_threads(before)


# ---- buffers and conversion ------------------------------------------------------------------


def test_module_attributes_and_array():
    assert cpu.__device_name__ == "cpu"
    assert cpu.__tile_size__ == 8
    array = cpu.Array(37)
    assert array.size == 37
    assert array.ptr() % 256 == 0, "storage is 256-byte aligned"
    assert cpu.Array(0).size == 0


def test_big_buffers_are_recycled():
    """A freed buffer of 1 MB or more is handed to the next allocation of its size (no fresh
    pages to fault in and zero); small ones are not kept."""
    floats = 1 << 20  # 4 MB
    first = cpu.Array(floats)
    address = first.ptr()
    del first
    second = cpu.Array(floats)
    assert second.ptr() == address
    assert second.size == floats
    # A recycled buffer is a whole new array: writing it does not touch live ones.
    live = to_array(np.arange(floats, dtype=np.float32))
    cpu.fill(second, 2.5)
    np.testing.assert_array_equal(to_numpy(live, (floats,))[:3], [0.0, 1.0, 2.0])


RECYCLING_SCRIPT = """
import os, sys
from needle.backend_ndarray import ndarray_backend_cpu as cpu

def resident_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

before = resident_mb()
arrays = []
for i in range(60):  # 60 buffers of 8 MB, each of its own size, all touched
    array = cpu.Array((2 << 20) + 1024 * i)
    cpu.fill(array, 1.0)
    arrays.append(array)
del arrays
print(resident_mb() - before)
"""


@pytest.mark.parametrize("cache_mb, at_most", [("256", 256 + 48), ("0", 48)])
def test_recycled_buffers_stay_within_the_cap(cache_mb, at_most):
    """What the cache keeps after 480 MB of freed buffers is bounded by NEEDLE_CPU_CACHE_MB
    (0: nothing is kept, the memory goes back at once)."""
    env = dict(os.environ, NEEDLE_CPU_CACHE_MB=cache_mb)
    result = subprocess.run(
        [sys.executable, "-c", RECYCLING_SCRIPT], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    kept_mb = int(result.stdout.strip())
    assert kept_mb <= at_most, f"{kept_mb} MB still resident with a {cache_mb} MB cache"


PEAK_SCRIPT = """
import os, sys
from needle.backend_ndarray import ndarray_backend_cpu as cpu

def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024

before = peak_mb()
for round in range(2):  # 40 live buffers of about 8 MB, each size new, then all freed
    arrays = []
    for i in range(40):
        array = cpu.Array((2 << 20) + 1024 * (40 * round + i))
        cpu.fill(array, 1.0)
        arrays.append(array)
    del arrays
print(peak_mb() - before)
"""


def test_the_cache_does_not_raise_the_peak_memory():
    """Buffers of sizes never asked for again stay cached, but a miss first gives back as
    much as it allocates: the second round of 320 MB peaks where the first did, not at
    640 MB, even with room for 4 GB in the cache."""
    env = dict(os.environ, NEEDLE_CPU_CACHE_MB="4096")
    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.strip())
    assert 300 <= peak_mb <= 320 + 48, f"peak grew by {peak_mb} MB for 320 MB of live arrays"


def test_from_numpy_to_numpy_roundtrip_and_strided_copy():
    x = np.random.randn(5, 6).astype(np.float32)
    array = to_array(x)
    np.testing.assert_array_equal(to_numpy(array, (5, 6)), x)
    # to_numpy with element strides, an offset and a negative stride (a flipped column slice)
    flat = x.reshape(-1)
    view = flat.reshape(5, 6)[1:4, ::-2]
    shape, strides, offset = view_layout(flat, view)
    got = cpu.to_numpy(array, shape, strides, offset)
    np.testing.assert_array_equal(got, view)
    got[...] = 0  # a copy: writing to it leaves the buffer alone
    np.testing.assert_array_equal(to_numpy(array, (5, 6)), x)
    # from_numpy converts other dtypes and layouts
    array64 = to_array(np.arange(12, dtype=np.float64).reshape(3, 4).T)
    np.testing.assert_array_equal(to_numpy(array64, (4, 3)), np.arange(12).reshape(3, 4).T)


def test_conversion_errors_are_value_errors():
    array = cpu.Array(4)
    with pytest.raises(ValueError):
        cpu.from_numpy(np.zeros(5, dtype=np.float32), array)
    with pytest.raises(ValueError):
        cpu.to_numpy(array, [3], [2], 0)  # reaches element 4 of 4


def test_fill():
    array = cpu.Array(300_001)
    cpu.fill(array, 2.5)
    np.testing.assert_array_equal(to_numpy(array, (300_001,)), np.full(300_001, 2.5, np.float32))


# ---- compact / setitem -----------------------------------------------------------------------


def strided_views(base):
    """Named numpy views of the 1-D array `base` (size 2 * 3 * 4 * 5 * 6 * 7 * 2 = 10080)."""
    b7 = base.reshape(2, 3, 4, 5, 6, 7, 2)
    b2 = base[: 97 * 101].reshape(97, 101)
    return {
        "compact": b7,
        "transpose_2d": b2.T,
        "transpose_2d_tiles": base[: 64 * 96].reshape(64, 96).T,
        "slice_steps": b2[3:90:4, 5:100:3],
        "flip_rows": b2[::-1],
        "flip_cols": b2[:, ::-1],
        "flip_both": b2[::-1, ::-2],
        "flipped_transpose": b2[::-1].T,
        "broadcast_row": np.broadcast_to(base[:101], (40, 101)),
        "broadcast_col": np.broadcast_to(base[:40, None], (40, 101)),
        "broadcast_middle": np.broadcast_to(base[:60].reshape(3, 1, 20), (3, 50, 20)),
        "permute_4d": base[: 8 * 9 * 10 * 11].reshape(8, 9, 10, 11).transpose(0, 3, 1, 2),
        "permute_4d_nhwc": base[: 2 * 16 * 15 * 20].reshape(2, 16, 15, 20).transpose(0, 2, 3, 1),
        "nchw_to_nhwc_3_channels": base[: 2 * 3 * 40 * 41]
        .reshape(2, 3, 40, 41)
        .transpose(0, 2, 3, 1),
        "nhwc_to_nchw_3_channels": base[: 2 * 40 * 41 * 3]
        .reshape(2, 40, 41, 3)
        .transpose(0, 3, 1, 2),
        "permute_7d": b7.transpose(6, 0, 5, 1, 4, 2, 3),
        "slice_7d": b7[1:, ::2, 1:3, ::-1, 2:5, ::3, :1],
        "size_one_dims": base[:30].reshape(1, 5, 1, 6, 1)[:, ::2],
        "scalar_like": base[7:8].reshape(1, 1),
        "offset_only": base[5:25].reshape(4, 5),
        "empty": base[:0].reshape(0, 3),
    }


BASE_SIZE = 2 * 3 * 4 * 5 * 6 * 7 * 2


@pytest.mark.parametrize("name", list(strided_views(np.zeros(BASE_SIZE, np.float32))))
def test_compact_matches_numpy(name):
    base = np.random.randn(BASE_SIZE).astype(np.float32)
    view = strided_views(base)[name]
    shape, strides, offset = view_layout(base, view)
    out = cpu.Array(max(view.size, 1))
    cpu.compact(to_array(base), out, shape, strides, offset)
    np.testing.assert_array_equal(to_numpy(out, view.shape), np.ascontiguousarray(view))


WRITABLE_VIEWS = [
    name
    for name in strided_views(np.zeros(BASE_SIZE, np.float32))
    if not name.startswith("broadcast")
]


@pytest.mark.parametrize("name", WRITABLE_VIEWS)
def test_ewise_setitem_matches_numpy(name):
    base = np.random.randn(BASE_SIZE).astype(np.float32)
    expected = base.copy()
    view = strided_views(expected)[name]
    values = np.random.randn(*view.shape).astype(np.float32)
    view[...] = values
    shape, strides, offset = view_layout(expected, view)
    out = to_array(base)
    cpu.ewise_setitem(to_array(values), out, shape, strides, offset)
    np.testing.assert_array_equal(to_numpy(out, (BASE_SIZE,)), expected)


@pytest.mark.parametrize("name", WRITABLE_VIEWS)
def test_scalar_setitem_matches_numpy(name):
    base = np.random.randn(BASE_SIZE).astype(np.float32)
    expected = base.copy()
    view = strided_views(expected)[name]
    view[...] = -3.25
    shape, strides, offset = view_layout(expected, view)
    out = to_array(base)
    cpu.scalar_setitem(view.size, -3.25, out, shape, strides, offset)
    np.testing.assert_array_equal(to_numpy(out, (BASE_SIZE,)), expected)


def random_view(rng, base):
    """A random view of base: reshape to up to 7 dims, permute, slice with +-steps, broadcast."""
    ndim = int(rng.integers(1, 8))
    shape = [int(rng.integers(1, 5)) for _ in range(ndim)]
    size = int(np.prod(shape))
    start = int(rng.integers(0, base.size - size + 1))
    view = base[start : start + size].reshape(shape).transpose(rng.permutation(ndim))
    slices = []
    for dim in view.shape:
        step = int(rng.choice([1, 1, 2, -1, -2]))
        lo = int(rng.integers(0, dim))
        slices.append(slice(lo, None, step) if step > 0 else slice(lo, None, step))
    view = view[tuple(slices)]
    if rng.random() < 0.3:  # broadcast a size-1 axis
        axis = int(rng.integers(0, view.ndim))
        view = view[(slice(None),) * axis + (slice(0, 1),)]
        new_shape = list(view.shape)
        new_shape[axis] = int(rng.integers(2, 5))
        view = np.broadcast_to(view, new_shape)
    return view


def test_compact_random_views_up_to_7d():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(4096).astype(np.float32)
    array = to_array(base)
    for _ in range(300):
        view = random_view(rng, base)
        shape, strides, offset = view_layout(base, view)
        out = cpu.Array(max(view.size, 1))
        cpu.compact(array, out, shape, strides, offset)
        np.testing.assert_array_equal(to_numpy(out, view.shape), np.ascontiguousarray(view))


def test_big_transpose_and_permute_use_threads_correctly(threads):
    base = np.random.randn(1 << 20).astype(np.float32)
    array = to_array(base)
    views = [
        base.reshape(1024, 1024).T,
        base[: 1000 * 1048].reshape(1000, 1048)[::-1, 3:].T,
        base.reshape(16, 32, 32, 64).transpose(0, 3, 1, 2),
        base.reshape(64, 64, 256)[:, ::2, ::-1].transpose(2, 0, 1),
    ]
    for count in (1, 2):
        threads(count)
        for view in views:
            shape, strides, offset = view_layout(base, view)
            out = cpu.Array(view.size)
            cpu.compact(array, out, shape, strides, offset)
            np.testing.assert_array_equal(to_numpy(out, view.shape), np.ascontiguousarray(view))
            # and back: scatter the compact copy into a zeroed buffer through the same view
            target = np.zeros_like(base)
            np.lib.stride_tricks.as_strided(
                target[offset:], view.shape, [s * FLOAT_BYTES for s in strides]
            )[...] = view
            written = to_array(np.zeros_like(base))
            cpu.ewise_setitem(out, written, shape, strides, offset)
            np.testing.assert_array_equal(to_numpy(written, base.shape), target)


def test_strided_kernels_reject_out_of_bounds_views():
    array, out = cpu.Array(10), cpu.Array(10)
    with pytest.raises(ValueError):
        cpu.compact(array, out, [3, 4], [4, 1], 0)  # reaches element 11
    with pytest.raises(ValueError):
        cpu.compact(array, out, [3], [-1], 1)  # reaches element -1
    with pytest.raises(ValueError):
        cpu.compact(array, cpu.Array(5), [2, 3], [3, 1], 0)  # out too small
    with pytest.raises(ValueError):
        cpu.ewise_setitem(cpu.Array(2), out, [2, 2], [2, 1], 0)  # input too small
    with pytest.raises(ValueError):
        cpu.scalar_setitem(5, 1.0, out, [2, 2], [2, 1], 0)  # size mismatch


# ---- elementwise -----------------------------------------------------------------------------

# Every element-wise kernel is checked against numpy on random inputs of every size by
# test_kernel_contract.py (which takes the list of kernels from the kernel table); here are the
# C++ backend's special cases.


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, -1.0, 0.5, 3.0, -2.5])
def test_scalar_power_special_exponents(exponent):
    a = np.abs(np.random.randn(1001)).astype(np.float32) + 0.05
    a[:3] = [0.0, 1.0, np.inf]
    out = cpu.Array(a.size)
    cpu.scalar_power(to_array(a), exponent, out)
    with np.errstate(divide="ignore"):
        expected = np.power(a, np.float32(exponent))
    np.testing.assert_allclose(to_numpy(out, a.shape), expected, rtol=2e-6, atol=0)


def test_maximum_propagates_nan():
    a = np.array([1.0, np.nan, 3.0, np.nan], np.float32)
    b = np.array([np.nan, 2.0, 1.0, np.nan], np.float32)
    out = cpu.Array(4)
    cpu.ewise_maximum(to_array(a), to_array(b), out)
    np.testing.assert_array_equal(to_numpy(out, (4,)), np.maximum(a, b))


def test_ewise_size_mismatch_is_value_error():
    with pytest.raises(ValueError):
        cpu.ewise_add(cpu.Array(3), cpu.Array(4), cpu.Array(3))
    with pytest.raises(ValueError):
        cpu.ewise_exp(cpu.Array(3), cpu.Array(4))


def unary_inputs():
    """Values over every range the approximations split on, plus special values."""
    rng = np.random.default_rng(2)
    parts = [
        rng.uniform(-1, 1, 20000),
        rng.uniform(-20, 20, 20000),
        rng.uniform(-110, 95, 20000),
        np.exp(rng.uniform(-100, 88, 20000)),  # log: many binades
        np.exp(rng.uniform(-103, -87, 2000)),  # denormal range
        rng.uniform(0.6, 1.6, 20000),  # log near 1
        10.0 ** rng.uniform(-30, -3, 2000) * rng.choice([-1, 1], 2000),  # tanh / exp near 0
        [0.0, -0.0, 1.0, -1.0, 88.7, 88.8, -87.3, -103.9, -104.5, 9.0, 9.2, -9.2, 1e-45],
        [np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1.17549435e-38],
    ]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)


def assert_close_ulps(got, exact, rel):
    """got (float32) within rel of exact (float64 rounded to float32), exact where special."""
    with np.errstate(over="ignore"):
        expected = exact.astype(np.float32)
    special = ~np.isfinite(expected) | (expected == 0)
    np.testing.assert_array_equal(got[special], expected[special])
    tiny = np.abs(expected) < np.finfo(np.float32).tiny  # denormals: absolute precision only
    np.testing.assert_allclose(got[tiny], expected[tiny], rtol=0, atol=3e-45)
    normal = ~special & ~tiny
    np.testing.assert_allclose(got[normal], expected[normal], rtol=rel, atol=0)


@pytest.mark.parametrize(
    "name, exact",
    [("ewise_exp", np.exp), ("ewise_log", np.log), ("ewise_tanh", np.tanh)],
)
def test_unary_math_is_accurate_to_a_few_ulps(name, exact):
    x = unary_inputs()
    out = cpu.Array(x.size)
    getattr(cpu, name)(to_array(x), out)
    with np.errstate(all="ignore"):
        reference = exact(x.astype(np.float64))
    assert_close_ulps(to_numpy(out, x.shape), reference, rel=3e-7)


# ---- reductions ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduce_size", [1, 2, 3, 31, 63, 64, 100, 8192, 8193, 20000])
def test_reductions_match_numpy(reduce_size):
    outputs = max(1, 200_000 // reduce_size)
    a = np.random.randn(outputs, reduce_size).astype(np.float32)
    array, out = to_array(a), cpu.Array(outputs)
    cpu.reduce_max(array, out, reduce_size)
    np.testing.assert_array_equal(to_numpy(out, (outputs,)), a.max(axis=1))
    cpu.reduce_sum(array, out, reduce_size)
    exact = a.astype(np.float64).sum(axis=1)
    scale = np.abs(a).astype(np.float64).sum(axis=1)
    np.testing.assert_array_less(np.abs(to_numpy(out, (outputs,)) - exact), 1e-6 * scale + 1e-30)


def test_reduce_whole_array_and_nan():
    a = np.random.rand(1_000_003).astype(np.float32)
    out = cpu.Array(1)
    cpu.reduce_sum(to_array(a), out, a.size)
    np.testing.assert_allclose(to_numpy(out, (1,)), [a.astype(np.float64).sum()], rtol=1e-6)
    for reduce_size in (4, 1_000_003):  # short rows and long rows take different paths
        b = a[: (a.size // reduce_size) * reduce_size].copy()
        b[reduce_size // 2] = np.nan
        result = cpu.Array(b.size // reduce_size)
        cpu.reduce_max(to_array(b), result, reduce_size)
        np.testing.assert_array_equal(
            to_numpy(result, (result.size,)), b.reshape(-1, reduce_size).max(axis=1)
        )


def test_reduction_errors():
    with pytest.raises(ValueError):
        cpu.reduce_sum(cpu.Array(5), cpu.Array(2), 3)
    with pytest.raises(ValueError):
        cpu.reduce_max(cpu.Array(5), cpu.Array(1), 0)  # numpy: max of nothing is an error
    out = to_array(np.ones(3))
    cpu.reduce_sum(cpu.Array(0), out, 0)  # and a sum of nothing is 0
    np.testing.assert_array_equal(to_numpy(out, (3,)), np.zeros(3))


# ---- matmul ----------------------------------------------------------------------------------

MATMUL_SIZES = [
    (1, 1, 1),
    (1, 7, 1),
    (7, 1, 7),
    (1, 300, 50),
    (8, 8, 8),
    (6, 16, 16),
    (72, 73, 74),
    (129, 257, 65),
    (145, 513, 33),  # one row past the 144-row block, one past two 256-deep slices
    (37, 19, 4097),  # one column past the 4080-column panel
    (256, 256, 256),
]


def check_matmul(m, n, p):
    a = np.random.randn(m, n).astype(np.float32)
    b = np.random.randn(n, p).astype(np.float32)
    out = cpu.Array(m * p)
    cpu.fill(out, np.nan)  # the result must overwrite whatever was there
    cpu.matmul(to_array(a), to_array(b), out, m, n, p)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = 1e-6 * n * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30
    got = to_numpy(out, (m, p))
    assert np.all(np.abs(got - exact) <= bound), f"max error {np.abs(got - exact).max()}"
    return got


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("m, n, p", MATMUL_SIZES)
def test_matmul_matches_numpy(m, n, p, count, threads):
    threads(count)  # 3 threads cut C into an uneven grid of blocks
    check_matmul(m, n, p)


def to_tiles(x, tile=8):
    rows, cols = x.shape
    return x.reshape(rows // tile, tile, cols // tile, tile).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("m, n, p", [(8, 8, 8), (16, 24, 8), (64, 48, 80), (152, 264, 136)])
def test_matmul_tiled_matches_numpy(m, n, p):
    a = np.random.randn(m, n).astype(np.float32)
    b = np.random.randn(n, p).astype(np.float32)
    out = cpu.Array(m * p)
    cpu.fill(out, 7.0)  # overwritten, not accumulated into
    cpu.matmul_tiled(to_array(to_tiles(a)), to_array(to_tiles(b)), out, m, n, p)
    got = to_numpy(out, (m // 8, p // 8, 8, 8))
    np.testing.assert_allclose(got, to_tiles(a @ b), rtol=1e-4, atol=1e-4)


def optional_kernel(name):
    """The C++ backend's optional fast path ``name``; skips where it was left out (a student's
    backend need not have it: NDArray falls back to the required kernels)."""
    if not hasattr(cpu, name):
        pytest.skip(f"this build has no {name} (an optional fast path)")
    return getattr(cpu, name)


@pytest.mark.parametrize("p", [1, 16, 40, 128, 129, 300])
@pytest.mark.parametrize("count", [1, 3])
def test_matmul_strided_reads_an_im2col_view(p, count, threads):
    """A convolution's im2col view (3x3 taps, stride 2, every tap's channels) times a matrix:
    narrow products read the view in place, wider ones pack it (both kinds, ragged edges)."""
    matmul_strided = optional_kernel("matmul_strided")
    threads(count)
    x = np.random.randn(3, 11, 13, 5).astype(np.float32)
    flat = x.reshape(-1)
    view = np.lib.stride_tricks.as_strided(
        flat, (3, 5, 6, 3, 3, 5), np.array([11 * 13 * 5, 2 * 13 * 5, 2 * 5, 13 * 5, 5, 1]) * 4
    )
    shape, strides, offset = view_layout(flat, view)
    b = np.random.randn(45, p).astype(np.float32)
    out = cpu.Array(90 * p)
    cpu.fill(out, np.nan)
    matmul_strided(to_array(flat), to_array(b), out, shape, strides, offset, 3, p)
    rows = view.reshape(90, 45).astype(np.float64)
    expected = rows @ b.astype(np.float64)
    bound = 1e-5 * (np.abs(rows) @ np.abs(b.astype(np.float64))) + 1e-30
    assert np.all(np.abs(to_numpy(out, (90, p)) - expected) <= bound)


@pytest.mark.parametrize(
    "rows, cols", [(1, 7), (16, 1), (17, 3), (2048, 32), (1000, 257), (5, 700)]
)
def test_reduce_sum_columns_matches_numpy(rows, cols):
    reduce_sum_columns = optional_kernel("reduce_sum_columns")
    a = np.random.randn(rows, cols).astype(np.float32)
    a[rows // 2, cols // 2] = 1e3  # one big term: a pairwise sum keeps the small ones
    out = cpu.Array(cols)
    cpu.fill(out, np.nan)
    reduce_sum_columns(to_array(a), out, rows)
    expected = a.astype(np.float64).sum(axis=0)
    bound = 1e-6 * np.abs(a).astype(np.float64).sum(axis=0) + 1e-30
    assert np.all(np.abs(to_numpy(out, (cols,)) - expected) <= bound)


@pytest.mark.parametrize("op", ["add", "mul", "div"])
@pytest.mark.parametrize(
    "view", ["repeated_row", "value_per_row", "value_per_row_step_3", "channels_of_nchw"]
)
def test_strided_kernels_read_broadcasts(op, view):
    """The loops for a repeated row (a bias) and one value per row (a normaliser), and the
    general walker (a per-channel vector over NCHW), against numpy."""
    kernel = optional_kernel(f"ewise_{op}_strided")
    base = np.random.rand(600).astype(np.float32) + 0.5
    views = {
        "repeated_row": np.broadcast_to(base[:32], (2048, 32)),
        "value_per_row": np.broadcast_to(base[:300, None], (300, 17)),
        "value_per_row_step_3": np.broadcast_to(base[::3][:150, None], (150, 40)),
        "channels_of_nchw": np.broadcast_to(base[:6, None, None], (4, 6, 5, 5)),
    }
    b = views[view]
    a = np.random.randn(*b.shape).astype(np.float32)
    shape, strides, offset = view_layout(base, b)
    out = cpu.Array(a.size)
    kernel(to_array(a), to_array(base), out, shape, strides, offset)
    expected = {"add": np.add, "mul": np.multiply, "div": np.divide}[op](a, b)
    np.testing.assert_allclose(to_numpy(out, a.shape), expected, rtol=1e-6)


def test_matmul_errors():
    with pytest.raises(ValueError):
        cpu.matmul(cpu.Array(5), cpu.Array(6), cpu.Array(4), 2, 3, 2)
    with pytest.raises(ValueError):
        cpu.matmul_tiled(cpu.Array(64), cpu.Array(64), cpu.Array(64), 8, 8, 7)


# ---- threads ---------------------------------------------------------------------------------


def test_num_threads_setting(threads):
    threads(3)
    assert cpu.get_num_threads() == 3
    threads(1)
    assert cpu.get_num_threads() == 1
    with pytest.raises(ValueError):
        cpu.set_num_threads(0)


def test_one_and_two_threads_agree(threads):
    a = np.random.randn(600_000).astype(np.float32)
    b = np.random.randn(600_000).astype(np.float32)
    results = []
    for count in (1, 2):
        threads(count)
        product, out, total = cpu.Array(a.size), cpu.Array(a.size), cpu.Array(1)
        cpu.ewise_mul(to_array(a), to_array(b), product)
        cpu.ewise_tanh(product, out)
        cpu.reduce_sum(out, total, a.size)
        rows = cpu.Array(600)
        cpu.reduce_max(out, rows, 1000)
        np.random.seed(1)
        matrix = check_matmul(200, 300, 170)
        results.append(
            (to_numpy(out, a.shape), to_numpy(total, (1,)), to_numpy(rows, (600,)), matrix)
        )
    for one, two in zip(*results):
        # The kernels are written so that each output is computed by the same sequence of
        # operations whatever the thread count; allow a rounding error anyway.
        np.testing.assert_allclose(one, two, rtol=1e-6, atol=1e-6)


def test_concurrent_python_threads(threads):
    """Kernels release the GIL; two Python threads sharing the pool still get right answers."""
    threads(2)
    a = np.random.randn(150, 160).astype(np.float32)
    b = np.random.randn(160, 170).astype(np.float32)
    expected = a @ b
    errors = []

    def work():
        for _ in range(5):
            out = cpu.Array(150 * 170)
            cpu.matmul(to_array(a), to_array(b), out, 150, 160, 170)
            errors.append(np.abs(to_numpy(out, (150, 170)) - expected).max())

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(errors) == 15 and max(errors) < 1e-3


# ---- the portable (non-AVX2) code paths ------------------------------------------------------


def test_simd_level_follows_environment():
    level = cpu.simd_level()
    assert level in ("baseline", "avx2+fma")
    if os.environ.get("NEEDLE_CPU_SIMD") == "baseline":
        assert level == "baseline"


@pytest.mark.skipif(
    os.environ.get("NEEDLE_CPU_SIMD") == "baseline", reason="already running the portable paths"
)
def test_portable_paths_pass_this_file():
    """Re-runs this file with NEEDLE_CPU_SIMD=baseline, so that the SSE2 loops and the portable
    matmul micro-kernel (what CPUs without AVX2 run) are checked on this machine too."""
    env = dict(os.environ, NEEDLE_CPU_SIMD="baseline")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
