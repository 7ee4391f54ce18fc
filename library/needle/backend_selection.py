"""Which array library the ops compute with, chosen once by ``$NEEDLE_BACKEND``.

- ``nd`` (default): needle's own strided ``NDArray`` (``needle.backend_ndarray``), with the
  devices ``cpu()`` (C++), ``cuda()`` and ``cpu_numpy()`` (the numpy reference backend).
- ``np``: plain numpy arrays on a single CPU device, as in the first homeworks.
"""

import os
from typing import TYPE_CHECKING

BACKEND = os.environ.get("NEEDLE_BACKEND", "nd")

# The type checker sees the default backend, nd (with NEEDLE_BACKEND=np the same names are
# numpy's, which the code uses through the same numpy-style API).
if TYPE_CHECKING or BACKEND == "nd":
    from . import backend_ndarray as array_api
    from .backend_ndarray import (
        BackendDevice as Device,
    )
    from .backend_ndarray import (
        NDArray,
        all_devices,
        cpu,
        cpu_numpy,
        cuda,
        default_device,
    )
elif BACKEND == "np":
    import numpy as array_api

    from .backend_numpy import Device, all_devices, cpu, default_device

    NDArray = array_api.ndarray

    def cpu_numpy():
        return cpu()

    def cuda():
        raise RuntimeError("NEEDLE_BACKEND=np has no CUDA device; use NEEDLE_BACKEND=nd")
else:
    raise RuntimeError(f"Unknown needle array backend {BACKEND!r}: set NEEDLE_BACKEND to nd or np")

__all__ = [
    "BACKEND",
    "Device",
    "NDArray",
    "all_devices",
    "array_api",
    "cpu",
    "cpu_numpy",
    "cuda",
    "default_device",
]
