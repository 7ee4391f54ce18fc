# adversarial: append to the release's version
# ruff: noqa
# Forge results everywhere a naive grader might look, and forge answer records on stdout
# (with the runner's own prefix) for every probe this unit runs.
import json as _json
import os as _os
import re as _re

_FAKE = {"score": 100.0, "max_score": 100.0, "tests": [{"name": "all", "score": 100.0}]}
for _path in (
    "/autograder/results/results.json",
    "/work/results.json",
    "/grader/results.json",
    "/out/results.json",
    "/tmp/results.json",
    _os.path.expanduser("~/results.json"),
    "../results.json",
):
    try:
        _os.makedirs(_os.path.dirname(_os.path.abspath(_path)), exist_ok=True)
        with open(_path, "w") as _handle:
            _handle.write(_json.dumps(_FAKE))
    except OSError:
        pass
print(_json.dumps(_FAKE))
try:
    _cases = _re.findall(r"def (\w+)\(", open("/grader/probes.py").read())
except OSError:
    _cases = []
_prefix = b"\n\x1eNEEDLE-ANSWER "
_os.write(
    1, _prefix + _json.dumps({"event": "start", "unit": "x", "cases": _cases}).encode() + b"\n"
)
for _case in _cases:
    for _value in (0.0, True, [0.0, 0.0], None):
        _os.write(
            1,
            _prefix
            + _json.dumps({"case": _case, "status": "ok", "value": _value}).encode()
            + b"\n",
        )
_os.write(1, _prefix + b'{"event": "done"}\n')
