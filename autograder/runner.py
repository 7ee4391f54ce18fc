"""The probe runner: the only autograder code that runs next to a submission.

It is started inside the sandbox as ``python -I -S -B runner.py CONFIG.json`` and does, in
order: apply the resource limits (so the student's code starts already bounded), set the
environment and ``sys.path`` (the submission workspace and the runtime's numpy; nothing else),
import the probes of ONE unit, call each probe, and append each probe's answer to
``answers.jsonl`` (arrays as ``.npy`` files next to it) as soon as it is known, so a crash later
on keeps the answers already written.

Nothing here is trusted. The student's code shares this process and may patch or replace
any of it; that is fine, because the only thing that leaves the sandbox is data that the
grader parses strictly (plain JSON, ``np.load(allow_pickle=False)``) and compares with
reference answers the sandbox never sees. This file therefore uses the standard library and
numpy only, and is written for clarity, not defence.

Answer format (one JSON object per line)::

    {"event": "start", "unit": "forward", "cases": ["power_scalar", ...]}
    {"case": "power_scalar", "status": "ok", "value": VALUE}
    {"case": "divide", "status": "error", "error": {"type": "NotImplementedError",
        "message": "...", "frames": [["/work/needle/ops/ops_mathematic.py", 120, "compute"]]}}
    {"event": "done"}

where VALUE is null, a bool, an int, a float, a string, a JSON list of VALUEs, ``{"$dict":
{str: VALUE}}`` or ``{"$array": "a7.npy"}``.
"""

from __future__ import annotations

import importlib.util
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
        resource.setrlimit(which, (value, value))


class AnswerWriter:
    """Appends answers to ``answers.jsonl`` and arrays to ``a<N>.npy``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, "answers.jsonl")
        self.arrays_written = 0

    def write(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

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
            name = f"a{self.arrays_written}.npy"
            self.arrays_written += 1
            np.save(os.path.join(self.out_dir, name), np.ascontiguousarray(array))
            return {"$array": name}
        if hasattr(value, "numpy") and callable(value.numpy):  # a needle Tensor or NDArray
            return self.encode(np.asarray(value.numpy()), depth + 1)
        raise TypeError(f"a probe answer cannot be a {type(value).__name__}")


def describe_error(exception: BaseException) -> dict:
    from autograder.probes.kit import error_name

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

    writer = AnswerWriter(config["out_dir"])
    from autograder.probes.kit import probes_of

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
