# ruff: noqa: I001  (import order matters: backends, then autograd, then ops, then the rest)
"""needle: necessary elements of deep learning.

``import needle as ndl`` gives tensors with reverse-mode autodiff (``ndl.Tensor``), ops
(``ndl.ops``), layers (``ndl.nn``), initialisers (``ndl.init``), optimisers (``ndl.optim``),
data loading (``ndl.data``) and the devices of the selected array backend
(``ndl.cpu()``, ``ndl.cuda()``, ``ndl.cpu_numpy()``).
"""

from . import backend_selection
from .backend_selection import (
    BACKEND,
    Device,
    NDArray,
    all_devices,
    array_api,
    cpu,
    cpu_numpy,
    cuda,
    default_device,
)

from . import autograd, ops  # noqa: E402,I001  (ops use autograd)
from .autograd import Tensor, TensorTuple  # noqa: E402
from .ops import *  # noqa: E402,F401,F403  (the course exposes every op at top level)
from . import init  # noqa: E402
from .init import ones, ones_like, zeros, zeros_like  # noqa: E402
from . import data, nn, optim  # noqa: E402

from . import backend_ndarray  # noqa: E402

__all__ = [
    "BACKEND",
    "Device",
    "NDArray",
    "Tensor",
    "TensorTuple",
    "all_devices",
    "array_api",
    "autograd",
    "backend_ndarray",
    "backend_selection",
    "cpu",
    "cpu_numpy",
    "cuda",
    "data",
    "default_device",
    "init",
    "nn",
    "ones",
    "ones_like",
    "ops",
    "optim",
    "zeros",
    "zeros_like",
]
