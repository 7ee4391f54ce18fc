"""``autograder check HW [--dir DIR] [-k EXPR]``: a student runs the public tests of their
release folder with the grader's machinery, locally.

The folder is copied into a scratch workspace, its C++ is compiled in the sandbox when the
homework has some, and ``pytest tests`` runs in the same local sandbox the grader uses (the
runtime gets pytest in addition to numpy). Nothing of the grader's hidden probes is involved:
this is exactly what ``make check`` runs, under the grader's isolation and limits, so "it works
on my machine" and "it works in the grader" are the same statement. As in ``make check``, C++
that does not compile is reported (compiler messages only) and the Python parts still run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.engine.runtime import PYTEST_MODULES, ensure_runtime
from autograder.engine.sandbox import (
    PlainSandbox,
    SandboxLimits,
    describe_end,
    local_sandbox,
)
from autograder.engine.workspace import SandboxView, build_workspace, write_tree

NOT_COMPILED = "your C++ did not compile (see above); the C++ parts are reported as failing"
CHECK_LIMITS = SandboxLimits(wall_s=1200, cpu_s=1200, output_bytes=8 * 1024 * 1024)
SKIPPED = {"__pycache__", ".pytest_cache", "build", ".git", ".ipynb_checkpoints"}


def _release_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED for part in relative.parts) or path.is_symlink():
            continue
        if path.is_file() and path.suffix not in (".so", ".o", ".pyc"):
            files[relative.as_posix()] = path.read_bytes()
    return files


def run_check(hw: str, folder: Path, k: str | None = None, sandbox_kind: str = "local") -> int:
    folder = Path(folder).resolve()
    info_path = folder / ".assignment.json"
    if not info_path.is_file():
        print(f"autograder check: {folder} is not a homework release folder", file=sys.stderr)
        return 2
    info = json.loads(info_path.read_text())
    if info.get("name") != hw:
        print(f"autograder check: {folder} holds {info.get('name')}, not {hw}", file=sys.stderr)
        return 2
    sandbox = local_sandbox() if sandbox_kind == "local" else PlainSandbox("--sandbox plain")
    if not sandbox.isolated:
        print(f"WARNING: {sandbox.describe()}", file=sys.stderr)
    runtime = ensure_runtime(extras=PYTEST_MODULES)
    scratch = Path(tempfile.mkdtemp(prefix="needle-check-"))
    scratch.chmod(0o755)
    try:
        workspace = scratch / "work"
        write_tree(_release_files(folder), workspace)
        (scratch / "grader").mkdir()
        (scratch / "grader").chmod(0o755)
        built, log = build_workspace(
            workspace,
            sandbox,
            runtime,
            info.get("build", "none"),
            None,
            CHECK_LIMITS,
            scratch / "grader",
        )
        if not built:  # report it, and still check the Python parts
            print(_compiler_errors(log))
            print(f"\n*** {NOT_COMPILED} ***\n")
        view = SandboxView(sandbox, runtime, workspace, scratch / "grader")
        work = view.work
        environment = view.environment(info.get("backend", ""), HOME="/tmp")
        environment["NEEDLE_CHECK_BUILD_DONE"] = "1"  # built just now: no staleness warning
        arguments = ["-q", "-p", "no:cacheprovider", "--tb=no", "-rN", f"--rootdir={work}"]
        arguments += ["tests", *(["-k", k] if k else [])]
        code = (
            "import os, sys\n"
            f"sys.path[:0] = [{view.site!r}, {work!r}, {work + '/apps'!r}]\n"
            f"os.environ.update({json.dumps(environment)})\n"
            "import pytest\n"
            f"raise SystemExit(pytest.main({arguments!r}))\n"
        )
        limits = dataclasses.replace(CHECK_LIMITS)
        result = view.run(view.python_argv("-c", code), limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(result.output.replace(str(scratch), ""))
    ended = describe_end(result, limits)
    if ended not in ("finished",) and not ended.startswith("exited early"):
        print(f"autograder check: the test run {ended}", file=sys.stderr)
    status = result.returncode if result.returncode is not None else 1
    return status if built else max(status, 1)


def _compiler_errors(log: str, limit: int = 60) -> str:
    """The compiler's messages from a build log: no commands, CMake configure or progress."""
    noise = re.compile(
        r"^(\$ |\[\s*\d+%\]|g?make(\[\d+\])?:|-- |Consolidate compiler|Scanning dependencies"
        r"|Building |Linking |Built target|\s*$)"
    )
    lines = [line for line in log.splitlines() if not noise.match(line)]
    if len(lines) > limit:
        more = len(lines) - limit
        lines = [*lines[:limit], f"... ({more} more lines: fix the first error first)"]
    return "\n".join(lines)
