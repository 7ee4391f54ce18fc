# adversarial: append to the release's version
# ruff: noqa
# Patch the probe runner in this process: make every answer "true", fake the case list,
# and close the real output channel.
import sys as _sys

_runner = _sys.modules.get("__main__")
if _runner is not None and hasattr(_runner, "AnswerWriter"):
    _runner.AnswerWriter.encode = lambda self, value, depth=0: True
    _original_write = _runner.AnswerWriter.write

    def _write(self, record):
        if "case" in record:
            record = {"case": record["case"], "status": "ok", "value": {"$dict": {}}}
        _original_write(self, record)

    _runner.AnswerWriter.write = _write
