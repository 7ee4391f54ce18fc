"""Fixtures of hw4's public tests: the devices to test on, and PyTorch as the reference.

Every test that takes ``device`` runs on needle's C++ CPU backend (``cpu``), on the numpy
reference backend (``cpu_numpy``: the same NDArray class with numpy kernels; it catches code
that ignores the device it is given, as the grader runs there), and on the CUDA backend
(``cuda``, skipped with a reason where there is no GPU). The tests that compare
with PyTorch take the ``torch`` fixture, which skips them with a reason if PyTorch is missing
(``pip install torch``: the CPU build is enough).
"""

from __future__ import annotations

import os

import needle as ndl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cpu_numpy", id="cpu_numpy"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """``ndl.cpu()``, ``ndl.cpu_numpy()`` or ``ndl.cuda()``. A CPU backend that is not built
    is an error (hw4 needs it: run ``make build``); a missing GPU only skips the CUDA run."""
    if request.param == "cpu_numpy":
        return ndl.cpu_numpy()
    if request.param == "cuda":
        device = ndl.cuda()
        if not device.enabled():
            pytest.skip(f"no CUDA device here ({device.unavailable_reason})")
        return device
    device = ndl.cpu()
    if not device.enabled():
        pytest.fail(
            "needle's C++ CPU backend is not available "
            f"({device.unavailable_reason}); build it with `make build` and run the tests again",
            pytrace=False,
        )
    return device


@pytest.fixture(scope="session")
def torch():
    """The ``torch`` module (the reference for convolutions and recurrent layers)."""
    module = pytest.importorskip(
        "torch", reason="these tests compare with PyTorch: pip install torch (the CPU build)"
    )
    module.set_num_threads(1)
    return module
