"""Gradescope: ``autograder export HW --gradescope`` and the program the export runs there.

The export is a zip with ``setup.sh`` and ``run_autograder`` at its root (Gradescope's
contract, GRADING.md §4a) and, next to them:

- ``autograder/``: the grading engine (this package, minus the release tools);
- ``autograder/probes/hwN.py``: the homework's hidden probes;
- ``homework/homework.json`` (points, accepted files, limits...), ``homework/blank/`` (the
  student release the submission is overlaid on) and ``homework/reference/`` (the reference
  answers, computed here at export time: the reference code itself is not shipped).

Gradescope runs student code in the same container as the grader, as root. The export keeps
the trust boundary anyway:

- ``setup.sh`` creates a user ``student`` and makes ``/autograder/source`` (probes, answers,
  grader) readable by root only;
- ``run_autograder`` (root) grades with the strongest sandbox that works (bubblewrap,
  unshare, or a separate process as ``student`` with resource limits); every probe group is a
  separate process of that user, which can read the workspace and the running probe only;
- after grading it kills every process of ``student`` and only then writes
  ``/autograder/results/results.json`` (root-owned folder) from the grader's memory, with a
  per-run nonce in ``extra_data`` that student code never saw: a results file forged by a
  process that outlived its run is overwritten, and a stale or forged file is recognisable.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
import zipfile
from pathlib import Path

from autograder.paths import BUILD_DIR, PACKAGE_DIR

# The engine's modules that run on Gradescope (the release tools stay home).
ENGINE_FILES = [
    "__init__.py",
    "__main__.py",
    "answers.py",
    "cli.py",
    "grader.py",
    "gradescope.py",
    "paths.py",
    "pyparse.py",
    "report.py",
    "runner.py",
    "runtime.py",
    "sandbox.py",
    "submission.py",
    "probes/__init__.py",
    "probes/kit.py",
]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-pip bubblewrap util-linux \\
    g++ make cmake >/dev/null
python3 -m pip install --no-cache-dir -q "numpy=={numpy}" "pybind11=={pybind11}"
# The user student code runs as; nothing of the grader is readable by it.
id student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin student
chown -R root:root /autograder/source
chmod -R go-rwx /autograder/source
# The runtime submissions run on (interpreter + numpy), readable by everyone.
mkdir -p /opt/needle-grader && chmod 755 /opt/needle-grader
cd /autograder/source
NEEDLE_BUILD_DIR=/opt/needle-grader python3 -c \\
  "from autograder.runtime import ensure_runtime; print(ensure_runtime().root)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this, as root, for every submission; it must leave results.json behind.
set -uo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
export NEEDLE_BUILD_DIR="${NEEDLE_BUILD_DIR:-/opt/needle-grader}"
if id student >/dev/null 2>&1; then
  export NEEDLE_SANDBOX_UID="$(id -u student)"
fi
cd "$ROOT/source"
exec ${PYTHON:-python3} -c "from autograder.gradescope import main; raise SystemExit(main())"
"""


def export(hw: str, out: Path | None = None) -> Path:
    """Write the Gradescope autograder zip of ``hw``; returns its path."""
    import numpy

    from autograder.answers import to_storable
    from autograder.grader import Grader, Homework
    from autograder.sandbox import local_sandbox

    homework = Homework.load(hw)
    with Grader(homework, local_sandbox()) as grader:
        arrays: dict = {}
        stored = {
            unit: {case: to_storable(value, arrays) for case, value in cases.items()}
            for unit, cases in grader.reference.items()
        }
        key = grader.reference_key
    try:
        import pybind11

        pybind11_version = pybind11.__version__
    except ImportError:
        pybind11_version = "3.1.0"
    out = Path(out or BUILD_DIR / "gradescope" / f"{hw}.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": homework.name,
        "points": homework.points,
        "accept": list(homework.accept),
        "max_file_bytes": homework.max_file_bytes,
        "backend": homework.backend,
        "build": homework.build,
        "reference_key": key,
    }
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes | str, mode: int = 0o644) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)

        setup = SETUP_SH.replace("{numpy}", numpy.__version__)
        add("setup.sh", setup.replace("{pybind11}", pybind11_version), 0o755)
        add("run_autograder", RUN_AUTOGRADER, 0o755)
        for name in ENGINE_FILES:
            add(f"autograder/{name}", (PACKAGE_DIR / name).read_bytes())
        add(f"autograder/probes/{homework.suite.path.name}", homework.suite.source)
        add("homework/homework.json", json.dumps(meta, indent=1))
        for name, data in homework.blank.items():
            add(f"homework/blank/{name}", data)
        add("homework/reference/answers.json", json.dumps(stored))
        add("homework/reference/arrays.npz", buffer.getvalue())
    return out


# --- what runs on Gradescope ------------------------------------------------------------------


