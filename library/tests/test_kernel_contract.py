"""The backend contract: every backend exports every kernel of the table, with the same meaning.

The table is ``KERNELS`` in ``needle/backend_ndarray/ndarray_backend_numpy.py`` (the C++ and CUDA
modules register theirs from ``src/kernel_list.h``). Each entry carries an oracle, numpy code
that states what the kernel computes; this file calls each kernel of each backend (the numpy
reference ``cpu_numpy``, the C++ ``cpu`` and ``cuda``) directly on flat buffers with random
inputs, strided views for the kernels that take strides, and compares with the oracle. So a new
kernel is tested here as soon as it has a table entry: nothing in this file names a kernel.

Without a GPU the ``cuda`` cases skip with the reason. ``test_backend_cuda.py``'s slow emulator
test also runs this file against the CUDA source compiled for the CPU (``NEEDLE_TEST_CUDA_EMULATOR``
names that build; then only the ``cuda`` cases run, on it).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import zlib
from typing import Any

import numpy as np
import pytest
from needle.backend_ndarray import ndarray_backend_numpy as reference
from needle.backend_ndarray.ndarray_backend_numpy import KERNEL_ARGS, KERNELS, Kernel

pytestmark = pytest.mark.hw3

EMULATOR_VARIABLE = "NEEDLE_TEST_CUDA_EMULATOR"
PACKAGE = "needle.backend_ndarray"


def load_backend(name: str) -> tuple[Any, str | None]:
    """(module, None), or (None, why the backend cannot run here)."""
    if name == "cuda" and os.environ.get(EMULATOR_VARIABLE):
        # Under test_backend_cuda.py's name: pybind11 refuses to load one build twice.
        name = "emulated.ndarray_backend_cuda"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, os.environ[EMULATOR_VARIABLE])
            sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[name])
        return sys.modules[name], None
    module_name = "ndarray_backend_numpy" if name == "cpu_numpy" else f"ndarray_backend_{name}"
    try:
        module = importlib.import_module(f"{PACKAGE}.{module_name}")
    except ImportError as error:
        return None, f"the {name} backend is not built ({error})"
    if name == "cuda" and module.device_count() == 0:
        return None, "no CUDA GPU on this machine (the CUDA backend is built, not run)"
    return module, None


def backend_params():
    names = ["cuda"] if os.environ.get(EMULATOR_VARIABLE) else ["cpu_numpy", "cpu", "cuda"]
    params = []
    for name in names:
        marks = [pytest.mark.cuda] if name == "cuda" else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


_MODULES: dict[str, tuple[Any, str | None]] = {}


@pytest.fixture(params=backend_params())
def backend(request):
    """The backend module of one device; skips with the reason where it cannot run."""
    name = request.param
    if name not in _MODULES:
        _MODULES[name] = load_backend(name)
    module, reason = _MODULES[name]
    if module is None:
        pytest.skip(reason)
    return module


# ---- buffers ---------------------------------------------------------------------------------


def to_backend(module, values) -> Any:
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    array = module.Array(values.size)
    module.from_numpy(values, array)
    return array


def from_backend(module, array) -> np.ndarray:
    return module.to_numpy(array, (array.size,), (1,), 0)


# ---- test cases: the arguments of one call, by kind ------------------------------------------


def random_floats(rng, size, domain=(-3.0, 3.0)) -> np.ndarray:
    return rng.uniform(*domain, size=size).astype(np.float32)


def numpy_view(rng, ndim: int):
    """A view as NDArray makes them (permute, slices with steps, flips) of a random buffer:
    (buffer size, shape, strides, offset), distinct elements at distinct positions."""
    base = np.zeros(tuple(int(n) for n in rng.integers(1, 5, size=ndim)), np.float32)
    view = base.transpose(rng.permutation(ndim)) if ndim else base
    if ndim:
        steps = [int(rng.integers(1, 3)) * int(rng.choice([-1, 1])) for _ in range(ndim)]
        starts = [int(rng.integers(0, n)) if rng.random() < 0.5 else None for n in view.shape]
        view = view[tuple(slice(start, None, step) for start, step in zip(starts, steps))]
    return layout(base, view)


def layout(base: np.ndarray, view: np.ndarray):
    """(buffer size, shape, strides, offset) of a numpy view of ``base``, in elements."""
    start = base.__array_interface__["data"][0]
    offset = (view.__array_interface__["data"][0] - start) // base.itemsize
    strides = tuple(s // base.itemsize for s in view.strides)
    return base.size, view.shape, strides, offset


def raw_view(rng, ndim: int):
    """Arbitrary strides: zero (broadcast), negative, overlapping (only read, never written)."""
    shape = tuple(int(n) for n in rng.integers(1, 4, size=ndim))
    strides = tuple(int(s) for s in rng.integers(-6, 7, size=ndim))
    lowest = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    highest = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    offset = -lowest + int(rng.integers(0, 4))
    return offset + highest + 1 + int(rng.integers(0, 4)), shape, strides, offset


def im2col_view():
    """The im2col view of a convolution: (N, out_h, out_w, K_h, K_w, C) over an NHWC
    (2, 9, 8, 3) input, 3x3 kernel, stride 2."""
    base = np.zeros(2 * 9 * 8 * 3, np.float32)
    image = base.reshape(2, 9, 8, 3)
    n, h, w, c = (stride // 4 for stride in image.strides)
    view = np.lib.stride_tricks.as_strided(
        image, (2, 4, 3, 3, 3, 3), tuple(4 * s for s in (n, 2 * h, 2 * w, h, w, c))
    )
    return layout(base, view)


def named_views():
    """Big views of the shapes the fast paths look for (transposes, broadcasts, flips)."""
    base = np.zeros(2 * 3 * 4 * 5 * 6 * 7 * 2, np.float32)
    b2 = base[: 97 * 101].reshape(97, 101)
    views = {
        "compact_7d": base.reshape(2, 3, 4, 5, 6, 7, 2),
        "transpose": b2.T,
        "slice_steps": b2[3:90:4, 5:100:3],
        "flip_both": b2[::-1, ::-2],
        "flipped_transpose": b2[::-1].T,
        "permute_nhwc": base[: 2 * 16 * 15 * 20].reshape(2, 16, 15, 20).transpose(0, 2, 3, 1),
        "broadcast_row": np.broadcast_to(base[:101], (40, 101)),
        "broadcast_col": np.broadcast_to(base[:40, None], (40, 101)),
    }
    return {name: layout(base, view) for name, view in views.items()}


ELEMENTWISE_SIZES = [0, 1, 257, 70_001]
REDUCE_SHAPES = [(1, 1), (7, 1), (3, 5), (1000, 31), (10, 32), (5, 33), (300, 100), (3, 4097)]
REDUCE_SHAPES += [(2, 100_000)]
MATMUL_SIZES = [(1, 1, 1), (2, 3, 4), (16, 16, 16), (72, 73, 74), (65, 17, 129), (1, 300, 200)]
MATMUL_SIZES += [(300, 5, 1), (129, 200, 67), (3, 0, 5)]
TILED_MATMUL_SIZES = [(1, 1, 1), (2, 3, 1), (3, 2, 5)]  # in tiles


def cases(kernel: Kernel) -> list[tuple[str, dict]]:
    """(id, recipe) pairs: what to call ``kernel`` with (made concrete by ``arguments``)."""
    if kernel.kind in ("fill", "map", "zip", "scalar"):
        return [(f"size{size}", {"size": size}) for size in ELEMENTWISE_SIZES]
    if kernel.kind in ("gather", "scatter", "zip_strided"):
        reads = kernel.kind != "scatter"  # the view is only read
        found = [
            (name, {"view": view})
            for name, view in named_views().items()
            if reads or 0 not in view[2]  # a broadcast view is only read
        ]
        for ndim in range(7):
            rng = np.random.default_rng(ndim)
            found.append((f"numpy_view_{ndim}d", {"view": numpy_view(rng, ndim)}))
            if reads:  # views that overlap themselves are only read
                found.append((f"raw_view_{ndim}d", {"view": raw_view(rng, ndim)}))
        return found
    if kernel.kind in ("reduce", "reduce_columns"):  # rows: of the result, size: summed
        return [(f"{rows}x{size}", {"rows": rows, "size": size}) for rows, size in REDUCE_SHAPES]
    if kernel.kind == "matmul":
        sizes = TILED_MATMUL_SIZES if kernel.tiled else MATMUL_SIZES
        return [("x".join(map(str, mnp)), {"mnp": mnp}) for mnp in sizes]
    if kernel.kind == "matmul_strided":
        found = [("im2col_3x3_stride2", {"view": im2col_view(), "split": 3, "p": 19})]
        # wide products pack the view (the narrow ones above read it in place)
        found.append(("im2col_3x3_stride2_wide", {"view": im2col_view(), "split": 3, "p": 150}))
        for name, view in named_views().items():  # every split point of views that are read
            for split in range(len(view[1]) + 1):
                found.append((f"{name}_split{split}", {"view": view, "split": split, "p": 5}))
        for ndim in range(1, 7):
            rng = np.random.default_rng(100 + ndim)
            view, split = raw_view(rng, ndim), int(rng.integers(0, ndim + 1))
            found.append((f"raw_view_{ndim}d", {"view": view, "split": split, "p": 40}))
        return found
    raise AssertionError(f"no test cases for kind {kernel.kind!r}")


CASES = [
    pytest.param(kernel, recipe, id=f"{kernel.name}-{case_id}")
    for kernel in KERNELS
    for case_id, recipe in cases(kernel)
]


def arguments(kernel: Kernel, recipe: dict, module, rng) -> dict[str, Any]:
    """Numpy values for each of ``kernel.args`` (buffers as 1-D float32 arrays)."""
    kind, values = kernel.kind, {}
    if kind in ("fill", "map", "zip", "scalar"):
        size = recipe["size"]
        values["val"] = 0.75
        values["a"] = random_floats(rng, size, kernel.domain)
        values["a"][::4] = values["val"]  # ties with the scalar ...
        values["b"] = random_floats(rng, size)
        values["b"][::3] = values["a"][::3]  # ... and between a and b, for the comparisons
        values["out"] = np.zeros(size, np.float32)
    elif kind in ("gather", "scatter"):
        buffer_size, shape, strides, offset = recipe["view"]
        count = math.prod(shape)
        values.update(shape=tuple(shape), strides=tuple(strides), offset=offset)
        values.update(size=count, val=7.25)
        if kind == "gather":
            values["a"] = random_floats(rng, buffer_size)
            values["out"] = np.zeros(count, np.float32)
        else:
            values["a"] = random_floats(rng, count, (10.0, 20.0))
            values["out"] = random_floats(rng, buffer_size)
    elif kind == "zip_strided":
        buffer_size, shape, strides, offset = recipe["view"]
        count = math.prod(shape)
        values.update(shape=tuple(shape), strides=tuple(strides), offset=offset)
        values["a"] = random_floats(rng, count, (-2.0, 2.0))
        values["b"] = random_floats(rng, buffer_size, (0.5, 2.0))  # no division by ~0
        values["out"] = np.zeros(count, np.float32)
    elif kind in ("reduce", "reduce_columns"):
        rows, size = recipe["rows"], recipe["size"]
        values["a"] = random_floats(rng, rows * size, kernel.domain)
        values["a"][rows // 2 * size + size // 2] = 50.0  # a maximum in the middle of a row
        values.update(out=np.zeros(rows, np.float32), reduce_size=size)
    elif kind == "matmul_strided":
        buffer_size, shape, strides, offset = recipe["view"]
        split, p = recipe["split"], recipe["p"]
        cols = math.prod(shape[split:])
        values.update(shape=tuple(shape), strides=tuple(strides), offset=offset, split=split, p=p)
        values["a"] = random_floats(rng, buffer_size, (-1.0, 1.0))
        values["b"] = random_floats(rng, cols * p, (-1.0, 1.0))
        values["out"] = np.zeros(math.prod(shape[:split]) * p, np.float32)
    elif kind == "matmul":
        tile = module.__tile_size__ if kernel.tiled else 1
        m, n, p = (dim * tile for dim in recipe["mnp"])
        values["a"] = random_floats(rng, m * n, (-1.0, 1.0))
        values["b"] = random_floats(rng, n * p, (-1.0, 1.0))
        values.update(out=np.zeros(m * p, np.float32), m=m, n=n, p=p)
    missing = [arg for arg in kernel.args if arg not in values]
    assert not missing, f"{kernel.name}: the test makes no {missing}"
    return {arg: values[arg] for arg in kernel.args}


def call_kernel(kernel: Kernel, module, values: dict[str, Any]) -> np.ndarray:
    """Run ``kernel`` of ``module`` on ``values``; returns what ``out`` holds afterwards."""
    on_backend = {
        arg: to_backend(module, value) if isinstance(value, np.ndarray) else value
        for arg, value in values.items()
    }
    getattr(module, kernel.name)(*(on_backend[arg] for arg in kernel.args))
    return from_backend(module, on_backend["out"])


def oracle(kernel: Kernel, module, values: dict[str, Any], magnitude=False) -> np.ndarray:
    """The oracle's ``out`` (in float64), from float64 copies of the inputs; with
    ``magnitude``, of their absolute values."""
    inputs = {}
    for arg, value in values.items():
        if isinstance(value, np.ndarray):
            value = value.astype(np.float64)
            value = np.abs(value) if magnitude else value
        inputs[arg] = value
    if kernel.tiled:
        inputs["tile"] = module.__tile_size__
    return np.asarray(kernel.oracle(**inputs), dtype=np.float64)


# ---- the tests -------------------------------------------------------------------------------


def test_the_table_matches_the_numpy_reference():
    """Names are unique, each kind's parameters are the numpy function's, in order."""
    names = [kernel.name for kernel in KERNELS]
    assert len(names) == len(set(names)), "a kernel is listed twice"
    for kernel in KERNELS:
        assert kernel.kind in KERNEL_ARGS, kernel
        assert "out" in kernel.args, kernel
        if kernel.name != "scalar_setitem":  # the one kernel whose arguments differ from its kind
            assert kernel.args == KERNEL_ARGS[kernel.kind], kernel
        if kernel.required:
            parameters = inspect.signature(getattr(reference, kernel.name)).parameters
            assert tuple(parameters) == kernel.args, kernel.name
    assert {kernel.kind for kernel in KERNELS} == set(KERNEL_ARGS)


def test_the_kernel_list_header_matches_the_table():
    """src/kernel_list.h, which the C++ and CUDA modules register from, lists the same kernels."""
    header = os.path.join(os.path.dirname(__file__), "..", "src", "kernel_list.h")
    if not os.path.exists(header):
        pytest.skip("no src/kernel_list.h next to the package (an installed needle)")
    listed = []
    with open(header, encoding="utf-8") as file:
        for line in file:
            entry = re.match(r"NEEDLE_(\w*?)_?KERNEL\((\w+),", line)
            if entry is None:
                continue
            family, name = entry.groups()
            if family == "BINARY":
                listed += [f"ewise_{name}", f"scalar_{name}"]
            elif family == "UNARY":
                listed.append(f"ewise_{name}")
            else:
                listed.append(name)
    assert listed == [kernel.name for kernel in KERNELS]


KERNEL_NAME = re.compile(r"^(ewise_|scalar_|reduce_|matmul|compact$|fill$)")


def test_backend_exports_every_kernel_of_the_table(backend):
    assert {"Array", "from_numpy", "to_numpy"} <= set(dir(backend))
    missing = [kernel.name for kernel in KERNELS if kernel.required]
    missing = [name for name in missing if not callable(getattr(backend, name, None))]
    assert missing == [], f"{backend.__device_name__} lacks kernels of the table: {missing}"
    # and nothing that looks like a kernel is missing from the table
    listed = {kernel.name for kernel in KERNELS}
    extra = [name for name in dir(backend) if KERNEL_NAME.match(name) and name not in listed]
    assert extra == [], f"{backend.__device_name__} exports kernels the table lacks: {extra}"


@pytest.mark.parametrize("kernel, recipe", CASES)
def test_kernel_agrees_with_numpy(backend, kernel: Kernel, recipe: dict):
    if not hasattr(backend, kernel.name):
        assert not kernel.required
        pytest.skip(f"{backend.__device_name__} has no {kernel.name} (an optional fast path)")
    rng = np.random.default_rng(zlib.crc32(kernel.name.encode()))
    values = arguments(kernel, recipe, backend, rng)
    result = call_kernel(kernel, backend, values)
    with np.errstate(all="ignore"):
        expected = oracle(kernel, backend, values)
        assert result.shape == expected.shape
        if kernel.rtol == 0:
            np.testing.assert_array_equal(result, expected.astype(np.float32))
            return
        if kernel.kind in (
            "reduce",
            "reduce_columns",
            "matmul",
            "matmul_strided",
        ):  # sums: relative to the size of the terms
            scale = oracle(kernel, backend, values, magnitude=True)
        else:
            scale = np.abs(expected)
    error = np.abs(result.astype(np.float64) - expected)
    tolerance = kernel.rtol * scale + 1e-7
    worst = int(np.argmax(error - tolerance)) if error.size else 0
    assert np.all(error <= tolerance), (
        f"{kernel.name}: element {worst} is {result[worst]}, numpy says {expected[worst]}"
    )
