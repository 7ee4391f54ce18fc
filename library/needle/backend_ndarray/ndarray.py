"""needle's strided n-dimensional array (``NDArray``) and the devices it lives on.

An ``NDArray`` is a *view*: a flat float32 buffer (``handle``, owned by a backend) plus

- ``shape``   the size of each axis,
- ``strides`` how many ELEMENTS (not bytes) to step in the buffer per step along each axis,
- ``offset``  where element ``[0, 0, ..., 0]`` sits in the buffer,

so that element ``[i0, ..., ik]`` is ``handle[offset + i0 * strides[0] + ... + ik * strides[k]]``.
Reshaping a compact array, permuting axes, broadcasting and slicing only compute a new
(shape, strides, offset) for the same buffer: no element is copied. ``compact()`` copies a view
into a fresh row-major buffer, and happens just before a kernel that needs one.

All layout logic lives here, in Python. A backend (``ndarray_backend_numpy`` — the readable
spec —, the C++ ``ndarray_backend_cpu`` or ``ndarray_backend_cuda``) only runs kernels on flat
buffers. ``BackendDevice`` pairs a device name with its backend module.

Two layers of API:

- ``NDArray`` methods keep the course's interface (``reshape`` of compact arrays only,
  ``permute``, same-rank ``broadcast_to``, ``sum(axis=None)`` giving shape ``(1,)``, ...).
- The module-level functions (``reshape``, ``broadcast_to``, ``transpose``, ``sum``, ``matmul``,
  ``stack``, ...) follow numpy's names and semantics, so that needle's ops can be written once
  against ``array_api`` and run on numpy as well as on this module.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import math
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np

from . import ndarray_backend_numpy

# The names ``needle.backend_ndarray`` exports (its __init__ re-exports exactly these).
__all__ = [
    "BackendDevice",
    "NDArray",
    "Shape",
    "add",
    "all_devices",
    "array",
    "as_strided",
    "asarray",
    "broadcast_to",
    "concatenate",
    "copy",
    "cpu",
    "cpu_numpy",
    "cuda",
    "default_device",
    "divide",
    "empty",
    "empty_like",
    "exp",
    "expand_dims",
    "flip",
    "float32",
    "full",
    "full_like",
    "log",
    "matmul",
    "matmul_view",
    "max",
    "maximum",
    "mean",
    "multiply",
    "ndarray",
    "negative",
    "ones",
    "ones_like",
    "pad",
    "power",
    "prod",
    "reshape",
    "sqrt",
    "squeeze",
    "stack",
    "subtract",
    "sum",
    "swapaxes",
    "tanh",
    "transpose",
    "unstack",
    "zeros",
    "zeros_like",
]

Shape = tuple[int, ...]
Scalar = Union[int, float]

_FLOAT32 = np.dtype(np.float32)


def prod(values: Iterable[int]) -> int:
    """The product of a sequence of ints (1 for an empty one), e.g. the size of a shape."""
    return math.prod(values)


# =============================================================================================
# Devices
# =============================================================================================

_BACKEND_LABELS = {"cpu": "CPU", "cuda": "CUDA", "cpu_numpy": "numpy"}


class BackendDevice:
    """A device: a name plus the backend module whose kernels compute on it.

    Unknown attributes are looked up on the backend module (``device.ewise_add``,
    ``device.Array``, ``device.__tile_size__``), so ``NDArray`` calls kernels as
    ``self.device.kernel(...)``. A device whose module could not be loaded is *disabled*:
    ``enabled()`` is False and using it raises a ``RuntimeError`` that says why.

    Args:
        name: "cpu", "cuda" or "cpu_numpy"; devices compare equal by name.
        mod: the backend module, or None for a disabled device.
        unavailable_reason: why ``mod`` is None (shown in errors).
    """

    def __init__(self, name: str, mod: Any, unavailable_reason: str | None = None):
        self.name = name
        self.mod = mod
        self.unavailable_reason = unavailable_reason
        # Looked up once: __matmul__ asks for them on every call. The tiled path costs two
        # re-layout copies in and one out; it only pays off against a naive ``matmul``, so a
        # backend opts in with ``__matmul_tiled_preferred__ = True`` (our C++ ``matmul`` is
        # already cache-blocked and packs its own panels).
        tiled_preferred = getattr(mod, "__matmul_tiled_preferred__", False)
        self.matmul_tiled_kernel = getattr(mod, "matmul_tiled", None) if tiled_preferred else None
        self.tile_size = getattr(mod, "__tile_size__", 1)
        # Optional kernels taking a strided (broadcast) second operand: add, mul, div.
        self.strided_zip = {
            name: getattr(mod, f"ewise_{name}_strided", None) for name in ("add", "mul", "div")
        }
        # Optional: sums over the leading axes of a compact array without a transposed copy.
        self.sum_columns = getattr(mod, "reduce_sum_columns", None)
        # Optional: a matrix product whose first operand is a strided view, read in place.
        self.matmul_strided = getattr(mod, "matmul_strided", None)

    def __eq__(self, other) -> bool:
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return self.name + "()"

    def __str__(self) -> str:
        return self.__repr__()

    def __reduce__(self):
        # Pickle by name: the copy is the process's own device of that name.
        return (_device_by_name, (self.name,))

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails, i.e. for the backend module's names.
        mod = self.__dict__.get("mod")
        if mod is None:
            if name.startswith("__"):  # protocol probes (copy, pickle, ...) must not raise
                raise AttributeError(name)
            self.raise_unavailable()
        value = getattr(mod, name)
        self.__dict__[name] = value  # cache: the next lookup is a plain attribute
        return value

    def enabled(self) -> bool:
        """Whether the backend module is loaded, i.e. arrays can be made on this device."""
        return self.mod is not None

    def raise_unavailable(self):
        label = _BACKEND_LABELS.get(self.name, self.name)
        raise RuntimeError(f"{label} backend not available: {self.unavailable_reason}")

    # ---- array constructors --------------------------------------------------------------

    def randn(self, *shape: int, dtype: str = "float32") -> NDArray:
        """Standard normal samples, drawn in float64 from numpy's global RNG then cast (so a
        seeded draw equals ``np.random.randn(*shape).astype(np.float32)``)."""
        _check_dtype(dtype)
        return NDArray(np.random.randn(*shape).astype(np.float32), device=self)

    def rand(self, *shape: int, dtype: str = "float32") -> NDArray:
        """Uniform samples in [0, 1), drawn like ``np.random.rand(*shape)`` then cast."""
        _check_dtype(dtype)
        return NDArray(np.random.rand(*shape).astype(np.float32), device=self)

    def one_hot(self, n: int, i, dtype: str = "float32") -> NDArray:
        """Rows of the n x n identity picked by the integer labels ``i``.

        Shape: ``i`` of shape (*S) gives (*S, n), with ``out[..., k] = (i[...] == k)``.
        """
        _check_dtype(dtype)
        if isinstance(i, NDArray):
            i = i.numpy()
        labels = np.asarray(i).astype(np.int64)
        return NDArray(np.eye(n, dtype=np.float32)[labels], device=self)

    def empty(self, shape, dtype: str = "float32") -> NDArray:
        """An array of the given shape with undefined contents."""
        _check_dtype(dtype)
        return NDArray.make(_as_shape(shape), device=self)

    def full(self, shape, fill_value: Scalar, dtype: str = "float32") -> NDArray:
        """An array of the given shape with every element ``fill_value``."""
        array = self.empty(shape, dtype)
        array.fill(fill_value)
        return array

    def zeros(self, *shape, dtype: str = "float32") -> NDArray:
        """``device.zeros(2, 3)`` (the course's form) or ``device.zeros((2, 3))``."""
        return self.full(_shape_from_args(shape), 0.0, dtype)

    def ones(self, *shape, dtype: str = "float32") -> NDArray:
        """``device.ones(2, 3)`` (the course's form) or ``device.ones((2, 3))``."""
        return self.full(_shape_from_args(shape), 1.0, dtype)


def _shape_from_args(shape: tuple) -> Shape:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return _as_shape(shape[0])
    return _as_shape(shape)


def _import_backend(module_name: str, needs_gpu: bool) -> tuple[Any, str | None]:
    """(module, None) when the compiled backend is usable, else (None, why not).

    Never raises: a missing build, a placeholder module without kernels or a machine without a
    GPU only make the device unavailable.
    """
    try:
        mod = importlib.import_module(f"{__package__}.{module_name}")
    except Exception as error:  # ImportError, or a broken shared library
        return None, f"module {module_name} could not be imported ({error})"
    if not hasattr(mod, "compact"):
        return None, f"module {module_name} has no kernels yet (placeholder build)"
    if needs_gpu and hasattr(mod, "device_count"):
        try:
            count = int(mod.device_count())
        except Exception as error:  # a driver error must not escape
            return None, f"counting GPUs failed ({error})"
        if count < 1:
            return None, "no CUDA GPU found on this machine"
    return mod, None


_DEVICES: dict[str, BackendDevice] = {}


def _load_device(name: str, module_name: str, needs_gpu: bool) -> BackendDevice:
    device = _DEVICES.get(name)
    if device is None:
        mod, reason = _import_backend(module_name, needs_gpu)
        device = _DEVICES[name] = BackendDevice(name, mod, reason)
    return device


def cpu() -> BackendDevice:
    """The C++ CPU backend (disabled when the native module is not built)."""
    return _DEVICES.get("cpu") or _load_device("cpu", "ndarray_backend_cpu", needs_gpu=False)


def cuda() -> BackendDevice:
    """The CUDA backend: enabled only when the module is built and a GPU is present."""
    return _DEVICES.get("cuda") or _load_device("cuda", "ndarray_backend_cuda", needs_gpu=True)


def cpu_numpy() -> BackendDevice:
    """The numpy reference backend (always available)."""
    device = _DEVICES.get("cpu_numpy")
    if device is None:
        device = _DEVICES["cpu_numpy"] = BackendDevice("cpu_numpy", ndarray_backend_numpy)
    return device


def default_device() -> BackendDevice:
    """``cpu()`` when the C++ backend is built, else ``cpu_numpy()``."""
    device = cpu()
    return device if device.mod is not None else cpu_numpy()


def all_devices() -> list[BackendDevice]:
    """Every device this module knows, enabled or not (check ``device.enabled()``)."""
    return [cpu(), cuda(), cpu_numpy()]


def _device_by_name(name: str) -> BackendDevice:
    factories = {"cpu": cpu, "cuda": cuda, "cpu_numpy": cpu_numpy}
    if name not in factories:
        raise ValueError(f"unknown device {name!r}; expected one of {sorted(factories)}")
    return factories[name]()


def _as_device(device) -> BackendDevice:
    """None → the default device; a name ("cpu", "cuda", "cpu_numpy") → that device."""
    if device is None:
        return default_device()
    if isinstance(device, BackendDevice):
        return device
    if isinstance(device, str):
        return _device_by_name(device)
    raise TypeError(f"expected a BackendDevice such as needle.cpu(), got {device!r}")


# =============================================================================================
# Small helpers on shapes, axes and dtypes
# =============================================================================================


@functools.lru_cache(maxsize=4096)
def _compact_strides(shape: Shape) -> Shape:
    stride = 1
    strides = []
    for dim in reversed(shape):
        strides.append(stride)
        stride *= dim
    return tuple(reversed(strides))


def _is_row_major(shape: Shape, strides: Shape) -> bool:
    """Whether stepping through ``shape`` in row-major order visits consecutive elements.

    Axes of length 1 never step, so their strides do not matter.
    """
    compact = _compact_strides(shape)
    if strides == compact:
        return True
    return all(dim == 1 or stride == c for dim, stride, c in zip(shape, strides, compact))


def _as_shape(shape) -> Shape:
    """A validated tuple of non-negative Python ints from an int or a sequence of ints."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        result = tuple(operator.index(dim) for dim in shape)
    except TypeError:
        raise TypeError(f"a shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(dim < 0 for dim in result):
        raise ValueError(f"negative dimensions are not allowed, got shape {result}")
    return result


def _resolve_shape(size: int, new_shape) -> Shape:
    """``new_shape`` with at most one -1 replaced so that it holds ``size`` elements.

    Raises:
        ValueError: when no such shape exists (the course's reshape asserts the same).
    """
    if (  # the common case, a tuple of Python ints that fits, checked first: it is hot
        type(new_shape) is tuple
        and new_shape
        and min(new_shape) >= 0
        and math.prod(new_shape) == size
        and all(type(dim) is int for dim in new_shape)
    ):
        return new_shape
    if isinstance(new_shape, (int, np.integer)):
        new_shape = (new_shape,)
    new_shape = tuple(operator.index(dim) for dim in new_shape)
    if new_shape.count(-1) > 1:
        raise ValueError(f"can only specify one unknown dimension (-1), got {new_shape}")
    if -1 in new_shape:
        known = prod(dim for dim in new_shape if dim != -1)
        if known == 0 or size % known != 0:
            raise ValueError(f"cannot reshape array of size {size} into shape {new_shape}")
        new_shape = tuple(size // known if dim == -1 else dim for dim in new_shape)
    if any(dim < 0 for dim in new_shape) or prod(new_shape) != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {new_shape}")
    return new_shape


def _normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Axes as a tuple of distinct non-negative ints; None means all axes (numpy's rules)."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    result = []
    for ax in axes:
        ax = operator.index(ax)
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(ax, ndim)
        result.append(ax % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(result)


def _broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy's broadcast of shapes (align right; 1 stretches), ValueError when incompatible."""
    ndim = builtins.max(len(shape) for shape in shapes)
    result = []
    for axis in range(-ndim, 0):
        dims = {shape[axis] for shape in shapes if len(shape) >= -axis} - {1}
        if len(dims) > 1:
            raise ValueError(f"shapes {', '.join(map(str, shapes))} cannot be broadcast together")
        result.append(dims.pop() if dims else 1)
    return tuple(result)


def _check_dtype(dtype) -> None:
    """NDArray stores float32 only: accept the spellings of float32 (or None), reject others."""
    if dtype is None or dtype == "float32" or dtype is np.float32:
        return
    try:
        if np.dtype(dtype) == _FLOAT32:
            return
    except TypeError:
        pass
    raise TypeError(
        f"NDArray stores float32 only, got dtype {dtype!r}; "
        "use .numpy().astype(...) for another dtype on the host"
    )


# =============================================================================================
# NDArray
# =============================================================================================


class NDArray:
    """A strided view of a flat float32 buffer on a device (see the module docstring).

    ``NDArray(other, device=None)`` copies ``other`` — an NDArray (across devices through
    numpy), a numpy array, or anything ``np.array`` accepts — onto ``device`` (default:
    the other NDArray's device, else ``default_device()``).
    """

    # _compact caches is_compact() (None: not asked yet), for layouts that do not change once
    # in use.
    __slots__ = ("_shape", "_strides", "_offset", "_device", "_handle", "_compact")
    _shape: Shape
    _strides: Shape
    _offset: int
    _device: BackendDevice
    _handle: Any  # the backend's Array
    _compact: bool | None

    # numpy must not turn ``np_value * ndarray`` into a numpy array: make its operators
    # return NotImplemented so that Python calls our reflected method instead.
    __array_ufunc__ = None

    def __init__(self, other, device: BackendDevice | None = None):
        if isinstance(other, NDArray):
            device = other._device if device is None else _as_device(device)
            if device == other._device:
                self._init(other._copy())
            else:
                self._init(_from_numpy(other.numpy(), device))
        else:
            self._init(_from_numpy(np.asarray(other), _as_device(device)))

    def _init(self, other: NDArray) -> None:
        self._shape = other._shape
        self._strides = other._strides
        self._offset = other._offset
        self._device = other._device
        self._handle = other._handle
        self._compact = other._compact

    @staticmethod
    def compact_strides(shape: Sequence[int]) -> Shape:
        """Row-major strides of ``shape`` in elements, e.g. (2, 3, 4) → (12, 4, 1)."""
        return _compact_strides(tuple(shape))

    @staticmethod
    def make(
        shape: Sequence[int],
        strides: Sequence[int] | None = None,
        device: BackendDevice | None = None,
        handle: Any = None,
        offset: int = 0,
    ) -> NDArray:
        """An NDArray with the given layout; allocates a new compact buffer when ``handle``
        is None (contents undefined)."""
        array = object.__new__(NDArray)
        if type(shape) is not tuple:
            shape = tuple(shape)
        array._shape = shape
        array._offset = offset
        if device is None:
            device = default_device()
        array._device = device
        array._strides = _compact_strides(shape) if strides is None else tuple(strides)
        # Worked out on first use, not here: code that sets the layout fields of a new array
        # by hand (a student's permute, say) must not find a stale answer.
        array._compact = None
        array._handle = device.Array(math.prod(shape)) if handle is None else handle
        return array

    @staticmethod
    def _fresh(shape: Shape, device: BackendDevice) -> NDArray:
        """A new compact array of ``shape`` (a tuple) for a kernel to write: ``make`` without
        its conversions, already known compact. Only for arrays that provided code creates
        and fills itself (kernel outputs); arrays handed to student layout code come from
        ``make``, which works compactness out on first use."""
        array = object.__new__(NDArray)
        array._shape = shape
        array._strides = _compact_strides(shape)
        array._offset = 0
        array._device = device
        array._compact = True
        array._handle = device.Array(math.prod(shape))
        return array

    # ---- properties ------------------------------------------------------------------------

    @property
    def shape(self) -> Shape:
        return self._shape

    @property
    def strides(self) -> Shape:
        """Steps in ELEMENTS per axis (numpy counts bytes: numpy's strides / 4)."""
        return self._strides

    @property
    def device(self) -> BackendDevice:
        return self._device

    @property
    def dtype(self) -> np.dtype:
        """Always float32 (compares equal to "float32" and to ``np.float32``)."""
        return _FLOAT32

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return math.prod(self._shape)

    @property
    def flat(self) -> NDArray:
        """A 1-D view of a compact array."""
        return self.reshape((self.size,))

    def __repr__(self) -> str:
        return f"NDArray({self.numpy()}, device={self._device})"

    def __str__(self) -> str:
        return str(self.numpy())

    def __reduce__(self):
        return (array, (self.numpy(), "float32", self._device))

    # ---- memory ----------------------------------------------------------------------------

    def fill(self, value: Scalar) -> None:
        """Set every element of this view to ``value``, in place."""
        if self.is_compact():
            self._device.fill(self._handle, float(value))
        else:
            self._device.scalar_setitem(
                self.size, float(value), self._handle, self._shape, self._strides, self._offset
            )

    def to(self, device: BackendDevice) -> NDArray:
        """This array on ``device`` (itself when it is already there)."""
        device = _as_device(device)
        if device == self._device:
            return self
        return NDArray(self.numpy(), device=device)

    def numpy(self) -> np.ndarray:
        """A compact float32 numpy copy of the values."""
        return self._device.to_numpy(self._handle, self._shape, self._strides, self._offset)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        result = self.numpy()
        return result if dtype is None else result.astype(dtype)

    def item(self) -> float:
        """The value of a one-element array as a Python float."""
        if self.size != 1:
            raise ValueError(f"item() needs an array of size 1, got shape {self._shape}")
        return float(self.numpy().reshape(-1)[0])

    def __float__(self) -> float:
        return self.item()

    def astype(self, dtype) -> NDArray:
        """float32 is the only dtype, so this is a no-op returning ``self``; others raise."""
        _check_dtype(dtype)
        return self

    def is_compact(self) -> bool:
        """Whether the array is row-major with offset 0 and owns exactly its elements, i.e.
        a kernel may read its buffer from position 0 as ``size`` consecutive values."""
        compact = self._compact
        if compact is None:
            compact = self._compact = self._layout_is_compact()
        return compact

    def _layout_is_compact(self) -> bool:
        if self._offset != 0:
            return False
        shape, strides = self._shape, self._strides
        if strides != _compact_strides(shape) and not _is_row_major(shape, strides):
            return False
        return self._handle.size == math.prod(shape)

    def compact(self) -> NDArray:
        """Itself when compact, else a compact copy (always with row-major strides)."""
        if self._compact or self.is_compact():
            if self._strides == _compact_strides(self._shape):
                return self
            # Only strides of length-1 axes differ: same buffer, canonical strides.
            return NDArray.make(self._shape, device=self._device, handle=self._handle)
        return self._copy()

    def _copy(self) -> NDArray:
        """A compact copy, always a new buffer."""
        out = NDArray._fresh(self._shape, self._device)
        self._device.compact(self._handle, out._handle, self._shape, self._strides, self._offset)
        return out

    def as_strided(self, shape: Sequence[int], strides: Sequence[int]) -> NDArray:
        """A view of the same buffer with any shape and strides (in elements), starting at
        this array's offset. Nothing is checked: strides that leave the buffer read garbage.
        """
        if len(shape) != len(strides):
            raise ValueError(f"shape {tuple(shape)} and strides {tuple(strides)} differ in rank")
        return NDArray.make(
            shape, strides=strides, device=self._device, handle=self._handle, offset=self._offset
        )

    # ---- views (hw3) -----------------------------------------------------------------------

    def reshape(self, new_shape: Sequence[int]) -> NDArray:
        """A view of a compact array with another shape of the same size; no copy.

        One entry of ``new_shape`` may be -1 (inferred, as in numpy); ``_resolve_shape`` does
        that and checks the size.

        Example: a compact (2, 6) array reshaped to (3, 4) gets strides (4, 1), same handle.

        Raises:
            ValueError: when the sizes differ or the array is not compact (call
                ``.compact()`` first, or use the module-level ``reshape`` which does).
        """
        ### BEGIN YOUR SOLUTION (hw3)
        new_shape = _resolve_shape(self.size, new_shape)
        if not self.is_compact():
            raise ValueError(
                f"reshape needs a compact array, got shape {self._shape} with strides "
                f"{self._strides} and offset {self._offset}; call .compact() first"
            )
        return NDArray.make(new_shape, device=self._device, handle=self._handle)
        ### END YOUR SOLUTION

    def permute(self, new_axes: Sequence[int]) -> NDArray:
        """A view with the axes reordered: axis ``k`` of the result is axis ``new_axes[k]`` of
        this array; no copy. E.g. BHWC → BCHW is ``permute((0, 3, 1, 2))``.

        Shape: ``result.shape[k] = shape[new_axes[k]]``, ``result.strides[k] =
        strides[new_axes[k]]``.

        Raises:
            ValueError: when ``new_axes`` is not a permutation of ``range(ndim)`` (negative
                axes count from the end).
        """
        ### BEGIN YOUR SOLUTION (hw3)
        ndim = len(self._shape)
        axes = tuple(axis + ndim if axis < 0 else axis for axis in new_axes)
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"axes {tuple(new_axes)} are not a permutation of {ndim} axes")
        return NDArray.make(
            tuple(self._shape[axis] for axis in axes),
            strides=tuple(self._strides[axis] for axis in axes),
            device=self._device,
            handle=self._handle,
            offset=self._offset,
        )
        ### END YOUR SOLUTION

    def broadcast_to(self, new_shape: Sequence[int]) -> NDArray:
        """A view repeating axes of length 1 to fill ``new_shape`` (same rank); no copy.

        An axis of length 1 gets stride 0 (every index reads the same element, as in numpy);
        other axes must keep their length. The module-level ``broadcast_to`` also prepends
        axes, as numpy does.

        Raises:
            ValueError: when the ranks differ or an axis of length != 1 would change.
        """
        ### BEGIN YOUR SOLUTION (hw3)
        new_shape = tuple(new_shape)
        if len(new_shape) != len(self._shape):
            raise ValueError(
                f"NDArray.broadcast_to keeps the rank: cannot broadcast {self._shape} to "
                f"{new_shape} (array_api.broadcast_to prepends axes)"
            )
        new_strides = []
        for old_dim, new_dim, stride in zip(self._shape, new_shape, self._strides):
            if old_dim == 1:
                new_strides.append(0)
            elif old_dim == new_dim:
                new_strides.append(stride)
            else:
                raise ValueError(f"cannot broadcast shape {self._shape} to {new_shape}")
        return NDArray.make(
            new_shape,
            strides=tuple(new_strides),
            device=self._device,
            handle=self._handle,
            offset=self._offset,
        )
        ### END YOUR SOLUTION

    def process_slice(self, sl: slice, dim: int) -> slice:
        """``sl`` with explicit start, stop and step resolved against axis ``dim`` the way
        Python does for lists: negative start/stop count from the end, out-of-range values are
        clipped, a negative step walks backwards (its stop may then be -1, "before 0")."""
        return slice(*sl.indices(self._shape[dim]))

    def _index_to_slices(self, idxs) -> tuple[slice, ...]:
        """One resolved ``slice(start, stop, step)`` per axis for ``self[idxs]``.

        ``idxs`` may be an int, a slice, ``...`` or a tuple of them; missing trailing axes
        take ``:``. An int ``i`` becomes ``slice(i, i + 1, 1)`` (negative ``i`` counts from
        the end), so indexing never drops an axis: ``A[2, 2]`` has shape (1, 1).
        """
        if not isinstance(idxs, tuple):
            idxs = (idxs,)
        ndim = len(self._shape)
        if any(idx is Ellipsis for idx in idxs):
            if builtins.sum(idx is Ellipsis for idx in idxs) > 1:
                raise IndexError("an index can only have a single ellipsis ('...')")
            at = next(k for k, idx in enumerate(idxs) if idx is Ellipsis)
            fill = (slice(None),) * (ndim - len(idxs) + 1)
            idxs = idxs[:at] + fill + idxs[at + 1 :]
        if len(idxs) > ndim:
            raise IndexError(
                f"too many indices: array is {ndim}-dimensional, but {len(idxs)} were indexed"
            )
        slices = []
        for dim, idx in enumerate(idxs):
            if isinstance(idx, slice):
                slices.append(self.process_slice(idx, dim))
                continue
            try:
                index = operator.index(idx)
            except TypeError:
                raise TypeError(
                    "NDArray indices must be ints, slices or '...' (axes are never dropped), "
                    f"got {type(idx).__name__}"
                ) from None
            length = self._shape[dim]
            position = index + length if index < 0 else index
            if not 0 <= position < length:
                raise IndexError(
                    f"index {index} is out of bounds for axis {dim} with size {length}"
                )
            slices.append(slice(position, position + 1, 1))
        slices.extend(slice(0, self._shape[dim], 1) for dim in range(len(slices), ndim))
        return tuple(slices)

    def __getitem__(self, idxs) -> NDArray:
        """A view of a sub-grid selected by ints and slices (steps allowed); no copy.

        ``self._index_to_slices(idxs)`` gives one resolved ``slice(start, stop, step)`` per
        axis. Along each axis the view has ``len(range(start, stop, step))`` elements (i.e.
        ``ceil((stop - start) / step)``, at least 0), stride ``stride * step``, and it starts
        ``start * stride`` further into the buffer.

        Example: for a compact (4, 5) array, ``A[1:3, ::2]`` has shape (2, 3), strides (5, 2)
        and offset 5; ``A[-1, :]`` has shape (1, 5) and offset 15.
        """
        ### BEGIN YOUR SOLUTION (hw3)
        new_shape = []
        new_strides = []
        offset = self._offset
        for sl, stride in zip(self._index_to_slices(idxs), self._strides):
            length = len(range(sl.start, sl.stop, sl.step))
            new_shape.append(length)
            new_strides.append(stride * sl.step)
            if length > 0:
                offset += sl.start * stride
        return NDArray.make(
            tuple(new_shape),
            strides=tuple(new_strides),
            device=self._device,
            handle=self._handle,
            offset=offset,
        )
        ### END YOUR SOLUTION

    def __setitem__(self, idxs, other) -> None:
        """Write ``other`` into the view ``self[idxs]``, in place (the buffer is not replaced).

        ``other`` is a scalar, or an array (NDArray or numpy) of the view's shape, of a shape
        that broadcasts to it, or with the same number of elements (read in row-major order,
        as the course allows).
        """
        view = self.__getitem__(idxs)
        device = self._device
        if isinstance(other, np.ndarray):
            other = NDArray(other, device=device)
        if isinstance(other, NDArray):
            if other._device != device:
                raise ValueError(f"cannot assign an array on {other._device} into one on {device}")
            if other._shape != view._shape and other.size != view.size:
                other = broadcast_to(other, view._shape)
            if other._handle is view._handle:
                other = other._copy()  # reading and writing one buffer in different orders
            else:
                other = other.compact()
            device.ewise_setitem(
                other._handle, view._handle, view._shape, view._strides, view._offset
            )
        else:
            device.scalar_setitem(
                view.size, float(other), view._handle, view._shape, view._strides, view._offset
            )

    # ---- hw4 layout ops ----------------------------------------------------------------------

    def flip(self, axes) -> NDArray:
        """The array reversed along ``axes`` (an int or a tuple of ints), as a compact copy.

        Flipping is a view with the strides of the flipped axes negated, starting at the last
        element along them (``offset += (shape[i] - 1) * strides[i]``); ``compact()`` then
        copies it into a fresh row-major buffer. ``_normalize_axes(axes, ndim)`` turns
        ``axes`` into a tuple of non-negative ints.
        """
        ### BEGIN YOUR SOLUTION (hw4)
        new_strides = list(self._strides)
        offset = self._offset
        for axis in _normalize_axes(axes, len(self._shape)):
            if self._shape[axis] > 0:
                offset += (self._shape[axis] - 1) * self._strides[axis]
            new_strides[axis] = -new_strides[axis]
        flipped = NDArray.make(
            self._shape,
            strides=tuple(new_strides),
            device=self._device,
            handle=self._handle,
            offset=offset,
        )
        return flipped.compact()
        ### END YOUR SOLUTION

    def pad(self, axes: Sequence[tuple[int, int]]) -> NDArray:
        """Zero padding like ``np.pad``: ``axes[i] = (before, after)`` for EVERY axis.

        Allocates the padded array filled with zeros and writes this array into the interior
        view ``out[before_0 : before_0 + shape_0, ...]``.

        Shape: ``out.shape[i] = before_i + shape[i] + after_i``.
        """
        ### BEGIN YOUR SOLUTION (hw4)
        if len(axes) != len(self._shape):
            raise ValueError(f"pad needs (before, after) for each of {self.ndim} axes, got {axes}")
        if any(before < 0 or after < 0 for before, after in axes):
            raise ValueError(f"pad widths must be non-negative, got {axes}")
        out_shape = tuple(before + dim + after for dim, (before, after) in zip(self._shape, axes))
        out = NDArray.make(out_shape, device=self._device)
        out.fill(0.0)
        out[tuple(slice(before, before + dim) for dim, (before, _) in zip(self._shape, axes))] = (
            self
        )
        return out
        ### END YOUR SOLUTION

    # ---- element-wise arithmetic (compact inputs, equal shapes, or one Python scalar) ------

    def _ewise_or_scalar(self, other, ewise_kernel, scalar_kernel, strided=None) -> NDArray:
        """``out = f(self, other)`` for an array or a scalar ``other``. ``strided``: the name
        of the backend's optional kernel that reads a broadcast second operand in place
        (``ewise_<name>_strided``); "add" and "mul" also take a broadcast first operand.

        As numpy's ufuncs do, the result keeps the memory layout of a transposed operand (a
        permutation of a whole buffer, like an NHWC batch seen as NCHW) when the other one, if
        any, has the same: the kernel then runs on the buffers as they are, with no transposing
        copy in and a result that stays cheap to transpose back."""
        if not self.is_compact() and (
            not isinstance(other, NDArray)
            or (other._strides == self._strides and other._shape == self._shape)
        ):
            out = self._dense_like()
            if out is not None and (not isinstance(other, NDArray) or other._dense_like()):
                if isinstance(other, NDArray):
                    _check_same_device(self, other)
                    ewise_kernel(self._handle, other._handle, out._handle)
                else:
                    scalar_kernel(self._handle, float(other), out._handle)
                return out
        out = NDArray._fresh(self._shape, self._device)
        if isinstance(other, NDArray):
            _check_same(self, other)
            if strided is not None:
                kernel = self._device.strided_zip[strided]
                if kernel is not None:
                    a, b = self, other
                    if strided != "div" and _is_broadcast(a) and not _is_broadcast(b):
                        a, b = b, a  # a + b = b + a: the broadcast operand goes second
                    if _is_broadcast(b):
                        kernel(
                            a.compact()._handle,
                            b._handle,
                            out._handle,
                            b._shape,
                            b._strides,
                            b._offset,
                        )
                        return out
            ewise_kernel(self.compact()._handle, other.compact()._handle, out._handle)
        else:
            scalar_kernel(self.compact()._handle, float(other), out._handle)
        return out

    def _unary(self, kernel) -> NDArray:
        out = None if self.is_compact() else self._dense_like()
        if out is not None:  # a transposed view: its layout is kept (see _ewise_or_scalar)
            kernel(self._handle, out._handle)
            return out
        out = NDArray._fresh(self._shape, self._device)
        kernel(self.compact()._handle, out._handle)
        return out

    def memory_order(self) -> tuple[int, ...] | None:
        """When this array is a permutation of its whole buffer, which it covers exactly from
        position 0 (a compact array, or a transposed view of one, as NCHW seen as NHWC): its
        axes from the largest stride to the smallest, the order in which they lie in memory.
        Otherwise (a slice, a broadcast, an empty array) None."""
        shape, strides = self._shape, self._strides
        size = math.prod(shape)
        if self._offset != 0 or self._handle.size != size or size == 0:
            return None
        order = tuple(sorted(range(len(shape)), key=lambda axis: -strides[axis]))
        expected = 1
        for axis in reversed(order):
            if shape[axis] != 1 and strides[axis] != expected:
                return None
            expected *= shape[axis]
        return order

    def _dense_like(self) -> NDArray | None:
        """When this view is a permutation of its whole buffer (``memory_order``): a new array
        of the same shape and strides, in a buffer of its own, for a kernel that writes element
        i of the buffer from element i of this one's. Otherwise None."""
        if self.memory_order() is None:
            return None
        return NDArray.make(self._shape, self._strides, self._device, self._device.Array(self.size))

    def __add__(self, other) -> NDArray:
        return self._ewise_or_scalar(other, self._device.ewise_add, self._device.scalar_add, "add")

    __radd__ = __add__

    def __sub__(self, other) -> NDArray:
        return self + (-other)

    def __rsub__(self, other) -> NDArray:
        return (-self) + other

    def __mul__(self, other) -> NDArray:
        return self._ewise_or_scalar(other, self._device.ewise_mul, self._device.scalar_mul, "mul")

    __rmul__ = __mul__

    def __truediv__(self, other) -> NDArray:
        return self._ewise_or_scalar(other, self._device.ewise_div, self._device.scalar_div, "div")

    def __rtruediv__(self, other) -> NDArray:
        numerator = NDArray.make(self._shape, device=self._device)
        numerator.fill(other)
        return numerator / self

    def __neg__(self) -> NDArray:
        return self * (-1.0)

    def __pow__(self, other) -> NDArray:
        """``a ** b`` for a scalar or an array ``b`` of the same shape (element-wise)."""
        return self._ewise_or_scalar(other, self._device.ewise_power, self._device.scalar_power)

    def __rpow__(self, other) -> NDArray:
        base = NDArray.make(self._shape, device=self._device)
        base.fill(other)
        return base**self

    def maximum(self, other) -> NDArray:
        return self._ewise_or_scalar(other, self._device.ewise_maximum, self._device.scalar_maximum)

    # Comparisons give float32 arrays of 0.0 / 1.0. The backends have == and >=; the others
    # are derived from them with as few kernels as possible.

    def __eq__(self, other) -> NDArray:  # type: ignore[override]
        return self._ewise_or_scalar(other, self._device.ewise_eq, self._device.scalar_eq)

    def __ge__(self, other) -> NDArray:
        return self._ewise_or_scalar(other, self._device.ewise_ge, self._device.scalar_ge)

    def __ne__(self, other) -> NDArray:  # type: ignore[override]
        return 1.0 - (self == other)

    def __le__(self, other) -> NDArray:
        if isinstance(other, NDArray):
            return other >= self
        return (-self) >= (-float(other))  # a <= s  ⇔  -a >= -s

    def __gt__(self, other) -> NDArray:
        return 1.0 - (self <= other)

    def __lt__(self, other) -> NDArray:
        return 1.0 - (self >= other)

    # == is element-wise, so arrays cannot be dict keys (as in numpy). The ignore: mypy wants
    # __hash__ callable, but None is how a class declares itself unhashable.
    __hash__ = None  # type: ignore[assignment]

    def log(self) -> NDArray:
        return self._unary(self._device.ewise_log)

    def exp(self) -> NDArray:
        return self._unary(self._device.ewise_exp)

    def tanh(self) -> NDArray:
        return self._unary(self._device.ewise_tanh)

    # ---- matrix multiplication ----------------------------------------------------------------

    def __matmul__(self, other: NDArray) -> NDArray:
        """2-D matrix product (m x n) @ (n x p) → (m x p).

        When the backend prefers ``matmul_tiled`` and m, n, p are multiples of its tile size T,
        both operands are re-laid out as (rows/T, cols/T, T, T) grids of compact tiles, so the
        kernel multiplies aligned T x T blocks; the tiled result is permuted back. Otherwise
        the plain ``matmul`` kernel runs on the compact operands.
        """
        if not isinstance(other, NDArray):
            return NotImplemented
        if self.ndim != 2 or other.ndim != 2 or self._shape[1] != other._shape[0]:
            raise ValueError(
                f"NDArray @ needs 2-D arrays (m, n) and (n, p), got {self._shape} and "
                f"{other._shape}; array_api.matmul handles batches"
            )
        _check_same_device(self, other)
        device = self._device
        m, n = self._shape
        p = other._shape[1]
        if m == 0 or n == 0 or p == 0:
            return full((m, p), 0.0, device=device)
        tile = device.tile_size
        if device.matmul_tiled_kernel is not None and m % tile == n % tile == p % tile == 0:

            def tiled(matrix: NDArray) -> NDArray:
                rows, cols = matrix.shape
                return matrix.as_strided(
                    (rows // tile, cols // tile, tile, tile), (cols * tile, tile, cols, 1)
                ).compact()

            out = NDArray.make((m // tile, p // tile, tile, tile), device=device)
            device.matmul_tiled_kernel(
                tiled(self.compact())._handle, tiled(other.compact())._handle, out._handle, m, n, p
            )
            return out.permute((0, 2, 1, 3)).compact().reshape((m, p))
        if not self.is_compact() and p <= 128 and device.matmul_strided is not None:
            # A transposed view (the weight gradient's x.T @ g) times a narrow matrix: read in
            # place rather than copied (for wide ones, the C++ kernel packs A anyway, and
            # packing a compact copy is faster than gathering from the view).
            return matmul_view(self, 1, other)
        out = NDArray._fresh((m, p), device)
        device.matmul(self.compact()._handle, other.compact()._handle, out._handle, m, n, p)
        return out

    # ---- reductions ---------------------------------------------------------------------------

    def sum(self, axis=None, keepdims: bool = False) -> NDArray:
        """Sum over one axis (an int, negative allowed; a tuple of axes works too) or all of
        them (None).

        Shape: ``keepdims`` keeps the reduced axis with length 1; ``axis=None`` gives
        ``(1,)`` (or ``(1,) * ndim`` with keepdims) as in the course. (``array_api.sum``
        follows numpy instead: shape ``()`` and tuples of axes.)
        """
        return self._course_reduce(axis, keepdims, "reduce_sum")

    def max(self, axis=None, keepdims: bool = False) -> NDArray:
        """Maximum over one axis or all of them; shapes as in ``sum``."""
        return self._course_reduce(axis, keepdims, "reduce_max")

    def _course_reduce(self, axis, keepdims: bool, kernel_name: str) -> NDArray:
        axes = _normalize_axes(axis, len(self._shape))
        if keepdims:
            out_shape = tuple(1 if i in axes else dim for i, dim in enumerate(self._shape))
        elif axis is None:
            out_shape = (1,)
        else:
            out_shape = tuple(dim for i, dim in enumerate(self._shape) if i not in axes)
        return _reduce(self, axes, out_shape, kernel_name)


def _check_same_device(a: NDArray, b: NDArray) -> None:
    if a._device is not b._device and a._device != b._device:
        raise ValueError(f"arrays are on different devices: {a._device} and {b._device}")


def _is_broadcast(a: NDArray) -> bool:
    """Whether ``a`` is a broadcast view (a zero stride on an axis longer than 1), one whose
    compact copy would repeat its values: the strided kernels read it in place instead.
    Measured here, twice as fast for the (560, 10000) logits of a language model, and 5 to 7
    times for a batch norm's (2048, 32) scale (the kernel has a loop of its own for a repeated
    row and for one value per row)."""
    return any(stride == 0 and dim > 1 for dim, stride in zip(a._shape, a._strides))


def _check_same(a: NDArray, b: NDArray) -> None:
    """Element-wise kernels need equal shapes on one device (no implicit broadcasting)."""
    if a._shape != b._shape:
        raise ValueError(
            f"element-wise op on arrays of shapes {a._shape} and {b._shape}: shapes must be "
            "equal (broadcast explicitly with broadcast_to)"
        )
    _check_same_device(a, b)


def _from_numpy(values: np.ndarray, device: BackendDevice) -> NDArray:
    values = np.asarray(values, dtype=np.float32, order="C")  # (ascontiguousarray makes 0-D 1-D)
    out = NDArray._fresh(values.shape, device)
    device.from_numpy(values, out._handle)
    return out


def _reduce(a: NDArray, axes: tuple[int, ...], out_shape: Shape, kernel_name: str) -> NDArray:
    """Reduce ``a`` over ``axes`` with a block kernel (``reduce_sum`` / ``reduce_max``).

    The reduced axes are permuted to the end and the view compacted, so each output element
    reduces one contiguous block of ``prod(shape[axes])`` values.
    """
    kept = tuple(i for i in range(len(a._shape)) if i not in axes)
    order = kept + tuple(sorted(axes))
    view = a if order == tuple(range(len(order))) else a.permute(order)
    reduce_size = math.prod(a._shape[i] for i in axes)
    out = NDArray._fresh(out_shape, a._device)
    if out.size == 0:
        return out
    if reduce_size == 0:
        if kernel_name == "reduce_max":
            raise ValueError("zero-size array to reduction operation maximum which has no identity")
        out.fill(0.0)
        return out
    leading = axes == tuple(range(len(axes)))
    if kernel_name == "reduce_sum" and leading and a._device.sum_columns is not None:
        a._device.sum_columns(a.compact()._handle, out._handle, reduce_size)
        return out
    add_strided = a._device.strided_zip["add"]
    # Pairwise for wide rows or big arrays only: measured here, from 512 columns on it beats
    # the transposed copy (2.5x for (560, 10000)), and from 64K elements for narrow ones
    # (1.5x for a batch norm's (32768, 16)); for smaller arrays the copy is cheap and one
    # kernel call beats log2(rows) of them.
    if (
        kernel_name == "reduce_sum"
        and leading
        and add_strided
        and (out.size >= 512 or out.size * reduce_size >= 65536)
        and reduce_size > 1
    ):
        return _sum_leading_rows(a.compact(), reduce_size, out_shape, add_strided)
    getattr(a._device, kernel_name)(view.compact()._handle, out._handle, reduce_size)
    return out


def _sum_leading_rows(a: NDArray, rows: int, out_shape: Shape, add_strided) -> NDArray:
    """The sum over the leading axes of a compact array seen as ``rows`` rows: the two halves
    added row by row, then the halves of that, and so on (pairwise, so no transposed copy
    is made and rounding errors grow with log(rows)). Each round adds the second half, a view,
    to the first, which starts the buffer (``add_strided``); an odd row out is added at the
    end. For the bias gradient of a (560, 10000) layer this reads the array once or twice
    instead of transposing it first."""
    cols = a.size // rows
    current, leftovers = a, []
    while rows > 1:
        half = rows // 2
        if rows % 2:  # the last row waits
            leftovers.append((current, (rows - 1) * cols))
        summed = NDArray.make((half, cols), device=a._device)
        add_strided(
            current._handle, current._handle, summed._handle, (half, cols), (cols, 1), half * cols
        )
        current, rows = summed, half
    for source, offset in leftovers:
        total = NDArray.make((1, cols), device=a._device)
        add_strided(current._handle, source._handle, total._handle, (1, cols), (cols, 1), offset)
        current = total
    return NDArray.make(out_shape, device=a._device, handle=current._handle)


# =============================================================================================
# Module-level functions: numpy's names and semantics (the ``array_api`` of needle's ops)
# =============================================================================================

float32 = np.float32
ndarray = NDArray  # numpy's name for its array type, for isinstance checks in backend-neutral code


def array(a, dtype="float32", device: BackendDevice | None = None) -> NDArray:
    """A new NDArray holding a copy of ``a`` (NDArray, numpy array, list, scalar)."""
    _check_dtype(dtype)
    return NDArray(a, device=device)


def asarray(a, dtype="float32", device: BackendDevice | None = None) -> NDArray:
    """``a`` itself when it is an NDArray already on ``device``, else a copy there."""
    _check_dtype(dtype)
    if isinstance(a, NDArray) and (device is None or _as_device(device) == a._device):
        return a
    return NDArray(a, device=device)


def empty(shape, dtype="float32", device: BackendDevice | None = None) -> NDArray:
    return _as_device(device).empty(shape, dtype)


def full(shape, fill_value: Scalar, dtype="float32", device: BackendDevice | None = None):
    return _as_device(device).full(shape, fill_value, dtype)


def zeros(shape, dtype="float32", device: BackendDevice | None = None) -> NDArray:
    return _as_device(device).full(shape, 0.0, dtype)


def ones(shape, dtype="float32", device: BackendDevice | None = None) -> NDArray:
    return _as_device(device).full(shape, 1.0, dtype)


def empty_like(a: NDArray, dtype="float32") -> NDArray:
    return empty(a.shape, dtype, a.device)


def zeros_like(a: NDArray, dtype="float32") -> NDArray:
    return zeros(a.shape, dtype, a.device)


def ones_like(a: NDArray, dtype="float32") -> NDArray:
    return ones(a.shape, dtype, a.device)


def full_like(a: NDArray, fill_value: Scalar, dtype="float32") -> NDArray:
    return full(a.shape, fill_value, dtype, a.device)


def copy(a: NDArray) -> NDArray:
    """A compact copy in a new buffer."""
    return a._copy()


def reshape(a: NDArray, shape) -> NDArray:
    """``a`` with a new shape (one -1 allowed): a view when ``a``'s elements are already in
    row-major order in its buffer, else a reshaped compact copy."""
    shape = _resolve_shape(a.size, shape)
    if a.is_compact():
        return a.reshape(shape)
    if _is_row_major(a._shape, a._strides):  # e.g. a[2:5]: consecutive rows of a bigger buffer
        return NDArray.make(shape, device=a._device, handle=a._handle, offset=a._offset)
    return a.compact().reshape(shape)


def broadcast_to(a: NDArray, shape) -> NDArray:
    """numpy's ``broadcast_to``: prepends axes of length 1 as needed, then stretches axes of
    length 1 (stride 0); a view, no copy."""
    shape = _as_shape(shape)
    extra = len(shape) - a.ndim
    if extra < 0:
        raise ValueError(f"cannot broadcast shape {a.shape} to fewer axes {shape}")
    if extra:
        a = NDArray.make(
            (1,) * extra + a._shape,
            strides=(0,) * extra + a._strides,
            device=a._device,
            handle=a._handle,
            offset=a._offset,
        )
    return a.broadcast_to(shape)


def transpose(a: NDArray, axes: Sequence[int] | None = None) -> NDArray:
    """numpy's ``transpose``: a view with the axes permuted (reversed when ``axes`` is None)."""
    if axes is None:
        axes = tuple(range(a.ndim - 1, -1, -1))
    return a.permute(axes)


def swapaxes(a: NDArray, axis1: int, axis2: int) -> NDArray:
    """A view with two axes exchanged."""
    axis1, axis2 = _normalize_axes((axis1,), a.ndim)[0], _normalize_axes((axis2,), a.ndim)[0]
    order = list(range(a.ndim))
    order[axis1], order[axis2] = order[axis2], order[axis1]
    return a.permute(order)


def expand_dims(a: NDArray, axis: int) -> NDArray:
    """``a`` with a new axis of length 1 at position ``axis``."""
    axis = _normalize_axes(axis, a.ndim + 1)[0]
    return reshape(a, a.shape[:axis] + (1,) + a.shape[axis:])


def squeeze(a: NDArray, axis=None) -> NDArray:
    """``a`` without axes of length 1 (all of them, or the given ones, which must be 1)."""
    if axis is None:
        axes = tuple(i for i, dim in enumerate(a.shape) if dim == 1)
    else:
        axes = _normalize_axes(axis, a.ndim)
        if any(a.shape[i] != 1 for i in axes):
            raise ValueError(f"cannot squeeze axes {axis} of shape {a.shape}: length is not 1")
    return reshape(a, tuple(dim for i, dim in enumerate(a.shape) if i not in axes))


def _reduce_numpy_style(a: NDArray, axis, keepdims: bool, kernel_name: str) -> NDArray:
    axes = _normalize_axes(axis, a.ndim)
    if keepdims:
        out_shape = tuple(1 if i in axes else dim for i, dim in enumerate(a._shape))
    else:
        out_shape = tuple(dim for i, dim in enumerate(a._shape) if i not in axes)
    return _reduce(a, axes, out_shape, kernel_name)


def sum(a: NDArray, axis=None, keepdims: bool = False) -> NDArray:  # noqa: A001
    """numpy's ``sum``: over an int, a tuple of axes or all (None → shape ``()``)."""
    return _reduce_numpy_style(a, axis, keepdims, "reduce_sum")


def max(a: NDArray, axis=None, keepdims: bool = False) -> NDArray:  # noqa: A001
    """numpy's ``max``: over an int, a tuple of axes or all (None → shape ``()``)."""
    return _reduce_numpy_style(a, axis, keepdims, "reduce_max")


def mean(a: NDArray, axis=None, keepdims: bool = False) -> NDArray:
    """numpy's ``mean``: the sum divided by the number of reduced elements."""
    count = prod(a.shape[i] for i in _normalize_axes(axis, a.ndim))
    return sum(a, axis, keepdims) / count


_REFLECTED = {
    "__add__": "__radd__",
    "__sub__": "__rsub__",
    "__mul__": "__rmul__",
    "__truediv__": "__rtruediv__",
    "__pow__": "__rpow__",
    "maximum": "maximum",
}


def _binary(a, b, method: str):
    """Apply an NDArray operator where either operand may be a Python scalar."""
    if isinstance(a, NDArray):
        return getattr(a, method)(b)
    return getattr(b, _REFLECTED[method])(a)


def add(a, b) -> NDArray:
    return _binary(a, b, "__add__")


def subtract(a, b) -> NDArray:
    return _binary(a, b, "__sub__")


def multiply(a, b) -> NDArray:
    return _binary(a, b, "__mul__")


def divide(a, b) -> NDArray:
    return _binary(a, b, "__truediv__")


def power(a, b) -> NDArray:
    """Element-wise ``a ** b``: arrays of equal shape, or one of them a scalar."""
    return _binary(a, b, "__pow__")


def maximum(a, b) -> NDArray:
    """Element-wise maximum of arrays of equal shape, or of an array and a scalar."""
    return _binary(a, b, "maximum")


def negative(a: NDArray) -> NDArray:
    return -a


def exp(a: NDArray) -> NDArray:
    return a.exp()


def log(a: NDArray) -> NDArray:
    return a.log()


def tanh(a: NDArray) -> NDArray:
    return a.tanh()


def sqrt(a: NDArray) -> NDArray:
    return a**0.5


def matmul(a: NDArray, b: NDArray) -> NDArray:
    """numpy's ``matmul``: (..., m, n) @ (..., n, p) → (..., m, p), batch axes broadcast;
    a 1-D operand is a vector (its axis is dropped from the result).

    Common cases run as ONE 2-D matrix product: a batch against a single matrix
    ((..., m, n) @ (n, p) is a (B*m, n) @ (n, p) product), and a single matrix against a
    batch. Other batches loop over the batch in Python, one 2-D product each.
    """
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: input operand does not have enough dimensions (0-D)")
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = reshape(a, (1, a.shape[0]))
    if vector_b:
        b = reshape(b, (b.shape[0], 1))
    (m, n), (n_b, p) = a.shape[-2:], b.shape[-2:]
    if n != n_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({n} != {n_b})")
    _check_same_device(a, b)
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    batch = _broadcast_shapes(batch_a, batch_b)
    batch_size = prod(batch)

    if batch_size == 0:
        out = empty(batch + (m, p), device=a.device)
    elif not batch:
        out = a @ b
    elif prod(batch_b) == 1 and prod(batch_a) == batch_size:
        # One shared right matrix: stack the batch of left matrices into one tall matrix.
        out = reshape(reshape(a, (batch_size * m, n)) @ reshape(b, (n, p)), batch + (m, p))
    elif prod(batch_a) == 1 and prod(batch_b) == batch_size:
        # One shared left matrix: lay the batch of right matrices side by side, (n, B*p).
        b_wide = reshape(reshape(b, (batch_size, n, p)).permute((1, 0, 2)), (n, batch_size * p))
        out_wide = reshape(a, (m, n)) @ b_wide  # (m, B*p)
        out = reshape(reshape(out_wide, (m, batch_size, p)).permute((1, 0, 2)), batch + (m, p))
    else:
        out = _batched_matmul_loop(a, b, batch, m, n, p)

    if vector_a:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])
    if vector_b:
        out = reshape(out, out.shape[:-1])
    return out


def matmul_view(a: NDArray, split: int, b: NDArray) -> NDArray:
    """``reshape(a, (rows, cols)) @ b`` for any view ``a``, its first ``split`` axes making
    the rows and the others the columns (a convolution's im2col view, say). A backend with the
    optional ``matmul_strided`` kernel reads the view in place; others compact it first."""
    if b.ndim != 2:
        raise ValueError(f"matmul_view needs a 2-D right operand, got shape {b.shape}")
    rows, cols = math.prod(a._shape[:split]), math.prod(a._shape[split:])
    if cols != b._shape[0]:
        raise ValueError(f"matmul_view: {cols} columns against {b._shape[0]} rows of b")
    _check_same_device(a, b)
    kernel = a._device.matmul_strided
    if kernel is None or rows == 0 or cols == 0 or b._shape[1] == 0:
        return reshape(a, (rows, cols)) @ b
    out = NDArray._fresh((rows, b._shape[1]), a._device)
    kernel(
        a._handle,
        b.compact()._handle,
        out._handle,
        a._shape,
        a._strides,
        a._offset,
        split,
        b._shape[1],
    )
    return out


def _batched_matmul_loop(a: NDArray, b: NDArray, batch: Shape, m: int, n: int, p: int):
    """One 2-D product per batch element, written into a compact (B, m, p) result."""
    device = a.device
    batch_size = prod(batch)
    a_batch = reshape(broadcast_to(a, batch + (m, n)), (batch_size, m, n))
    b_batch = reshape(broadcast_to(b, batch + (n, p)), (batch_size, n, p))
    out = NDArray._fresh((batch_size, m, p), device)
    for i in range(batch_size):
        a_i = NDArray.make(
            (m, n), a_batch.strides[1:], device, a_batch._handle, a_batch._offset + i * m * n
        )
        b_i = NDArray.make(
            (n, p), b_batch.strides[1:], device, b_batch._handle, b_batch._offset + i * n * p
        )
        product = (a_i @ b_i).compact()
        device.ewise_setitem(product._handle, out._handle, (m, p), (p, 1), i * m * p)
    return out.reshape(batch + (m, p))


def stack(arrays: Sequence[NDArray], axis: int = 0) -> NDArray:
    """Join arrays of equal shape along a NEW axis ``axis``: ``out[..., i, ...] = arrays[i]``."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    first = arrays[0]
    for other in arrays[1:]:
        if other.shape != first.shape:
            raise ValueError(
                f"stack needs arrays of equal shape, got {first.shape} and {other.shape}"
            )
        _check_same_device(first, other)
    axis = _normalize_axes(axis, first.ndim + 1)[0]
    out = NDArray.make(
        first.shape[:axis] + (len(arrays),) + first.shape[axis:], device=first.device
    )
    slice_strides = out.strides[:axis] + out.strides[axis + 1 :]
    for i, item in enumerate(arrays):
        # out[..., i, ...] is a strided view of out's buffer starting at i * strides[axis].
        first.device.ewise_setitem(
            item.compact()._handle, out._handle, first.shape, slice_strides, i * out.strides[axis]
        )
    return out


def unstack(a: NDArray, axis: int = 0) -> tuple[NDArray, ...]:
    """numpy's ``unstack``: the slices ``a[..., i, ...]`` along ``axis`` with that axis
    removed, as views (no copy)."""
    axis = _normalize_axes(axis, a.ndim)[0]
    shape = a.shape[:axis] + a.shape[axis + 1 :]
    strides = a.strides[:axis] + a.strides[axis + 1 :]
    step = a.strides[axis]
    return tuple(
        NDArray.make(shape, strides, device=a.device, handle=a._handle, offset=a._offset + i * step)
        for i in range(a.shape[axis])
    )


def concatenate(arrays: Sequence[NDArray], axis: int = 0) -> NDArray:
    """Join arrays along an existing axis (other axes must match)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    first = arrays[0]
    axis = _normalize_axes(axis, first.ndim)[0]
    for other in arrays[1:]:
        if other.ndim != first.ndim or any(
            d1 != d2 for i, (d1, d2) in enumerate(zip(first.shape, other.shape)) if i != axis
        ):
            raise ValueError(
                f"concatenate along axis {axis} needs matching other axes: "
                f"{first.shape} and {other.shape}"
            )
    total = builtins.sum(item.shape[axis] for item in arrays)
    out = NDArray.make(first.shape[:axis] + (total,) + first.shape[axis + 1 :], device=first.device)
    start = 0
    for item in arrays:
        index = (slice(None),) * axis + (slice(start, start + item.shape[axis]),)
        out[index] = item
        start += item.shape[axis]
    return out


def flip(a: NDArray, axis=None) -> NDArray:
    """numpy's ``flip``: reverse along an int, a tuple of axes or all of them (None)."""
    return a.flip(_normalize_axes(axis, a.ndim))


def pad(a: NDArray, pad_width, mode: str = "constant", constant_values: Scalar = 0) -> NDArray:
    """numpy's ``pad`` with a constant: ``pad_width`` is ((before, after), ...) per axis, one
    (before, after) pair for all axes, or one int."""
    if mode != "constant":
        raise NotImplementedError(f"pad supports mode='constant' only, got {mode!r}")
    if (  # one (before, after) pair per axis, the common case, without numpy's broadcasting
        type(pad_width) is tuple
        and len(pad_width) == a.ndim
        and all(type(pair) is tuple and len(pair) == 2 for pair in pad_width)
    ):
        axes = tuple((operator.index(before), operator.index(after)) for before, after in pad_width)
    else:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
        axes = tuple((int(before), int(after)) for before, after in widths)
    if constant_values == 0:
        return a.pad(axes)
    out = full(
        tuple(b + d + e for d, (b, e) in zip(a.shape, axes)), constant_values, device=a.device
    )
    out[tuple(slice(before, before + dim) for dim, (before, _) in zip(a.shape, axes))] = a
    return out


def as_strided(a: NDArray, shape: Sequence[int], strides: Sequence[int]) -> NDArray:
    """A view of ``a``'s buffer with the given shape and strides counted in ELEMENTS."""
    return a.as_strided(tuple(shape), tuple(strides))
