# adversarial: append to the release's version
# ruff: noqa
# Try to write where later runs, other submissions or the grader would see it.
import json as _json
import os as _os

_TARGETS = [
    "/work/main/build/autograder/ADVERSARIAL-PWNED",
    "/work/main/autograder/probes/ADVERSARIAL-PWNED",
    "/work/ADVERSARIAL-PWNED",
    "/work/needle/ADVERSARIAL-PWNED",
    "/grader/ADVERSARIAL-PWNED",
    "/grader/runner.py",
    "/opt/runtime/ADVERSARIAL-PWNED",
    "/opt/site/numpy/__init__.py",
    "/usr/ADVERSARIAL-PWNED",
    "/etc/ADVERSARIAL-PWNED",
    "/ADVERSARIAL-PWNED",
    "/root/ADVERSARIAL-PWNED",
    "/var/tmp/ADVERSARIAL-PWNED",
    "/dev/shm/ADVERSARIAL-PWNED",
]
_written = []
for _path in _TARGETS:
    try:
        with open(_path, "a") as _handle:
            _handle.write("pwned\n")
        _written.append(_path)
    except OSError:
        pass
with open("/tmp/scratch-is-fine", "w") as _handle:  # private /tmp: allowed, then discarded
    _handle.write("ok")
raise RuntimeError("ATTACK-REPORT " + _json.dumps(_written))
