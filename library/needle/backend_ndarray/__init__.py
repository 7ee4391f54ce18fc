"""needle's own array library: the strided ``NDArray``, its devices and numpy-named functions.

With ``NEEDLE_BACKEND=nd`` (the default) this package is needle's ``array_api``: ops call
``array_api.reshape``, ``array_api.sum``, ``array_api.matmul``, ... with numpy's semantics, so
the same op code also runs on plain numpy. Devices: ``cpu()`` (C++), ``cuda()``,
``cpu_numpy()`` (the numpy reference backend) and ``default_device()``.
"""

# The public names are those of ``ndarray.__all__``: a function added there is exported here too.
from .ndarray import *  # noqa: F403
from .ndarray import __all__  # noqa: F401
