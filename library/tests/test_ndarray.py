"""NDArray and the kernel backends, checked against numpy on every available device.

numpy is the oracle for values, shapes and strides (numpy counts strides in bytes, NDArray in
float32 elements, so numpy's strides are divided by 4). Views must share the buffer of their
base (same handle object, offset as numpy's), and setitem must write in place.
"""

import pickle

import needle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needle import backend_ndarray as nd
from needle.backend_ndarray.ndarray import BackendDevice
from needle.backend_ndarray.ndarray_backend_numpy import KERNELS

# The ``device`` fixture yields the devices of the selected backend; with NEEDLE_BACKEND=np that is
# numpy's single CPU device, which NDArray does not run on.
pytestmark = pytest.mark.skipif(
    needle.BACKEND != "nd", reason="NDArray tests need NEEDLE_BACKEND=nd (the fixture's devices)"
)
hw3 = pytest.mark.hw3
hw4 = pytest.mark.hw4

ITEMSIZE = 4
FEW_EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _device_must_be_available(request):
    """Fail at once, with the reason, on a device whose backend is not built (rather than once
    per hypothesis example)."""
    if "device" in request.fixturenames:
        device = request.getfixturevalue("device")
        if not device.enabled():
            pytest.fail(f"{device!r} is not available: {device.unavailable_reason}")


def rand(*shape):
    return np.asarray(np.random.randn(*shape), dtype=np.float32)


def numpy_strides(array: np.ndarray) -> tuple:
    return tuple(stride // ITEMSIZE for stride in array.strides)


def numpy_offset(view: np.ndarray, base: np.ndarray) -> int:
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // ITEMSIZE


def assert_same_array(actual: nd.NDArray, expected: np.ndarray, strides="compact", atol=1e-5):
    """Values and shape equal to numpy's ``expected``; strides checked as ``strides`` says:
    "compact" (a new row-major array), "numpy" (exactly ``expected``'s layout) or None."""
    assert isinstance(actual, nd.NDArray), type(actual)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-5, atol=atol)
    if expected.size == 0:  # numpy's strides of empty arrays follow other rules
        return
    if strides == "compact":
        assert actual.strides == numpy_strides(np.empty(expected.shape, np.float32))
    elif strides == "numpy":
        assert actual.strides == numpy_strides(expected)


def assert_view_of(view: nd.NDArray, base: nd.NDArray, view_np: np.ndarray, base_np: np.ndarray):
    """``view`` is a no-copy view of ``base`` laid out exactly as numpy lays out ``view_np``."""
    assert_same_array(view, view_np, strides="numpy")
    assert view._handle is base._handle
    if view_np.size:
        assert view._offset == base._offset + numpy_offset(view_np, base_np)


def int_index_to_slice(idxs):
    """numpy's equivalent of NDArray indexing: ints select a length-1 slice (no axis dropped)."""
    if not isinstance(idxs, tuple):
        idxs = (idxs,)
    return tuple(slice(i, i + 1 if i != -1 else None) if isinstance(i, int) else i for i in idxs)


# =============================================================================================
# construction, conversion, devices
# =============================================================================================

SHAPES = [(), (1,), (5,), (4, 3), (2, 3, 4), (2, 1, 3, 1, 2), (2, 2, 1, 2, 3, 1, 2)]


