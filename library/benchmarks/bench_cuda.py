"""Throughput of needle's CUDA kernels, against numpy on the CPU doing the same work.

Each row runs one backend kernel directly on device buffers (no NDArray or autograd overhead)
and reports the bandwidth it reaches (GB/s: bytes read + written per second) or, for matmul,
its arithmetic rate (GFLOP/s: 2 m n p per second). The reference is numpy on the host on the
same float32 data. GPU times are the best of several rounds, each round timing a batch of
launches that ends with ``synchronize()``, so launch overhead is amortised and no kernel is
still running when the clock stops.

Without a GPU (or without the compiled module) ``run()`` returns no rows and prints why.
Run ``python library/benchmarks/bench_cuda.py`` for a table, or call ``run()``.
"""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np

MODULE_NAME = "needle.backend_ndarray.ndarray_backend_cuda"
ELEMENTS = 1 << 24  # 16 M floats = 64 MiB per array
SQUARE = 4096  # compact/reduce on a 4096 x 4096 matrix
MATMUL = 2048  # m = n = p
ROUNDS = 5
LAUNCHES_PER_ROUND = 10
BANDWIDTH_TARGET = 10.0  # at least 10x numpy's GB/s
MATMUL_TARGET = 5.0  # at least 5x numpy's GFLOP/s


def _best_seconds(fn, synchronize=None, rounds: int = ROUNDS, batch: int = 1) -> float:
    """Best time of one call of ``fn`` over ``rounds`` rounds of ``batch`` calls each."""
    fn()  # warm up (first launch loads the module's kernels)
    if synchronize:
        synchronize()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if synchronize:
            synchronize()
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def _load_cuda():
    """The CUDA backend module and a note; the module is None when it cannot run here."""
    try:
        cuda = importlib.import_module(MODULE_NAME)
    except ImportError as error:
        return None, f"the CUDA backend is not built here ({error})"
    if cuda.device_count() == 0:
        return None, "no CUDA GPU here (device_count() == 0)"
    return cuda, f"GPU: {cuda.device_name()}"


def _to_gpu(cuda, values: np.ndarray):
    array = cuda.Array(values.size)
    cuda.from_numpy(np.ascontiguousarray(values, dtype=np.float32), array)
    return array


def _row(name: str, needle: float, reference: float, unit: str, target: float) -> dict:
    return {
        "row": name,
        "needle": round(needle, 1),
        "reference": round(reference, 1),
        "unit": unit,
        "ratio": round(needle / reference, 1),
        "target": f">= {target:g}x numpy",
    }


def _gpu_seconds(cuda, fn) -> float:
    return _best_seconds(fn, cuda.synchronize, batch=LAUNCHES_PER_ROUND)


def _elementwise_rows(cuda, rng) -> list[dict]:
    a = rng.standard_normal(ELEMENTS, dtype=np.float32)
    b = rng.standard_normal(ELEMENTS, dtype=np.float32)
    out = np.empty_like(a)
    gpu_a, gpu_b, gpu_out = _to_gpu(cuda, a), _to_gpu(cuda, b), cuda.Array(ELEMENTS)
    gigabytes = 3 * a.nbytes / 1e9  # two reads, one write
    rows = []
    for name, gpu_fn, numpy_fn in [
        ("ewise_add", lambda: cuda.ewise_add(gpu_a, gpu_b, gpu_out), lambda: np.add(a, b, out=out)),
        (
            "ewise_mul",
            lambda: cuda.ewise_mul(gpu_a, gpu_b, gpu_out),
            lambda: np.multiply(a, b, out=out),
        ),
        (
            "ewise_maximum",
            lambda: cuda.ewise_maximum(gpu_a, gpu_b, gpu_out),
            lambda: np.maximum(a, b, out=out),
        ),
    ]:
        gpu_s, numpy_s = _gpu_seconds(cuda, gpu_fn), _best_seconds(numpy_fn)
        rows.append(
            _row(
                f"cuda {name}, {ELEMENTS / 2**20:g}M floats",
                gigabytes / gpu_s,
                gigabytes / numpy_s,
                "GB/s",
                BANDWIDTH_TARGET,
            )
        )
    gpu_s = _gpu_seconds(cuda, lambda: cuda.ewise_exp(gpu_a, gpu_out))
    numpy_s = _best_seconds(lambda: np.exp(a, out=out))
    unary_gb = 2 * a.nbytes / 1e9
    rows.append(
        _row(
            f"cuda ewise_exp, {ELEMENTS / 2**20:g}M floats",
            unary_gb / gpu_s,
            unary_gb / numpy_s,
            "GB/s",
            BANDWIDTH_TARGET,
        )
    )
    return rows


