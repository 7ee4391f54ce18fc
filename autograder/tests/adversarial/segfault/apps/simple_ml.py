# adversarial: append to the release's version
# ruff: noqa
# Crash the interpreter.
import ctypes as _ctypes

_ctypes.string_at(0)
