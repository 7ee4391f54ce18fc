"""What the sandbox tests share: the isolating backends this machine can run, a scratch folder
the sandbox user can reach, and a Python snippet run inside a sandbox with the runner's limits.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder.engine.paths import ENGINE_DIR
from autograder.engine.sandbox import (
    GRADER,
    RUNTIME,
    SITE,
    BwrapSandbox,
    Mount,
    PlainSandbox,
    SandboxLimits,
    UnshareSandbox,
    _works,
)


def backends(plain: bool = False) -> list:
    """bwrap and unshare (skipped, with the reason, where they cannot run), and the plain
    sandbox when asked for."""
    params = []
    bwrap = shutil.which("bwrap")
    candidates = [("bwrap", BwrapSandbox(bwrap) if bwrap else None), ("unshare", UnshareSandbox())]
    for name, sandbox in candidates:
        reason = "bwrap is not installed" if sandbox is None else _works(sandbox)
        marks = [pytest.mark.skip(reason=f"{name} sandbox unavailable here: {reason}")]
        params.append(pytest.param(sandbox, id=name, marks=marks if reason else []))
    if plain:
        params.append(pytest.param(PlainSandbox("test"), id="plain"))
    return params


def reachable_folder(prefix: str) -> Iterator[Path]:
    """A scratch folder the sandbox user can reach (pytest's own is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_python(sandbox, runtime, tmp_path: Path, code: str, limits: SandboxLimits, prelude=""):
    """``code`` run by the runtime's Python inside ``sandbox``, after the runner applied
    ``limits``' rlimits; ``prelude`` is prepended (for constants the code reads)."""
    grader = tmp_path / "grader"
    grader.mkdir(exist_ok=True)
    grader.chmod(0o755)
    shutil.copyfile(ENGINE_DIR / "runner.py", grader / "runner.py")
    mounts = [Mount(runtime.python_home, RUNTIME), Mount(runtime.site, SITE), Mount(grader, GRADER)]
    view = sandbox.view
    start = (
        f"import sys; sys.path[:0] = [{view(mounts, SITE)!r}, {view(mounts, GRADER)!r}]\n"
        f"import runner; runner.apply_limits({json.dumps(limits.rlimits())})\n" + prelude
    )
    python = view(mounts, RUNTIME) + "/bin/python3"
    argv = [python, "-I", "-S", "-B", "-c", start + textwrap.dedent(code)]
    return sandbox.run(argv, mounts, limits, cwd="/tmp")


def sleeping_daemons() -> list[str]:
    """Host processes left by the escaping_daemon attack (``sleep 4321``)."""
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[:2] == [b"sleep", b"4321"]:
                left.append(pid)
    return left
