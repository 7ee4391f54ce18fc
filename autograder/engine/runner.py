"""The probe runner: the only autograder code that runs next to a submission.

It is started inside the sandbox as ``python -I -S -B runner.py CONFIG.json`` and does, in
order: apply the resource limits (so the student's code starts already bounded), set the
environment and ``sys.path`` (the submission workspace and the runtime's numpy; nothing else),
select the input variant the grader chose (``kit.set_variant``), import the probes of ONE
unit, call each probe, and send each probe's answer to the grader as
soon as it is known, so a crash later on keeps the answers already sent.

Answers travel on standard output, one record per line, each line starting with
``RECORD_PREFIX``; everything else on stdout/stderr is the submission's own output, which the
grader keeps (bounded) for diagnostics only. There is no writable folder shared with the grader,
so nothing the submission writes can fill the grader's disk or be mistaken for a result.

Nothing here is trusted. The student's code shares this process and may patch or replace
any of it; that is fine, because the only thing that leaves the sandbox is data that the
grader parses strictly (plain JSON, ``np.load(allow_pickle=False)``) and compares with
reference answers the sandbox never sees. This file therefore uses the standard library and
numpy only, and is written for clarity, not defence.

Records (JSON objects)::

    {"event": "start", "unit": "forward", "cases": ["power_scalar", ...]}
    {"case": "power_scalar", "status": "ok", "value": VALUE}
    {"case": "divide", "status": "error", "error": {"type": "NotImplementedError",
        "message": "...", "frames": [["/work/needle/ops/ops_mathematic.py", 120, "compute"]]}}
    {"event": "done"}

where VALUE is null, a bool, an int, a float, a string, a JSON list of VALUEs, ``{"$dict":
{str: VALUE}}`` or ``{"$npy": BASE64}`` (the bytes of a ``.npy`` file).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import sys
import traceback

MAX_MESSAGE_CHARS = 2000
MAX_STRING_CHARS = 10_000
MAX_FRAMES = 30

_RLIMIT_NAMES = {
    "cpu_s": "RLIMIT_CPU",
    "address_space_bytes": "RLIMIT_AS",
    "processes": "RLIMIT_NPROC",
    "file_size_bytes": "RLIMIT_FSIZE",
    "open_files": "RLIMIT_NOFILE",
    "core_bytes": "RLIMIT_CORE",
}


def apply_limits(limits: dict) -> None:
    """Set hard and soft resource limits; the student's code cannot raise them again."""
    import resource

    for key, value in limits.items():
        name = _RLIMIT_NAMES.get(key)
        if name is None or value is None:
            continue
        which = getattr(resource, name)
        value = int(value)
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # CPU: SIGXCPU at the soft limit names the limit; SIGKILL a second later if ignored.
        ceiling = value + 1 if key == "cpu_s" else value
        if hard != resource.RLIM_INFINITY:
            ceiling = min(ceiling, hard)
        resource.setrlimit(which, (value, ceiling))


RECORD_PREFIX = b"\x1eNEEDLE-ANSWER "


class AnswerWriter:
    """Sends answer records to the grader on a private duplicate of standard output."""

    def __init__(self):
        # A duplicate made before any student code runs: redirecting sys.stdout or fd 1
        # later does not divert the answers. The duplicate is not inherited by subprocesses.
        self.channel = os.dup(1)

    def write(self, record: dict) -> None:
        line = b"\n" + RECORD_PREFIX + json.dumps(record, allow_nan=True).encode() + b"\n"
        view = memoryview(line)
        while view:
            written = os.write(self.channel, view)
            view = view[written:]

    def encode(self, value, depth: int = 0):
        """Turn a probe's return value into the plain-data tree described above."""
        import numpy as np

        if depth > 20:
            raise TypeError("answer nested too deeply")
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
                raise TypeError("answer string too long")
            return value if type(value) in (bool, str, type(None)) else str(value)
        if type(value) is int or type(value) is float:
            return value
        if isinstance(value, (list, tuple)):
            return [self.encode(item, depth + 1) for item in value]
        if isinstance(value, dict):
            encoded = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise TypeError("answer dict keys must be strings")
                encoded[key] = self.encode(item, depth + 1)
            return {"$dict": encoded}
        if isinstance(value, (np.ndarray, np.generic)):
            array = np.array(value, copy=True)
            if array.dtype.kind not in "biuf":
                raise TypeError(f"answer array has unsupported dtype {array.dtype}")
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            return {"$npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
        if hasattr(value, "numpy") and callable(value.numpy):  # a needle Tensor or NDArray
            return self.encode(np.asarray(value.numpy()), depth + 1)
        raise TypeError(f"a probe answer cannot be a {type(value).__name__}")


def describe_error(exception: BaseException) -> dict:
    from autograder.engine.kit import error_name

    frames = [
        [frame.filename, frame.lineno, frame.name]
        for frame in traceback.extract_tb(exception.__traceback__)
    ]
    try:
        message = str(exception)
    except BaseException:  # a student's exception whose __str__ fails
        message = "<message could not be read>"
    return {
        "type": error_name(exception),
        "message": message[:MAX_MESSAGE_CHARS],
        "frames": frames[-MAX_FRAMES:],
    }


def load_probe_module(path: str):
    spec = importlib.util.spec_from_file_location("hidden_probes", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    apply_limits(config.get("limits", {}))
    os.environ.update(config.get("env", {}))
    sys.dont_write_bytecode = True
    # The interpreter runs with -I -S: sys.path holds the standard library only. Add the
    # runtime's numpy, the submission and the probe kit, and nothing else.
    sys.path[:0] = config["sys_path"]
    os.chdir(config["cwd"])

    writer = AnswerWriter()
    from autograder.engine.kit import probes_of, set_variant

    set_variant(int(config.get("variant", 0)))  # which seeded inputs (kit.derive_seed)
    module = load_probe_module(config["probe_file"])
    cases = probes_of(module, config["unit"])
    writer.write({"event": "start", "unit": config["unit"], "cases": [i.name for i, _ in cases]})
    for info, function in cases:
        try:
            value = function()
            record = {"case": info.name, "status": "ok", "value": writer.encode(value)}
        except BaseException as exception:  # SystemExit and KeyboardInterrupt included
            record = {"case": info.name, "status": "error", "error": describe_error(exception)}
        writer.write(record)
    writer.write({"event": "done"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads or atexit hooks the submission left behind do not get to run


if __name__ == "__main__":
    main(sys.argv[1])
