"""Throughput of needle's C++ CPU kernels against numpy, in the same run.

Each row calls one backend kernel directly on flat buffers (no NDArray or autograd overhead) and
numpy on the same float32 data, writing into a preallocated output on both sides:

- matmul: GFLOP/s (2 n^3 per product) at n = 256, 512, 1024, 2048, numpy via its BLAS
  (OpenBLAS), with 1 and with 2 threads on both sides. Target: >= 0.8x numpy.
- memory-bound kernels on 4M floats: GB/s (bytes read + written per second) for ewise add and
  mul, exp, compact of a transposed and of a permuted 4-D array, reduce_sum and reduce_max.
  numpy's ufuncs run on one thread whatever the setting, so the 2-thread rows show what
  needle's threads add. Target: >= 0.7x numpy.

Thread counts are fixed per process (OpenBLAS reads OPENBLAS_NUM_THREADS when numpy is
imported), so every thread count runs in its own subprocess with NEEDLE_NUM_THREADS,
OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set. Times are the best of N rounds in which needle
and numpy take turns, so a busy (shared) machine slows both alike.

Run ``python library/benchmarks/bench_ndarray.py`` for a table, or call ``run()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from timing import best_seconds

THREAD_COUNTS = (1, 2)
MATMUL_SIZES = (256, 512, 1024, 2048)
ELEMENTS = 1 << 22  # 4M floats = 16 MiB per array
MATMUL_TARGET = 0.8
MEMORY_TARGET = 0.7
WORKER_FLAG = "--worker"


def _row(name, needle, reference, unit, target) -> dict:
    return {
        "row": name,
        "needle": round(needle, 1),
        "reference": round(reference, 1),
        "unit": unit,
        "ratio": round(needle / reference, 2),
        "target": f">= {target:g}x numpy",
    }


def _matmul_seconds(cpu, np, n: int, rng) -> tuple[float, float]:
    """Best seconds of one n x n x n product in needle and in numpy."""
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    needle_a, needle_b, needle_c = _to_array(cpu, a), _to_array(cpu, b), cpu.Array(n * n)
    repeats = min(30, max(3, int(2e9 / n**3)))  # at most about 4 s at 80 GFLOP/s
    return best_seconds(
        [
            lambda: cpu.matmul(needle_a, needle_b, needle_c, n, n, n),
            lambda: np.matmul(a, b, out=c),
        ],
        repeats,
    )


def _matmul_rows(cpu, np, threads: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in MATMUL_SIZES:
        needle_s, numpy_s = _matmul_seconds(cpu, np, n, rng)
        gigaflops = 2 * n**3 / 1e9
        label = f"ndarray matmul {n}^3 float32 ({_threads_label(threads)})"
        rows.append(
            _row(label, gigaflops / needle_s, gigaflops / numpy_s, "GFLOP/s", MATMUL_TARGET)
        )
    return rows


def _memory_rows(cpu, np, threads: int) -> list[dict]:
    rng = np.random.default_rng(1)
    x = rng.random(ELEMENTS, dtype=np.float32) + 0.5
    y = rng.random(ELEMENTS, dtype=np.float32) + 0.5
    z = np.empty_like(x)
    a, b, out = _to_array(cpu, x), _to_array(cpu, y), cpu.Array(ELEMENTS)
    side = int(round(ELEMENTS**0.5))  # 2048
    nchw = (32, 64, 64, 32)  # permuted to (0, 2, 3, 1), as NCHW -> NHWC
    nhwc_view = x.reshape(nchw).transpose(0, 2, 3, 1)
    nhwc_strides = [s // x.itemsize for s in nhwc_view.strides]
    rows_1024 = ELEMENTS // 1024
    out_rows, out_one = cpu.Array(rows_1024), cpu.Array(1)
    gigabytes = ELEMENTS * 4 / 1e9  # one pass over one array
    cases = [
        ("ewise_add", 3, lambda: cpu.ewise_add(a, b, out), lambda: np.add(x, y, out=z)),
        ("ewise_mul", 3, lambda: cpu.ewise_mul(a, b, out), lambda: np.multiply(x, y, out=z)),
        ("ewise_exp", 2, lambda: cpu.ewise_exp(a, out), lambda: np.exp(x, out=z)),
        (
            f"compact transpose {side}x{side}",
            2,
            lambda: cpu.compact(a, out, [side, side], [1, side], 0),
            lambda: np.copyto(z.reshape(side, side), x.reshape(side, side).T),
        ),
        (
            "compact permute (0,2,3,1) of 32x64x64x32",
            2,
            lambda: cpu.compact(a, out, list(nhwc_view.shape), nhwc_strides, 0),
            lambda: np.copyto(z.reshape(nhwc_view.shape), nhwc_view),
        ),
        (
            "reduce_sum whole array",
            1,
            lambda: cpu.reduce_sum(a, out_one, ELEMENTS),
            lambda: x.sum(),
        ),
        (
            "reduce_sum rows of 1024",
            1,
            lambda: cpu.reduce_sum(a, out_rows, 1024),
            lambda: x.reshape(rows_1024, 1024).sum(axis=1),
        ),
        (
            "reduce_max whole array",
            1,
            lambda: cpu.reduce_max(a, out_one, ELEMENTS),
            lambda: x.max(),
        ),
        (
            "reduce_max rows of 1024",
            1,
            lambda: cpu.reduce_max(a, out_rows, 1024),
            lambda: x.reshape(rows_1024, 1024).max(axis=1),
        ),
    ]
    rows = []
    for name, passes, needle_fn, numpy_fn in cases:
        needle_s, numpy_s = best_seconds([needle_fn, numpy_fn], repeats=15)
        moved = passes * gigabytes
        label = f"ndarray {name}, 4M floats ({_threads_label(threads)})"
        rows.append(_row(label, moved / needle_s, moved / numpy_s, "GB/s", MEMORY_TARGET))
    return rows


def _threads_label(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads > 1 else "")


def _to_array(cpu, x):
    array = cpu.Array(x.size)
    cpu.from_numpy(x, array)
    return array


def _worker(threads: int) -> list[dict]:
    """All rows for one thread count; runs in a process started with the thread settings."""
    import numpy as np

    try:
        from needle.backend_ndarray import ndarray_backend_cpu as cpu
    except ImportError as error:
        return [{"row": "ndarray (C++ cpu)", "skipped": f"backend not built: {error}"}]
    if cpu.get_num_threads() != threads:
        cpu.set_num_threads(threads)
    simd = cpu.simd_level() if hasattr(cpu, "simd_level") else "?"
    print(f"bench_ndarray: {threads} thread(s), kernels use {simd}", file=sys.stderr)
    return _matmul_rows(cpu, np, threads) + _memory_rows(cpu, np, threads)


def run() -> list[dict]:
    """Rows for every thread count, each measured in a fresh subprocess."""
    rows = []
    for threads in THREAD_COUNTS:
        env = dict(os.environ)
        for key in ("NEEDLE_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[key] = str(threads)
        result = subprocess.run(
            [sys.executable, __file__, WORKER_FLAG, str(threads)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            rows.append(
                {
                    "row": f"ndarray ({_threads_label(threads)})",
                    "skipped": f"worker failed with exit status {result.returncode}",
                }
            )
            continue
        rows.extend(json.loads(result.stdout.strip().splitlines()[-1]))
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        print(json.dumps(_worker(int(sys.argv[2]))))
    else:
        for row in run():
            if "skipped" in row:
                print(f"{row['row']}: skipped ({row['skipped']})")
                continue
            print(
                f"{row['row']}: needle {row['needle']} {row['unit']}, numpy "
                f"{row['reference']} {row['unit']}, ratio {row['ratio']} "
                f"(target {row['target']})"
            )
