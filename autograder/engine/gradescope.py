"""Gradescope: ``autograder export HW --gradescope`` and the program the export runs there.

The export is a zip with ``setup.sh`` and ``run_autograder`` at its root (Gradescope's
contract, docs/grading.md#gradescope-directory-contract) and, next to them:

- ``autograder/engine/``: the grading engine package, whole (``autograder.authoring`` builds
  the export and stays home);
- ``bundle/``: the homework's grading bundle (``autograder.engine.bundle``): points,
  accepted files, probes, the blank release and the reference answers; the reference code
  itself is not shipped.

Local grading and this program load the same bundle with the same engine, so they give the
same results for the same submission.

Gradescope runs student code in the same container as the grader, as root. The export keeps
the trust boundary anyway:

- ``setup.sh`` installs numpy and pybind11 into a virtual environment ``/autograder/venv``
  (not the system Python: PEP 668), creates a user ``student`` and makes
  ``/autograder/source`` (probes, answers, grader) readable by root only;
- ``run_autograder`` (root) grades with the strongest sandbox that works (bubblewrap,
  unshare, or a separate process as ``student`` with resource limits); every probe group is a
  separate process of that user, which can read the workspace and the running probe only;
- after grading it kills every process of ``student`` and only then writes
  ``/autograder/results/results.json`` (root-owned folder) from the grader's memory, with a
  per-run nonce in ``extra_data`` that student code never saw: a results file forged by a
  process that outlived its run is overwritten, and a stale or forged file is recognisable.

The ``student`` fallback isolates by file permissions only: not the network, not the rest of
the (world-readable) file system, not ``/tmp``; see ``autograder/authoring/export.py``.
A submission uploaded as one archive or notebook is graded from that file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from autograder.engine.bundle import GradingBundle

BUNDLE_FOLDER = "bundle"  # the grading bundle, inside the export


# --- what runs on Gradescope ------------------------------------------------------------------


def load_exported(source: Path) -> GradingBundle:
    """The grading bundle of an unpacked export at ``source``."""
    return GradingBundle.load(source / BUNDLE_FOLDER)


def _write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".results-{secrets.token_hex(4)}.json")
    partial.write_text(json.dumps(results, indent=1, allow_nan=False))
    os.chmod(partial, 0o644)
    partial.replace(path)


def choose_sandbox():
    """bubblewrap or unshare when they work; else a separate process as the dedicated user."""
    from autograder.engine.sandbox import UserSandbox, local_sandbox, sandbox_host_uid

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
    provisional_extra: dict[str, Any] = {"nonce": nonce, "finished": False}
    provisional: dict[str, Any] = {
        "score": 0.0,
        "output": "Grading did not finish; please resubmit or contact your instructor.",
        "tests": [],
        "extra_data": provisional_extra,
    }
    _write_results(results_path, provisional)
    try:
        from autograder.engine.grading import Grader
        from autograder.engine.sandbox import kill_processes_of, sandbox_host_uid

        bundle = load_exported(source)
        sandbox = choose_sandbox()
        with Grader(bundle, sandbox) as grader:
            secret = source / BUNDLE_FOLDER / "reference" / "answers.json"
            if sandbox.kind == "user" and _readable_by_sandbox(grader, secret):
                raise RuntimeError(
                    f"{secret} is readable by the sandbox user: run setup.sh (chmod go-rwx)"
                )
            results = grader.grade(submission_path(root / "submission"), name="submission")
        if os.geteuid() == 0 and "NEEDLE_SANDBOX_UID" in os.environ:
            kill_processes_of(sandbox_host_uid())
    except Exception as error:  # the grader must always leave a results.json behind
        import traceback

        provisional["output"] = f"The autograder failed: {type(error).__name__}: {error}"
        provisional_extra["grader_error"] = traceback.format_exc()[-4000:]
        _write_results(results_path, provisional)
        print(provisional_extra["grader_error"], file=sys.stderr)
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


# What a student may upload that Gradescope leaves as one file in /autograder/submission.
SINGLE_FILE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".ipynb")


def submission_path(folder: Path) -> Path:
    """What to grade in Gradescope's submission folder: the folder itself, or, when the
    student uploaded one archive or notebook (Gradescope stores it as it is), that file."""
    try:
        entries = [e for e in folder.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    except OSError:
        return folder
    if len(entries) == 1 and not entries[0].is_symlink() and entries[0].is_file():
        if entries[0].name.lower().endswith(SINGLE_FILE_SUFFIXES):
            return entries[0]
    return folder


def _readable_by_sandbox(grader, path: Path) -> bool:
    """Whether a process in the grader's sandbox can read ``path`` (must be False)."""
    from autograder.engine.sandbox import SandboxLimits

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