@hw3
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_roundtrip_numpy(shape, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    assert a.device == device and a.dtype == np.float32 and a.dtype == "float32"
    assert (a.ndim, a.size) == (x.ndim, x.size)
    assert a.is_compact()
    assert_same_array(a, x)
    assert a.numpy().dtype == np.float32


@hw3
def test_constructor_copies(device):
    x = rand(3, 4)
    a = nd.array(x, device=device)
    b = nd.NDArray(a)
    assert b._handle is not a._handle and b.device == device
    b[0, 0] = 100.0
    np.testing.assert_allclose(a.numpy(), x)
    c = nd.NDArray([[1, 2], [3, 4]], device=device)
    assert_same_array(c, np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert nd.asarray(a) is a


@hw3
def test_small_conveniences(device):
    x = rand(3, 4)
    a = nd.array(x, device=device)
    assert_view_of(a.flat, a, x.reshape(-1), x)
    copied = nd.copy(a.permute((1, 0)))
    assert copied._handle is not a._handle
    assert_same_array(copied, x.T.copy())
    assert nd.empty_like(a).shape == (3, 4) and nd.empty_like(a).device == device
    np.testing.assert_array_equal(np.asarray(a), x)
    assert nd.array([[2.5]], device=device).item() == 2.5
    assert isinstance(a, nd.ndarray)
    with pytest.raises(ValueError, match="size 1"):
        a.item()


@hw3
def test_compact_strides():
    assert nd.NDArray.compact_strides((2, 3, 4)) == (12, 4, 1)
    assert nd.NDArray.compact_strides((5,)) == (1,)
    assert nd.NDArray.compact_strides(()) == ()


@hw3
@pytest.mark.parametrize("maker", ["zeros", "ones", "full", "empty"])
def test_module_constructors(maker, device):
    shape = (2, 3)
    if maker == "full":
        a, expected = nd.full(shape, 2.5, device=device), np.full(shape, 2.5)
    elif maker == "empty":
        a, expected = nd.empty(shape, device=device), None
    else:
        a, expected = getattr(nd, maker)(shape, device=device), getattr(np, maker)(shape)
    assert a.shape == shape and a.device == device and a.strides == (3, 1)
    if expected is not None:
        assert_same_array(a, expected.astype(np.float32))


@hw3
def test_device_constructors(device):
    assert_same_array(device.ones(2, 3), np.ones((2, 3), np.float32))
    assert_same_array(device.zeros(2, 3), np.zeros((2, 3), np.float32))
    assert_same_array(device.zeros((4,)), np.zeros(4, np.float32))
    assert_same_array(device.full((2, 2), -1.0), np.full((2, 2), -1.0, np.float32))
    assert device.empty((3, 1)).shape == (3, 1)
    labels = np.array([2, 0, 1, 2])
    assert_same_array(device.one_hot(3, labels), np.eye(3, dtype=np.float32)[labels])


@hw3
def test_device_random_matches_numpy(device):
    np.random.seed(7)
    expected_normal = np.random.randn(3, 4).astype(np.float32)
    expected_uniform = np.random.rand(5).astype(np.float32)
    np.random.seed(7)
    assert_same_array(device.randn(3, 4), expected_normal)
    assert_same_array(device.rand(5), expected_uniform)


def test_device_identity_and_repr():
    assert repr(nd.cpu()) == "cpu()"
    assert repr(nd.cuda()) == "cuda()"
    assert repr(nd.cpu_numpy()) == "cpu_numpy()"
    assert nd.cpu_numpy() == nd.cpu_numpy() and nd.cpu_numpy() is nd.cpu_numpy()
    assert nd.cpu() != nd.cpu_numpy()
    assert BackendDevice("cpu", None) == nd.cpu()
    assert len({nd.cpu(), nd.cpu(), nd.cpu_numpy()}) == 2
    assert nd.cpu_numpy().enabled()
    assert [repr(d) for d in nd.all_devices()] == ["cpu()", "cuda()", "cpu_numpy()"]
    expected_default = nd.cpu() if nd.cpu().enabled() else nd.cpu_numpy()
    assert nd.default_device() == expected_default
    # attribute forwarding to the backend module
    assert nd.cpu_numpy().__tile_size__ == 1
    assert nd.cpu_numpy().ewise_add is nd.cpu_numpy().mod.ewise_add
    with pytest.raises(AttributeError):
        nd.cpu_numpy().no_such_kernel  # noqa: B018


def test_disabled_device_raises_clear_error():
    gpu = BackendDevice("cuda", None, "no CUDA GPU found on this machine")
    assert not gpu.enabled()
    for make in (lambda: gpu.ones(2), lambda: nd.zeros((2,), device=gpu), lambda: gpu.randn(2)):
        with pytest.raises(RuntimeError, match="CUDA backend not available: no CUDA GPU found"):
            make()
    if not nd.cuda().enabled():
        with pytest.raises(RuntimeError, match="CUDA backend not available"):
            nd.array([1.0], device=nd.cuda())


@hw3
def test_to_other_device(device):
    x = rand(3, 2)
    a = nd.array(x, device=device)
    assert a.to(device) is a
    for other in nd.all_devices():
        if other.enabled():
            moved = a.permute((1, 0)).to(other)
            assert moved.device == other
            assert_same_array(moved, x.T, strides=None)


@hw3
def test_astype_and_dtype_errors(device):
    a = nd.array(rand(2, 2), device=device)
    assert a.astype("float32") is a and a.astype(np.float32) is a
    with pytest.raises(TypeError, match="float32 only"):
        a.astype("float64")
    with pytest.raises(TypeError, match="float32 only"):
        nd.array([1, 2], dtype="int32", device=device)
    with pytest.raises(TypeError, match="float32 only"):
        device.ones(2, dtype="bool")


@hw3
def test_repr_str_pickle(device):
    x = np.array([[1.5, 2.0]], dtype=np.float32)
    a = nd.array(x, device=device)
    assert repr(a) == f"NDArray({x}, device={device!r})"
    assert str(a) == str(x)
    b = pickle.loads(pickle.dumps(a.permute((1, 0))))
    assert b.device == device
    assert_same_array(b, x.T, strides=None)
    assert float(nd.array([3.0], device=device)) == 3.0


# =============================================================================================
# views: reshape, permute, broadcast_to, getitem (hw3)
# =============================================================================================

RESHAPES = [
    ((1, 1, 1), (1,)),
    ((4, 6), (2, 12)),
    ((2, 3, 4), (24,)),
    ((2, 3, 4), (4, -1)),
    ((6,), (6, 1)),
    ((2, 3, 4, 5), (5, 4, 3, 2)),
    ((2, 2, 2, 2, 2, 2, 2), (8, 16)),
    ((8, 16), (2, 2, 2, 2, 2, 2, 2)),
]


@hw3
@pytest.mark.parametrize("shape,new_shape", RESHAPES, ids=str)
def test_reshape_is_a_view(shape, new_shape, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    b = a.reshape(new_shape)
    assert_view_of(b, a, x.reshape(new_shape), x)
    c = nd.reshape(a, new_shape)
    assert_view_of(c, a, x.reshape(new_shape), x)


@hw3
def test_reshape_errors(device):
    a = nd.array(rand(4, 6), device=device)
    with pytest.raises(ValueError, match="compact"):
        a.permute((1, 0)).reshape((24,))
    with pytest.raises(ValueError, match="compact"):
        a[1:3, :].reshape((12,))
    with pytest.raises(ValueError, match="cannot reshape"):
        a.reshape((5, 5))
    with pytest.raises(ValueError, match="cannot reshape"):
        nd.reshape(a, (7, -1))
    with pytest.raises(ValueError):
        a.reshape((-1, -1))


@hw3
def test_module_reshape_of_non_compact(device):
    x = rand(4, 6)
    a = nd.array(x, device=device)
    assert_same_array(nd.reshape(a.permute((1, 0)), (3, 8)), x.T.reshape(3, 8))
    # consecutive rows of a bigger buffer: still a view
    rows = nd.reshape(a[1:3, :], (12,))
    assert rows._handle is a._handle
    assert_same_array(rows, x[1:3].reshape(12))
    assert_same_array(
        nd.reshape(nd.broadcast_to(a[:, :1], (4, 3)), (-1,)), np.repeat(x[:, :1], 3, 1).reshape(-1)
    )


PERMUTES = [
    ((4, 3), (1, 0)),
    ((2, 3, 4), (2, 0, 1)),
    ((2, 3, 4, 5), (0, 3, 1, 2)),
    ((1, 4, 1, 3), (3, 2, 1, 0)),
    ((2, 1, 2, 1, 2, 1, 2), (6, 5, 4, 3, 2, 1, 0)),
]


@hw3
@pytest.mark.parametrize("shape,axes", PERMUTES, ids=str)
def test_permute_is_a_view(shape, axes, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    assert_view_of(a.permute(axes), a, np.transpose(x, axes), x)
    assert_view_of(nd.transpose(a, axes), a, np.transpose(x, axes), x)
    assert_view_of(nd.transpose(a), a, np.transpose(x), x)


@hw3
def test_permute_errors(device):
    a = nd.array(rand(2, 3, 4), device=device)
    for bad in [(0, 1), (0, 1, 1), (0, 1, 3)]:
        with pytest.raises(ValueError, match="permutation"):
            a.permute(bad)
    assert a.permute((-1, 0, 1)).shape == (4, 2, 3)


BROADCASTS = [
    ((1, 3), (4, 3)),
    ((3, 1), (3, 5)),
    ((1, 1), (2, 2)),
    ((1, 3, 1), (2, 3, 4)),
    ((2, 1, 3, 1, 2, 1, 2), (2, 5, 3, 1, 2, 4, 2)),
    ((4, 1), (4, 1)),
]


@hw3
@pytest.mark.parametrize("shape,new_shape", BROADCASTS, ids=str)
def test_broadcast_to_is_a_view(shape, new_shape, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    assert_view_of(a.broadcast_to(new_shape), a, np.broadcast_to(x, new_shape), x)
    assert_view_of(nd.broadcast_to(a, new_shape), a, np.broadcast_to(x, new_shape), x)


@hw3
@pytest.mark.parametrize(
    "shape,new_shape",
    [((3,), (4, 3)), ((), (2, 3)), ((2, 1), (5, 2, 4)), ((1,), (1, 1, 1))],
    ids=str,
)
def test_module_broadcast_to_prepends_axes(shape, new_shape, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    assert_view_of(nd.broadcast_to(a, new_shape), a, np.broadcast_to(x, new_shape), x)


@hw3
def test_broadcast_to_errors(device):
    a = nd.array(rand(2, 3), device=device)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        a.broadcast_to((4, 3))
    with pytest.raises(ValueError, match="rank"):
        a.broadcast_to((5, 2, 3))
    with pytest.raises(ValueError):
        nd.broadcast_to(a, (3,))


GETITEMS = [
    ((5, 5), (slice(1, 3), slice(None))),
    ((5, 5), (2, 2)),
    ((5, 5), (slice(None, None, 2), slice(4, 0, -1))),
    ((5, 5), (slice(-3, None), slice(-4, -1))),
    ((5, 5), (slice(-100, 100), -1)),
    ((5, 5), (-2, slice(None, -2, 3))),
    ((5, 5), (slice(None, None, -1), slice(None, None, -2))),
    ((5, 5), (slice(3, 1), slice(None))),
    ((5, 5), 3),
    ((5, 5), (Ellipsis, 1)),
    ((8, 8), (slice(1, 2), slice(3, 4))),
    ((8, 8, 2, 2, 2, 2), (slice(1, 3), slice(5, 8), slice(1, 2), slice(1, 2), slice(0, 1), 1)),
    ((7, 8), (slice(3, 7, 2), slice(2, 8, 3))),
    ((3, 4, 5, 6, 2, 2, 3), (1, slice(None, None, 2), Ellipsis, slice(-2, None))),
]


@hw3
@pytest.mark.parametrize("shape,idxs", GETITEMS, ids=str)
def test_getitem_is_a_view(shape, idxs, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    expected = x[int_index_to_slice(idxs)]
    assert_view_of(a[idxs], a, expected, x)


@hw3
def test_getitem_of_views_composes(device):
    x = rand(6, 7, 8)
    a = nd.array(x, device=device)
    view = a.permute((2, 0, 1))[1:7:2, ::-1, 2:]
    expected = np.transpose(x, (2, 0, 1))[1:7:2, ::-1, 2:]
    assert_view_of(view, a, expected, x)
    assert_view_of(view[-2:, 1, ::3], a, expected[-2:, 1:2, ::3], x)


@hw3
def test_getitem_errors(device):
    a = nd.array(rand(3, 4), device=device)
    with pytest.raises(IndexError, match="out of bounds"):
        a[3, 0]
    with pytest.raises(IndexError, match="out of bounds"):
        a[0, -5]
    with pytest.raises(IndexError, match="too many"):
        a[0, 0, 0]
    with pytest.raises(TypeError, match="ints, slices"):
        a[[0, 1]]
    with pytest.raises(ValueError, match="step"):
        a[::0]


# =============================================================================================
# compact, setitem, fill
# =============================================================================================

COMPACT_CASES = [
    ("permute", (4, 5, 6), lambda v: np.transpose(v, (2, 0, 1)), lambda a: a.permute((2, 0, 1))),
    (
        "broadcast",
        (1, 5, 1),
        lambda v: np.broadcast_to(v, (3, 5, 4)),
        lambda a: a.broadcast_to((3, 5, 4)),
    ),
    ("getitem", (8, 6, 4), lambda v: v[1:7:3, -4:, ::-1], lambda a: a[1:7:3, -4:, ::-1]),
    (
        "getitem_6d",
        (8, 8, 2, 2, 2, 2),
        lambda v: v[1:3, 5:8, 1:2, 0:1, 0:1, 1:2],
        lambda a: a[1:3, 5:8, 1:2, 0:1, 0:1, 1:2],
    ),
    (
        "permute_getitem",
        (9, 9),
        lambda v: v.T[3:7, 2:5],
        lambda a: a.permute((1, 0))[3:7, 2:5],
    ),
    (
        "reshape_7d",
        (2, 3, 4, 1, 2, 3, 2),
        lambda v: np.transpose(v, (6, 5, 4, 3, 2, 1, 0)),
        lambda a: a.permute((6, 5, 4, 3, 2, 1, 0)),
    ),
]


@hw3
@pytest.mark.parametrize("name,shape,np_fn,nd_fn", COMPACT_CASES, ids=[c[0] for c in COMPACT_CASES])
def test_compact(name, shape, np_fn, nd_fn, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    view = nd_fn(a)
    compacted = view.compact()
    assert compacted.is_compact() and compacted._handle is not a._handle
    assert_same_array(compacted, np.ascontiguousarray(np_fn(x)))
    assert compacted.compact() is compacted  # already compact: no copy


@hw3
def test_is_compact(device):
    a = nd.array(rand(4, 5), device=device)
    assert a.is_compact()
    assert not a.permute((1, 0)).is_compact()
    assert not a[1:3].is_compact()  # right strides, but only part of the buffer
    assert not a[0:1].broadcast_to((4, 5)).is_compact()
    assert nd.array(rand(4, 1), device=device).permute((1, 0)).is_compact()  # length-1 axes


SETITEMS = [
    ((5, 5), (slice(1, 4), slice(2, 3))),
    ((5, 5), (slice(None, None, -2), slice(None))),
    ((5, 5), (-1, slice(-3, None))),
    ((8, 8, 2, 2, 2, 2), (slice(1, 3), slice(5, 8), slice(1, 2), slice(1, 2), slice(0, 1), 1)),
    ((2, 3, 4, 5, 2, 2, 3), (1, slice(None, None, 2), Ellipsis, slice(-2, None))),
]


@hw3
@pytest.mark.parametrize("shape,idxs", SETITEMS, ids=str)
def test_setitem_array_in_place(shape, idxs, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    handle, ptr = a._handle, a._handle.ptr()
    np_idxs = int_index_to_slice(idxs)
    values = rand(*x[np_idxs].shape)
    a[idxs] = nd.array(values, device=device)
    x[np_idxs] = values
    assert a._handle is handle and a._handle.ptr() == ptr
    assert_same_array(a, x)


@hw3
@pytest.mark.parametrize("shape,idxs", SETITEMS, ids=str)
def test_setitem_scalar_in_place(shape, idxs, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    handle = a._handle
    a[idxs] = 4.5
    x[int_index_to_slice(idxs)] = 4.5
    assert a._handle is handle
    assert_same_array(a, x)


@hw3
def test_setitem_from_views_and_broadcast(device):
    x = rand(4, 6)
    a = nd.array(x, device=device)
    a[1:3, ::2] = a.permute((1, 0))[0:3, 0:2].permute((1, 0))  # a view of a itself
    x[1:3, ::2] = x.T[0:3, 0:2].T.copy()
    assert_same_array(a, x)
    a[:, 1:2] = nd.array(rand(1, 1) * 0 + 7, device=device)  # broadcast (1, 1) → (4, 1)
    x[:, 1:2] = 7
    assert_same_array(a, x)
    a[0:2, :] = rand(2, 6) * 0 - 3  # a numpy array
    x[0:2, :] = -3
    assert_same_array(a, x)
    a[::-1, :] = a  # source and destination overlap
    x[::-1, :] = x.copy()
    assert_same_array(a, x)
    with pytest.raises(ValueError):
        a[0:2, :] = nd.array(rand(3, 6), device=device)


@hw3
def test_fill_view_only(device):
    x = rand(4, 4)
    a = nd.array(x, device=device)
    a[1:3, 1:3].fill(0.0)
    x[1:3, 1:3] = 0.0
    assert_same_array(a, x)
    a.fill(2.0)
    assert_same_array(a, np.full((4, 4), 2.0, np.float32))


# =============================================================================================
# element-wise ops
# =============================================================================================

EWISE_BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "subtract": (lambda a, b: a - b, lambda a, b: a - b),
    "multiply": (lambda a, b: a * b, lambda a, b: a * b),
    "divide": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (lambda a, b: a.maximum(b), np.maximum),
    "power": (lambda a, b: abs_nd(a) ** b, lambda a, b: np.abs(a) ** b),
    "equal": (lambda a, b: a == b, lambda a, b: a == b),
    "not_equal": (lambda a, b: a != b, lambda a, b: a != b),
    "greater_equal": (lambda a, b: a >= b, lambda a, b: a >= b),
    "greater": (lambda a, b: a > b, lambda a, b: a > b),
    "less": (lambda a, b: a < b, lambda a, b: a < b),
    "less_equal": (lambda a, b: a <= b, lambda a, b: a <= b),
}


def abs_nd(a):
    return a.maximum(-a)


def with_ties(x, y):
    """y with some entries equal to x's, so that comparisons see ties."""
    y = y.copy()
    y.reshape(-1)[::3] = x.reshape(-1)[::3]
    return y


@hw3
@pytest.mark.parametrize("name", list(EWISE_BINARY))
@pytest.mark.parametrize("shape", [(1,), (3, 4), (2, 3, 4, 5)], ids=str)
def test_ewise_binary(name, shape, device):
    nd_fn, np_fn = EWISE_BINARY[name]
    x, y = rand(*shape), rand(*shape)
    y = with_ties(x, y)
    expected = np_fn(x, y).astype(np.float32)
    assert_same_array(nd_fn(nd.array(x, device=device), nd.array(y, device=device)), expected)


@hw3
@pytest.mark.parametrize("name", list(EWISE_BINARY))
def test_ewise_binary_non_compact_inputs(name, device):
    nd_fn, np_fn = EWISE_BINARY[name]
    x, y = rand(4, 6), rand(6, 8)
    a = nd.array(x, device=device)[:, ::2]
    b = nd.array(y, device=device).permute((1, 0))[1:2, :6:2].broadcast_to((4, 3))[:, ::-1]
    x_view, y_view = x[:, ::2], y.T[1:2, :6:2][:, ::-1]
    expected = np_fn(x_view, np.broadcast_to(y_view, (4, 3)))
    assert_same_array(nd_fn(a, b), expected.astype(np.float32))


@hw3
@pytest.mark.parametrize("name", list(EWISE_BINARY))
@pytest.mark.parametrize("scalar", [0.5, -1.0, 2, 0.0])
def test_scalar_binary(name, scalar, device):
    nd_fn, np_fn = EWISE_BINARY[name]
    x = rand(3, 5)
    x[0, :2] = scalar  # ties
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np_fn(x, np.float32(scalar)).astype(np.float32)
    assert_same_array(nd_fn(nd.array(x, device=device), scalar), expected)


@hw3
def test_reflected_and_unary_arithmetic(device):
    x = rand(3, 4) + 3.0
    a = nd.array(x, device=device)
    assert_same_array(2.0 + a, 2.0 + x)
    assert_same_array(2.0 - a, 2.0 - x)
    assert_same_array(3.0 * a, 3.0 * x)
    assert_same_array(3.0 / a, 3.0 / x)
    assert_same_array(2.0**a, 2.0**x)
    assert_same_array(-a, -x)
    # numpy scalars on the left must not turn the result into a numpy array
    result = np.float32(2.0) * a
    assert isinstance(result, nd.NDArray)
    assert_same_array(result, 2.0 * x)


# Each one-input kernel ewise_<fn> of the kernel table is an NDArray method and a function fn.
UNARY_KERNELS = [kernel for kernel in KERNELS if kernel.kind == "map"]


@hw3
@pytest.mark.parametrize("kernel", UNARY_KERNELS, ids=lambda k: k.name.removeprefix("ewise_"))
def test_ewise_unary(kernel, device):
    fn = kernel.name.removeprefix("ewise_")
    x = np.random.uniform(*kernel.domain, size=(5, 6)).astype(np.float32)
    a = nd.array(x, device=device)
    expected = kernel.oracle(a=x.astype(np.float64), out=None).astype(np.float32)
    assert_same_array(getattr(a, fn)(), expected)
    assert_same_array(getattr(nd, fn)(a), expected)
    # like numpy's ufuncs, a transposed view's result keeps its layout (no transposing copy)
    expected_t = kernel.oracle(a=x.T.astype(np.float64), out=None).astype(np.float32)
    assert numpy_strides(expected_t) == (1, 6)
    assert_same_array(getattr(a.permute((1, 0)), fn)(), expected_t, strides="numpy")


@hw3
@pytest.mark.parametrize("name", list(EWISE_BINARY))
def test_ewise_keeps_the_layout_of_transposed_operands(name, device):
    """As numpy's ufuncs do: two operands transposed alike (an NHWC batch seen as NCHW), or
    one with a scalar, give a result laid out like them, from the buffers as they are; any
    other mix gives a compact result."""
    nd_fn, np_fn = EWISE_BINARY[name]
    x, y = rand(2, 3, 4, 5), rand(2, 3, 4, 5)
    y = with_ties(x, y)
    order = (0, 3, 1, 2)
    a = nd.array(x, device=device).permute(order)
    b = nd.array(y, device=device).permute(order)
    expected = np_fn(x.transpose(order), y.transpose(order)).astype(np.float32)
    assert numpy_strides(expected) == a.strides  # numpy keeps the layout too
    assert_same_array(nd_fn(a, b), expected, strides="numpy")
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np_fn(x.transpose(order), np.float32(0.5)).astype(np.float32)
    assert_same_array(nd_fn(a, 0.5), expected, strides="numpy")
    # transposed differently, or a slice (not a whole buffer): a compact result
    c = nd.array(y.transpose(order).copy(), device=device)
    expected = np_fn(x.transpose(order), y.transpose(order)).astype(np.float32)
    assert_same_array(nd_fn(a, c), expected)
    sliced = nd.array(rand(2, 3, 4, 6), device=device)[:, :, :, :5].permute(order)
    assert_same_array(-sliced, -sliced.numpy())


@hw3
def test_ewise_shape_mismatch_names_both_shapes(device):
    a = nd.array(rand(2, 3), device=device)
    b = nd.array(rand(3, 2), device=device)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 2\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(1, 3\)"):
        a * nd.array(rand(1, 3), device=device)


# =============================================================================================
# matmul
# =============================================================================================

MATMUL_DIMS = [
    (16, 16, 16),
    (8, 8, 8),
    (1, 2, 3),
    (3, 4, 5),
    (5, 4, 3),
    (16, 16, 32),
    (64, 64, 64),
    (72, 72, 72),
    (72, 73, 74),
    (74, 73, 72),
    (128, 128, 128),
    (1, 128, 1),
    (127, 1, 9),
]


@hw3
@pytest.mark.parametrize("m,n,p", MATMUL_DIMS, ids=str)
def test_matmul_2d(m, n, p, device):
    x, y = rand(m, n), rand(n, p)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    assert_same_array(a @ b, x @ y, atol=1e-4)
    assert_same_array(nd.matmul(a, b), x @ y, atol=1e-4, strides=None)


@hw3
def test_matmul_non_compact_operands(device):
    x, y = rand(24, 16), rand(40, 24)
    a = nd.array(x, device=device).permute((1, 0))  # (16, 24)
    b = nd.array(y, device=device).permute((1, 0))[:, ::5]  # (24, 8)
    assert_same_array(a @ b, x.T @ y.T[:, ::5], atol=1e-4)


MATMUL_BATCHED = [
    ((3, 4, 5), (5, 6)),
    ((2, 3, 4, 5), (5, 2)),
    ((4, 5), (3, 5, 6)),
    ((4, 5), (2, 3, 5, 6)),
    ((3, 4, 5), (3, 5, 2)),
    ((2, 1, 4, 5), (3, 5, 2)),
    ((1, 4, 5), (2, 3, 5, 2)),
    ((3, 4, 5), (1, 1, 5, 2)),
    ((5,), (5, 3)),
    ((4, 5), (5,)),
    ((5,), (5,)),
    ((2, 4, 5), (5,)),
    ((5,), (2, 5, 3)),
    ((0, 4, 5), (5, 3)),
]


@hw3
@pytest.mark.parametrize("shape_a,shape_b", MATMUL_BATCHED, ids=str)
def test_matmul_numpy_semantics(shape_a, shape_b, device):
    x, y = rand(*shape_a), rand(*shape_b)
    result = nd.matmul(nd.array(x, device=device), nd.array(y, device=device))
    assert_same_array(result, np.matmul(x, y), strides=None, atol=1e-4)


@hw3
def test_matmul_errors(device):
    a = nd.array(rand(2, 3), device=device)
    with pytest.raises(ValueError, match="align"):
        nd.matmul(a, a)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        a @ a
    with pytest.raises(ValueError):
        nd.matmul(nd.array(rand(2, 2, 3), device=device), nd.array(rand(3, 3, 2), device=device))


# =============================================================================================
# reductions
# =============================================================================================

REDUCE_CASES = [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), 2)]


@hw3
@pytest.mark.parametrize("name", ["sum", "max"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape,axis", REDUCE_CASES, ids=str)
def test_reduce_method_one_axis(name, keepdims, shape, axis, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert_same_array(getattr(a, name)(axis=axis, keepdims=keepdims), expected)
    # and on a non-compact view
    view = a.permute(tuple(reversed(range(len(shape)))))
    expected = getattr(np, name)(x.T, axis=axis, keepdims=keepdims)
    assert_same_array(getattr(view, name)(axis=axis, keepdims=keepdims), expected)


@hw3
@pytest.mark.parametrize("name", ["sum", "max"])
def test_reduce_method_all_axes_has_course_shape(name, device):
    x = rand(2, 3, 4)
    a = nd.array(x, device=device)
    total = getattr(np, name)(x)
    assert_same_array(getattr(a, name)(), np.array([total]))
    assert_same_array(getattr(a, name)(keepdims=True), np.full((1, 1, 1), total, np.float32))


MODULE_REDUCE_AXES = [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2), (1,), ()]


@hw3
@pytest.mark.parametrize("name", ["sum", "max", "mean"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", MODULE_REDUCE_AXES, ids=str)
def test_module_reduce_numpy_semantics(name, keepdims, axis, device):
    x = rand(2, 3, 4)
    a = nd.array(x, device=device)
    expected = np.asarray(getattr(np, name)(x, axis=axis, keepdims=keepdims))
    result = getattr(nd, name)(a, axis=axis, keepdims=keepdims)
    assert_same_array(result, expected, strides=None)
    result = getattr(nd, name)(a.permute((2, 0, 1)), axis=axis, keepdims=keepdims)
    expected = np.asarray(getattr(np, name)(x.transpose(2, 0, 1), axis=axis, keepdims=keepdims))
    assert_same_array(result, expected, strides=None)


@hw3
def test_reduce_errors_and_empty(device):
    a = nd.array(rand(2, 3), device=device)
    with pytest.raises(np.exceptions.AxisError):
        a.sum(axis=2)
    with pytest.raises(ValueError, match="repeated"):
        nd.sum(a, axis=(0, 0))
    empty = nd.zeros((0, 3), device=device)
    assert_same_array(nd.sum(empty, axis=0), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="zero-size"):
        nd.max(empty, axis=0)


# =============================================================================================
# module functions used by the ops
# =============================================================================================


@hw3
def test_power_and_maximum_functions(device):
    x, y = np.abs(rand(3, 4)) + 0.5, rand(3, 4)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    assert_same_array(nd.power(a, b), np.power(x, y))
    assert_same_array(nd.power(a, 3), x**3)
    assert_same_array(nd.power(2.0, b), np.power(2.0, y).astype(np.float32))
    assert_same_array(nd.maximum(a, b), np.maximum(x, y))
    assert_same_array(nd.maximum(b, 0.0), np.maximum(y, 0))
    assert_same_array(nd.maximum(0.0, b), np.maximum(y, 0))
    assert_same_array(nd.sqrt(a), np.sqrt(x))
    assert_same_array(nd.negative(a), -x)
    assert_same_array(nd.subtract(1.0, a), 1.0 - x)
    assert_same_array(nd.divide(a, b), x / y)
    assert_same_array(nd.add(a, b), x + y)
    assert_same_array(nd.multiply(a, 2), x * 2)


@hw3
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_unstack(axis, device):
    xs = [rand(3, 4) for _ in range(5)]
    arrays = [nd.array(x, device=device) for x in xs]
    arrays[1] = nd.array(xs[1].T.copy(), device=device).permute((1, 0))  # non-compact input
    stacked = nd.stack(arrays, axis=axis)
    expected = np.stack(xs, axis=axis)
    assert_same_array(stacked, expected)
    pieces = nd.unstack(stacked, axis=axis)
    expected_pieces = np.unstack(expected, axis=axis)
    assert len(pieces) == len(expected_pieces)
    for piece, expected_piece in zip(pieces, expected_pieces):
        assert_view_of(piece, stacked, expected_piece, expected)


@hw3
def test_stack_errors(device):
    with pytest.raises(ValueError, match="equal shape"):
        nd.stack([nd.zeros((2,), device=device), nd.zeros((3,), device=device)])
    with pytest.raises(ValueError):
        nd.stack([])


@hw3
def test_concatenate_swapaxes_expand_squeeze(device):
    x, y = rand(2, 3), rand(2, 5)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    assert_same_array(nd.concatenate([a, b], axis=1), np.concatenate([x, y], axis=1))
    assert_view_of(nd.swapaxes(a, 0, 1), a, np.swapaxes(x, 0, 1), x)
    assert_same_array(nd.expand_dims(a, 1), np.expand_dims(x, 1))
    z = rand(1, 3, 1)
    assert_same_array(nd.squeeze(nd.array(z, device=device)), np.squeeze(z))
    assert nd.squeeze(nd.zeros((1, 3, 1), device=device), axis=0).shape == (3, 1)
    assert nd.zeros_like(a).shape == (2, 3) and nd.ones_like(a).device == device
    assert_same_array(nd.full_like(a, 3.0), np.full((2, 3), 3.0, np.float32))


@hw4
@pytest.mark.parametrize(
    "shape,axes",
    [
        ((10, 5), (0,)),
        ((10, 5), (1,)),
        ((10, 5), (0, 1)),
        ((2, 3, 3, 8), (1, 2)),
        ((3, 3, 6, 4), (0, 1, 2, 3)),
        ((4,), 0),
    ],
    ids=str,
)
def test_flip(shape, axes, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    flipped = a.flip(axes)
    assert_same_array(flipped, np.ascontiguousarray(np.flip(x, axes)))
    assert flipped.is_compact()
    assert_same_array(nd.flip(a, axes), np.flip(x, axes), strides=None)
    assert_same_array(
        nd.flip(a.permute(tuple(reversed(range(len(shape))))), axes),
        np.flip(x.T, axes),
        strides=None,
    )
    assert_same_array(nd.flip(a), np.flip(x), strides=None)


@hw4
@pytest.mark.parametrize(
    "shape,padding",
    [
        ((10, 32, 32, 8), ((0, 0), (2, 2), (2, 2), (0, 0))),
        ((10, 32, 32, 8), ((0, 0), (0, 0), (0, 0), (0, 0))),
        ((3, 4), ((1, 0), (2, 3))),
    ],
    ids=str,
)
def test_pad(shape, padding, device):
    x = rand(*shape)
    a = nd.array(x, device=device)
    assert_same_array(a.pad(padding), np.pad(x, padding))
    assert_same_array(nd.pad(a, padding), np.pad(x, padding))
    assert_same_array(
        nd.pad(a.permute(tuple(reversed(range(len(shape))))), padding[::-1]),
        np.pad(x.T, padding[::-1]),
    )


@hw4
def test_pad_forms_and_errors(device):
    x = rand(2, 3)
    a = nd.array(x, device=device)
    assert_same_array(nd.pad(a, 1), np.pad(x, 1))
    assert_same_array(nd.pad(a, (1, 2)), np.pad(x, (1, 2)))
    assert_same_array(
        nd.pad(a, ((1, 0), (0, 2)), constant_values=5.0),
        np.pad(x, ((1, 0), (0, 2)), constant_values=5.0),
    )
    with pytest.raises(ValueError):
        a.pad(((1, 1),))
    with pytest.raises(ValueError):
        a.pad(((1, 1), (-1, 0)))


@hw4
def test_as_strided_im2col(device):
    n, h, w, c, k = 2, 6, 5, 3, 3
    x = rand(n, h, w, c)
    a = nd.array(x, device=device)
    sn, sh, sw, sc = a.strides
    shape = (n, h - k + 1, w - k + 1, k, k, c)
    strides = (sn, sh, sw, sh, sw, sc)
    view = nd.as_strided(a, shape, strides)
    expected = np.lib.stride_tricks.as_strided(x, shape, tuple(s * ITEMSIZE for s in strides))
    assert_view_of(view, a, expected, x)
    assert_same_array(view.compact(), expected.copy())


# =============================================================================================
# property tests: random shapes, permutations and slices against numpy
# =============================================================================================


@st.composite
def strided_views(draw):
    """A random array, a random permutation of it and a random slice of that (any steps)."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    perm = tuple(draw(st.permutations(range(len(shape)))))
    permuted_shape = tuple(shape[i] for i in perm)
    idxs = []
    for dim in permuted_shape:
        start = draw(st.none() | st.integers(-dim - 1, dim + 1))
        stop = draw(st.none() | st.integers(-dim - 1, dim + 1))
        step = draw(st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3]))
        idxs.append(slice(start, stop, step))
    return shape, perm, tuple(idxs)


@hw3
@FEW_EXAMPLES
@given(case=strided_views())
def test_random_views_match_numpy(case, device):
    shape, perm, idxs = case
    x = rand(*shape)
    a = nd.array(x, device=device)
    view_np = np.transpose(x, perm)[idxs]
    view = a.permute(perm)[idxs]
    assert_view_of(view, a, view_np, x)
    compacted = view.compact()
    assert compacted.is_compact()
    assert_same_array(compacted, np.ascontiguousarray(view_np))
    if view_np.size:
        assert_same_array(
            nd.sum(view, axis=0, keepdims=True), view_np.sum(axis=0, keepdims=True), strides=None
        )
        # a permutation of the whole array keeps its layout, as in numpy; other views give a
        # compact result
        # (strides of length-1 axes are arbitrary: not compared)
        whole = view_np.size == x.size and all(step > 0 for step in view_np.strides)
        layout = "compact" if not whole else None if 1 in view_np.shape else "numpy"
        assert_same_array(view + view, view_np + view_np, strides=layout)


@hw3
@FEW_EXAMPLES
@given(case=strided_views(), value=st.floats(-10, 10, width=32))
def test_random_setitem_matches_numpy(case, value, device):
    shape, perm, idxs = case
    x = rand(*shape)
    a = nd.array(x, device=device)
    handle = a._handle
    target = np.transpose(x, perm)
    target_view = target[idxs]
    values = rand(*target_view.shape)
    a.permute(perm)[idxs] = nd.array(values, device=device)
    target[idxs] = values
    assert a._handle is handle
    assert_same_array(a, x)
    a.permute(perm)[idxs] = value
    target[idxs] = value
    assert_same_array(a, x)


@hw3
@FEW_EXAMPLES
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
)
def test_random_reductions_match_numpy(shape, data, device):
    axes = data.draw(
        st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)).map(tuple)
    )
    keepdims = data.draw(st.booleans())
    x = rand(*shape)
    a = nd.array(x, device=device)
    for name in ("sum", "max"):
        expected = np.asarray(getattr(np, name)(x, axis=axes, keepdims=keepdims))
        assert_same_array(
            getattr(nd, name)(a, axis=axes, keepdims=keepdims), expected, strides=None
        )


def test_memory_order_names_the_layout_of_whole_buffers(device):
    a = nd.array(rand(2, 3, 4), device=device)
    assert a.memory_order() == (0, 1, 2)
    assert a.permute((2, 0, 1)).memory_order() == (1, 2, 0)
    assert a[:, 1:, :].memory_order() is None  # a slice does not cover its buffer
    assert a[0:1].broadcast_to((5, 3, 4)).memory_order() is None
