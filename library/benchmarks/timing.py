"""Best-of-N timing shared by the benchmark modules."""

from __future__ import annotations

import time

# Worker threads of a BLAS or OpenMP runtime keep spinning for a while after their last job,
# and while they spin they hold a core. Measured here: needle's 2-thread 512^3 matmul right
# after numpy's ran at 82 GFLOP/s, 0.2 s later at 131, 1 s later at 168. So each function
# runs in blocks of at least this long, and only its best call counts: the late calls of a
# block see no other library's threads. (Sleeping instead does not work on this virtual
# machine: an idle vCPU comes back slow, which halved ResNet9's measured speed.)
MIN_BLOCK_SECONDS = 1.2


def best_seconds(fns, repeats: int, rounds: int = 2) -> list[float]:
    """Best wall time of one call of each function.

    The functions run in `rounds` rounds; in each round every function runs a block of calls
    in turn (so a busy shared machine slows all of them alike): at least its share of
    `repeats` calls, and for at least `MIN_BLOCK_SECONDS`.
    """
    rounds = max(1, min(rounds, repeats))
    per_block = -(-repeats // rounds)
    for fn in fns:
        fn()  # warm up: page faults, caches, lazy imports, thread start-up
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            block_start = time.perf_counter()
            calls = 0
            while calls < per_block or time.perf_counter() - block_start < MIN_BLOCK_SECONDS:
                start = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - start)
                calls += 1
    return best