def load_exported(source: Path):
    """The Homework and reference answers of an unpacked export at ``source``."""
    import numpy as np

    from autograder.answers import from_storable
    from autograder.grader import Homework
    from autograder.probes import load_suite

    meta = json.loads((source / "homework" / "homework.json").read_text())
    blank_root = source / "homework" / "blank"
    blank = {
        path.relative_to(blank_root).as_posix(): path.read_bytes()
        for path in sorted(blank_root.rglob("*"))
        if path.is_file()
    }
    homework = Homework(
        name=meta["name"],
        points=meta["points"],
        accept=tuple(meta["accept"]),
        max_file_bytes=meta["max_file_bytes"],
        backend=meta["backend"],
        build=meta["build"],
        suite=load_suite(source / "autograder" / "probes" / f"{meta['name']}.py"),
        blank=blank,
        reference={},
    )
    stored = json.loads((source / "homework" / "reference" / "answers.json").read_text())
    with np.load(source / "homework" / "reference" / "arrays.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    reference = {
        unit: {case: from_storable(value, arrays) for case, value in cases.items()}
        for unit, cases in stored.items()
    }
    return homework, (meta["reference_key"], reference)


def _write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".results-{secrets.token_hex(4)}.json")
    partial.write_text(json.dumps(results, indent=1, allow_nan=False))
    os.chmod(partial, 0o644)
    partial.replace(path)


def choose_sandbox():
    """bubblewrap or unshare when they work; else a separate process as the dedicated user."""
    from autograder.sandbox import UserSandbox, local_sandbox, sandbox_host_uid

    if os.environ.get("NEEDLE_SANDBOX") == "user":  # force the fallback (tests, debugging)
        return UserSandbox(sandbox_host_uid())
    sandbox = local_sandbox()
    if sandbox.isolated:
        return sandbox
    if os.geteuid() == 0 and "NEEDLE_SANDBOX_UID" in os.environ:
        return UserSandbox(sandbox_host_uid())
    return sandbox  # NOT ISOLATED: every report says so


def main() -> int:
    """Grade ``/autograder/submission`` into ``/autograder/results/results.json``."""
    root = Path(os.environ.get("GRADESCOPE_ROOT", "/autograder"))
    source = Path(os.environ.get("NEEDLE_EXPORT_SOURCE", root / "source"))
    results_path = root / "results" / "results.json"
    nonce = secrets.token_hex(16)
    # A valid results.json exists from the first second: a grader crash still scores 0.
    provisional = {
        "score": 0.0,
        "output": "Grading did not finish; please resubmit or contact your instructor.",
        "tests": [],
        "extra_data": {"nonce": nonce, "finished": False},
    }
    _write_results(results_path, provisional)
    try:
        from autograder.grader import Grader
        from autograder.sandbox import kill_processes_of, sandbox_host_uid

        homework, reference = load_exported(source)
        sandbox = choose_sandbox()
        with Grader(homework, sandbox, reference=reference) as grader:
            secret = source / "homework" / "reference" / "answers.json"
            if sandbox.kind == "user" and _readable_by_sandbox(grader, secret):
                raise RuntimeError(
                    f"{secret} is readable by the sandbox user: run setup.sh (chmod go-rwx)"
                )
            results = grader.grade(root / "submission")
        if os.geteuid() == 0 and "NEEDLE_SANDBOX_UID" in os.environ:
            kill_processes_of(sandbox_host_uid())
    except Exception as error:  # the grader must always leave a results.json behind
        import traceback

        provisional["output"] = f"The autograder failed: {type(error).__name__}: {error}"
        provisional["extra_data"]["grader_error"] = traceback.format_exc()[-4000:]
        _write_results(results_path, provisional)
        print(provisional["extra_data"]["grader_error"], file=sys.stderr)
        return 1
    results["extra_data"]["nonce"] = nonce
    results["extra_data"]["finished"] = True
    _write_results(results_path, results)
    written = json.loads(results_path.read_text())
    if written.get("extra_data", {}).get("nonce") != nonce:  # cannot happen; be loud if it does
        print("results.json was replaced after it was written", file=sys.stderr)
        _write_results(results_path, results)
    print(f"score {results['score']:g} / {results['max_score']:g}")
    return 0


def _readable_by_sandbox(grader, path: Path) -> bool:
    """Whether a process in the grader's sandbox can read ``path`` (must be False)."""
    from autograder.sandbox import SandboxLimits

    limits = SandboxLimits(wall_s=20, cpu_s=5)
    result = grader.sandbox.run(["/bin/cat", str(path)], [], limits, cwd="/")
    return result.returncode == 0


def unpack_for_test(zip_path: Path, root: Path) -> Path:
    """Unpack an export the way Gradescope does (``root/source``); for tests and debugging."""
    source = root / "source"
    if source.exists():
        shutil.rmtree(source)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(source)
    for name in ("setup.sh", "run_autograder"):
        os.chmod(source / name, 0o755)
    return source
