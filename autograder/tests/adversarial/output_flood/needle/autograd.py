# adversarial: append to the release's version
# ruff: noqa
# Print without end (fills the grader's memory or disk if output is not bounded).
import os as _os

_line = b"flood " * 2000 + b"\n"
while True:
    _os.write(1, _line)