def _layout_and_reduction_rows(cuda, rng) -> list[dict]:
    matrix = rng.standard_normal((SQUARE, SQUARE), dtype=np.float32)
    gpu_matrix, gpu_out = _to_gpu(cuda, matrix), cuda.Array(matrix.size)
    transposed = np.empty_like(matrix)
    gigabytes = 2 * matrix.nbytes / 1e9  # one read, one write
    gpu_s = _gpu_seconds(
        cuda, lambda: cuda.compact(gpu_matrix, gpu_out, (SQUARE, SQUARE), (1, SQUARE), 0)
    )
    numpy_s = _best_seconds(lambda: np.copyto(transposed, matrix.T))
    rows = [
        _row(
            f"cuda compact of a transposed {SQUARE}x{SQUARE}",
            gigabytes / gpu_s,
            gigabytes / numpy_s,
            "GB/s",
            BANDWIDTH_TARGET,
        )
    ]
    read_gb = matrix.nbytes / 1e9
    row_sums = cuda.Array(SQUARE)
    total = cuda.Array(1)
    for name, gpu_fn, numpy_fn in [
        (
            f"cuda reduce_sum over rows of {SQUARE}x{SQUARE}",
            lambda: cuda.reduce_sum(gpu_matrix, row_sums, SQUARE),
            lambda: matrix.sum(axis=1),
        ),
        (
            f"cuda reduce_max over rows of {SQUARE}x{SQUARE}",
            lambda: cuda.reduce_max(gpu_matrix, row_sums, SQUARE),
            lambda: matrix.max(axis=1),
        ),
        (
            f"cuda reduce_sum of all {SQUARE * SQUARE / 2**20:g}M elements",
            lambda: cuda.reduce_sum(gpu_matrix, total, matrix.size),
            lambda: matrix.sum(),
        ),
    ]:
        gpu_s, numpy_s = _gpu_seconds(cuda, gpu_fn), _best_seconds(numpy_fn)
        rows.append(_row(name, read_gb / gpu_s, read_gb / numpy_s, "GB/s", BANDWIDTH_TARGET))
    return rows


def _matmul_rows(cuda, rng) -> list[dict]:
    size = MATMUL
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    gpu_a, gpu_b, gpu_out = _to_gpu(cuda, a), _to_gpu(cuda, b), cuda.Array(size * size)
    gigaflops = 2 * size**3 / 1e9
    gpu_s = _gpu_seconds(cuda, lambda: cuda.matmul(gpu_a, gpu_b, gpu_out, size, size, size))
    numpy_s = _best_seconds(lambda: a @ b, rounds=3)
    return [
        _row(
            f"cuda matmul {size}x{size}x{size} (float32)",
            gigaflops / gpu_s,
            gigaflops / numpy_s,
            "GFLOP/s",
            MATMUL_TARGET,
        )
    ]


def run() -> list[dict]:
    """Rows of GB/s (or GFLOP/s) for needle's CUDA kernels and numpy on the CPU."""
    cuda, note = _load_cuda()
    print(f"bench_cuda: {note}", file=sys.stderr)
    if cuda is None:
        return []
    rng = np.random.default_rng(0)
    return (
        _elementwise_rows(cuda, rng)
        + _layout_and_reduction_rows(cuda, rng)
        + _matmul_rows(cuda, rng)
    )


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['row']}: needle {row['needle']} {row['unit']}, numpy {row['reference']} "
            f"{row['unit']}, ratio {row['ratio']} (target {row['target']})"
        )
