"""Eager-mode overhead of needle's autodiff against PyTorch.

A chain of 1,000 tiny ops (``x = x * 1.0001 + 0.5``, 500 times, on a 1-element tensor) is
almost pure bookkeeping: creating nodes, dispatching ops, walking the graph backwards. The
arrays are too small for the arithmetic to matter, so the ratio measures what the engine
itself costs per op. Target: at most 1.2x PyTorch's time for the same chain.

Run ``python library/benchmarks/bench_autograd.py`` for a table, or call ``run()``.
"""

from __future__ import annotations

import numpy as np
from timing import best_seconds

CHAIN_PAIRS = 500  # each pair is one multiply and one add: 1,000 ops
REPEATS = 7
TARGET_RATIO = 1.2


def needle_chain(device) -> None:
    import needle as ndl

    x = ndl.Tensor(np.ones(1, dtype=np.float32), device=device)
    y = x
    for _ in range(CHAIN_PAIRS):
        y = y * 1.0001 + 0.5
    y.backward()
    assert x.grad is not None


def torch_chain() -> None:
    import torch

    x = torch.ones(1, requires_grad=True)
    y = x
    for _ in range(CHAIN_PAIRS):
        y = y * 1.0001 + 0.5
    y.backward()
    assert x.grad is not None


def _cpu_devices():
    """Every CPU device of the selected backend that works here (numpy, cpu_numpy, cpu)."""
    import needle as ndl

    if ndl.BACKEND == "np":
        return [("np", ndl.cpu())]
    devices = [("cpu_numpy", ndl.cpu_numpy())]
    if ndl.cpu().enabled() and ndl.cpu() != ndl.cpu_numpy():
        devices.append(("cpu", ndl.cpu()))
    return devices


def run() -> list[dict]:
    """One row per CPU device: best-of-N time of the chain in needle and in PyTorch (ms)."""
    import torch

    torch.set_num_threads(1)
    rows = []
    for name, device in _cpu_devices():
        needle_s, torch_s = best_seconds(
            [lambda device=device: needle_chain(device), torch_chain], REPEATS
        )
        rows.append(
            {
                "row": f"autograd: 1000-op scalar chain, build + backward ({name})",
                "needle": round(needle_s * 1e3, 3),
                "reference": round(torch_s * 1e3, 3),
                "unit": "ms",
                "ratio": round(needle_s / torch_s, 2),
                "target": f"<= {TARGET_RATIO:g}x PyTorch",
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['row']}: needle {row['needle']} {row['unit']}, PyTorch {row['reference']} "
            f"{row['unit']}, ratio {row['ratio']} (target {row['target']})"
        )
