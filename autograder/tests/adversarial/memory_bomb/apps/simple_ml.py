# adversarial: append to the release's version
# ruff: noqa
# Grab far more memory than any limit allows, a piece at a time and all at once.
import numpy as _np

_hoard = []
try:
    while True:
        _hoard.append(_np.empty(64 * 1024 * 1024 // 8))  # 64 MiB a step
except MemoryError:
    pass
_huge = bytearray(64 * 1024**3)
