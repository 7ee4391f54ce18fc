# adversarial: append to the release's version
# ruff: noqa
# Leave a process behind that outlives the run (to tamper with later runs).
import os as _os

if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.execv("/bin/sleep", ["sleep", "4321"])
    _os._exit(0)
