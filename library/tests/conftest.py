"""Shared test fixtures: every device the selected backend has, CUDA skipped with a reason."""

import needle as ndl
import numpy as np
import pytest


def available_devices():
    """pytest params for each device of the current backend (``$NEEDLE_BACKEND``)."""
    if ndl.BACKEND == "np":
        return [pytest.param(ndl.cpu(), id="np")]
    params = [pytest.param(ndl.cpu_numpy(), id="cpu_numpy"), pytest.param(ndl.cpu(), id="cpu")]
    cuda = ndl.cuda()
    params.append(
        pytest.param(
            cuda,
            id="cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(
                    not cuda.enabled(),
                    reason="no CUDA GPU on this machine (the CUDA backend is built, not run)",
                ),
            ],
        )
    )
    return params


DEVICES = available_devices()


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
