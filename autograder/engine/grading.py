"""Grading one submission: run a homework's hidden probes on it in a sandbox, score the answers.

1. read its accepted files (``submission.load_submission``) and overlay them on the blank
   release of the grading bundle: the *workspace* (the reference is never part of it);
   and pick the input variant it is graded on (``secrets``: unpredictable; recorded in
   ``extra_data.variant`` for instructors; docs/grading.md#variants);
2. compile its C++/CUDA inside the sandbox when the homework has native code (a compile
   error becomes feedback, the probes still run);
3. for each grading unit, start a fresh sandboxed process (``runner.py``) that sees the
   workspace read-only, the runtime, the runner and the probes of that unit only
   (``ProbeRunner``);
4. parse its answers as plain data and compare them, here, with the bundle's reference
   answers of that variant (``scoring``);
5. write Gradescope's ``results.json`` and ``feedback.txt`` (``results``).

Only this process writes scores. Whatever the submission prints, exits with, patches or writes
is never read, except the answers, which are data. Batches are in ``batch``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Collection
from pathlib import Path
from typing import Callable

from autograder.engine import answers as answer_io
from autograder.engine import results as results_io
from autograder.engine.bundle import GradingBundle
from autograder.engine.paths import ENGINE_DIR, REPO_ROOT
from autograder.engine.probes import KIT_PATH, ProbeSuite
from autograder.engine.runner import RECORD_PREFIX
from autograder.engine.runtime import Runtime, ensure_runtime, unreachable_ancestor
from autograder.engine.sandbox import (
    RunResult,
    Sandbox,
    SandboxLimits,
    describe_end,
    stop_running,
)
from autograder.engine.scoring import score_unit
from autograder.engine.submission import Submission, SubmissionError, load_submission
from autograder.engine.workspace import SandboxView, build_workspace, write_tree

GRADER_VERSION = results_io.GRADER_VERSION
RUNNER_PATH = ENGINE_DIR / "runner.py"


class SandboxFailure(RuntimeError):
    """The sandbox could not run the probe runner at all (never the submission's fault)."""


class GraderSetupError(RuntimeError):
    """The homework cannot be graded at all (missing probes, a probe that fails on the
    reference...): an instructor's problem, reported before any submission is touched."""


class SandboxBroken(GraderSetupError):
    """The sandbox itself does not work (the canary run did not print its known answer):
    nothing is graded, rather than every submission scoring 0."""


class GradingStopped(BaseException):
    """The grader was asked to stop (a batch got SIGINT/SIGTERM): the submission being graded
    gets no result. A BaseException, so that no ``except Exception`` records a bogus one."""


# The canary: the runtime's python, in the sandbox, computing something with numpy.
CANARY_SOURCE = """\
import sys
sys.path.insert(0, sys.argv[1])
import numpy
print("needle-canary", int(numpy.arange(1, 101, dtype=numpy.int64).sum() * 3))
"""
CANARY_ANSWER = "needle-canary 15150"


def reachable_temp_parent() -> Path | None:
    """Where scratch folders go: the temp folder (None), unless other users cannot reach it
    (a sandbox user must), then the first of /var/tmp, /tmp that everyone can."""
    if unreachable_ancestor(Path(tempfile.gettempdir())) is None:
        return None
    for candidate in (Path("/var/tmp"), Path("/tmp")):
        if candidate.is_dir() and unreachable_ancestor(candidate) is None:
            return candidate
    return None


class Scratch:
    """A private scratch folder with numbered sub-folders (thread-safe)."""

    def __init__(self, parent: Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="needle-grader-", dir=parent))
        os.chmod(self.root, 0o755)
        self._counter = 0
        self._lock = threading.Lock()

    def new(self, label: str) -> Path:
        with self._lock:
            self._counter += 1
            number = self._counter
        path = self.root / f"{number:05d}-{label}"
        path.mkdir()
        os.chmod(path, 0o755)
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class ProbeRunner:
    """Runs one unit's probes on a workspace in a sandbox and parses what came out."""

    def __init__(self, suite: ProbeSuite, backend: str, runtime: Runtime, scratch: Scratch):
        self.suite, self.backend, self.runtime, self.scratch = suite, backend, runtime, scratch

    def run(
        self,
        unit: str,
        workspace: Path,
        sandbox: Sandbox,
        limits: SandboxLimits,
        variant: int = 0,
    ) -> tuple[answer_io.UnitAnswers, RunResult]:
        """Run ``unit``'s probes on their inputs of ``variant`` (``kit.derive_seed``)."""
        scratch = self.scratch.new(unit)
        grader_dir = scratch / "grader"
        _stage_probe_kit(grader_dir / "lib")
        shutil.copyfile(RUNNER_PATH, grader_dir / "runner.py")
        (grader_dir / "probes.py").write_text(self.suite.unit_source(unit), encoding="utf-8")
        view = SandboxView(sandbox, self.runtime, workspace, grader_dir)
        search = [f"{view.work}/{p}".rstrip("/") for p in self.suite.search_path()]
        config = {
            "unit": unit,
            "probe_file": view.grader + "/probes.py",
            "sys_path": [view.site, *search, view.grader + "/lib"],
            "env": view.environment(self.backend),
            "limits": sandbox.rlimits(limits),
            "cwd": view.work,
            "variant": variant,
        }
        (grader_dir / "config.json").write_text(json.dumps(config, indent=1))
        write_tree({}, grader_dir)  # permissions for the sandbox user
        argv = view.python_argv(view.grader + "/runner.py", view.grader + "/config.json")
        result = view.run(argv, limits, record_prefix=RECORD_PREFIX)
        expected = [info.name for info in self.suite.cases[unit]]
        parsed = answer_io.read_answers(result.records, expected)
        result.records = []  # parsed; free the memory
        shutil.rmtree(scratch, ignore_errors=True)
        return parsed, result


def _stage_probe_kit(lib: Path) -> None:
    """``lib/autograder/engine/kit.py``: the only part of the engine a probe imports."""
    kit_dir = lib / "autograder" / "engine"
    kit_dir.mkdir(parents=True)
    (lib / "autograder" / "__init__.py").write_text("")
    (kit_dir / "__init__.py").write_text("")
    shutil.copyfile(KIT_PATH, kit_dir / "kit.py")


def effective_limits(
    base: SandboxLimits, suite: ProbeSuite, unit: str, overrides: dict
) -> SandboxLimits:
    """A unit's limits: the defaults, the probe module's LIMITS, then the person grading's."""
    merged = {**suite.limits(unit), **overrides}
    return dataclasses.replace(base, **merged) if merged else base


class Grader:
    """Grades submissions of one homework (a grading bundle) with one sandbox backend."""

    def __init__(
        self,
        bundle: GradingBundle,
        sandbox: Sandbox,
        *,
        limits: SandboxLimits | None = None,
        limit_overrides: dict | None = None,
        scratch_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        require_all_units: bool = False,
        variant: int | None = None,
    ):
        """``require_all_units`` (``grade --require-gpu``): refuse to grade when a unit cannot
        run on this machine, instead of leaving it out of ``max_score``. ``variant``: grade
        every submission on this input variant (tests, debugging) instead of one chosen
        unpredictably per submission."""
        bundle.check()
        if variant is not None:
            bundle.answers(variant)  # ValueError when the bundle has no such variant
        self.variant = variant
        missing = bundle.not_gradable_units()
        if require_all_units and missing:
            raise GraderSetupError(
                "these units cannot be graded on this machine: "
                + "; ".join(f"{unit} ({why})" for unit, why in missing.items())
            )
        self.bundle = bundle
        self.sandbox = sandbox
        # Limits set by the person grading (--timeout...) win over a probe module's LIMITS.
        self.limit_overrides = dict(limit_overrides or {})
        self.limits = dataclasses.replace(limits or SandboxLimits(), **self.limit_overrides)
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._stopping = threading.Event()
        # The sandbox user must reach what is mounted: the runtime (staged outside the build
        # folder when others cannot enter it, see runtime.runtime_base) and the scratch.
        self.runtime: Runtime = ensure_runtime()
        other_user = getattr(sandbox, "writer_uid", None) is not None
        unreachable = unreachable_ancestor(self.runtime.root)
        if unreachable and other_user:
            raise GraderSetupError(
                f"the sandbox user cannot reach the runtime {self.runtime.root}: {unreachable} "
                "is not searchable by others; set NEEDLE_BUILD_DIR to a folder that is"
            )
        if scratch_dir is None and other_user:
            scratch_dir = reachable_temp_parent()
        self.scratch = Scratch(scratch_dir)
        self.probes = ProbeRunner(bundle.suite, bundle.backend, self.runtime, self.scratch)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def homework(self) -> GradingBundle:  # the name the CLI and the report use
        return self.bundle

    @property
    def reference_key(self) -> str:
        return self.bundle.reference_key

    def close(self) -> None:
        self.scratch.close()

    def stop(self) -> None:
        """Stop grading now (from another thread): sandboxed runs in progress are killed
        (their process groups; containers removed), no new one starts, and submissions being
        graded get no result (``GradingStopped``)."""
        self._stopping.set()
        stop_running()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise GradingStopped()

    def canary(self) -> str | None:
        """Run the staged runtime's python in the sandbox, through the same view and run path
        as the probes, on a known computation with numpy: None when it printed the known
        answer, else what went wrong (the sandbox's own output)."""
        scratch = self.scratch.new("canary")
        try:
            workspace, grader_dir = scratch / "work", scratch / "grader"
            write_tree({}, workspace)
            write_tree({"canary.py": CANARY_SOURCE.encode()}, grader_dir)
            view = SandboxView(self.sandbox, self.runtime, workspace, grader_dir)
            limits = dataclasses.replace(self.limits, wall_s=max(self.limits.wall_s, 120))
            result = view.run(view.python_argv(view.grader + "/canary.py", view.site), limits)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if result.returncode == 0 and CANARY_ANSWER in result.output:
            return None
        output = result.output.strip()
        return f"{describe_end(result, limits)}" + (f"\n{output[-3000:]}" if output else "")

    def check_sandbox(self) -> None:
        """Raise ``SandboxBroken`` unless the canary run gives its known answer."""
        problem = self.canary()
        if problem is not None:
            raise SandboxBroken(
                f"the sandbox does not work ({self.sandbox.kind}: {self.sandbox.describe()}); "
                "nothing was graded. A test run of the runtime's python computing with numpy "
                f"in the sandbox did not print {CANARY_ANSWER!r}:\n{problem}"
            )

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def choose_variant(self) -> int:
        """The input variant of the next submission: the fixed one, else a uniformly random
        one from ``secrets`` (no one can predict it from earlier runs)."""
        if self.variant is not None:
            return self.variant
        return secrets.randbelow(self.bundle.variant_count)

    def unit_limits(self, unit: str) -> SandboxLimits:
        return effective_limits(self.limits, self.bundle.suite, unit, self.limit_overrides)

    def build(self, workspace: Path, sandbox: Sandbox) -> tuple[bool, str]:
        """Compile the workspace's native code in ``sandbox``: (succeeded, log)."""
        return build_workspace(
            workspace,
            sandbox,
            self.runtime,
            self.bundle.build,
            self.bundle.suite.setting("BUILD"),
            self.limits,
            self.scratch.new("build"),
        )

    def run_unit(
        self, unit: str, workspace: Path, sandbox: Sandbox, variant: int = 0
    ) -> tuple[answer_io.UnitAnswers, RunResult, SandboxLimits]:
        limits = self.unit_limits(unit)
        self._check_stopping()
        parsed, result = self.probes.run(unit, workspace, sandbox, limits, variant)
        self._check_stopping()  # a run killed because we stop is not the submission's doing
        return parsed, result, limits

    # -- one submission ----------------------------------------------------------------------

    def load(self, path: Path) -> Submission:
        bundle = self.bundle
        return load_submission(
            path, bundle.name, bundle.accept, bundle.max_file_bytes, set(bundle.blank)
        )

    def fingerprint(self, submission: Submission) -> str:
        # Not the variant: it is drawn anew for every grading, and a resumed result keeps the
        # one it was graded on (the bundle key covers how many variants there are).
        parts = [
            GRADER_VERSION,
            submission.sha256,
            self.bundle.key or self.bundle.reference_key,
            self.sandbox.kind,
            repr(self.limits),
        ]
        if self.bundle.visibility:  # left out when all visible: earlier results still resume
            parts.append(json.dumps(self.bundle.visibility, sort_keys=True))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def ungradable(self, name: str, reason: str, start: float) -> dict:
        return results_io.ungradable(self, name, reason, start)

    def grade(
        self,
        path: str | Path,
        out_dir: Path | None = None,
        name: str | None = None,
        units: Collection[str] | None = None,
    ):
        """Grade the submission at ``path``; return (and write under ``out_dir/name``) its
        Gradescope results. Never raises because of the submission.

        ``units``: grade only these units (a regrade of one unit across a class); the result
        then holds only their rows and is meant to be merged into a stored one (see
        ``autograder.course.regrade``), so pass no ``out_dir``."""
        if units is not None:
            unknown = sorted(set(units) - set(self.bundle.points))
            if unknown:
                raise ValueError(f"{self.bundle.name} has no units {unknown}")
        from autograder.engine.batch import safe_name

        start = time.monotonic()
        path = Path(path)
        name = name or safe_name(path.name)
        write = functools.partial(results_io.write_results, out_dir=out_dir, name=name)
        try:
            submission = self.load(path)
        except SubmissionError as error:
            return write(self.ungradable(name, f"could not be graded: {error}", start))
        except Exception as error:  # a reader bug must not take the batch down
            detail = traceback.format_exc()
            results = self.ungradable(name, f"could not be graded: {type(error).__name__}", start)
            results["extra_data"]["grader_error"] = detail[-4000:]
            return write(results)
        try:
            results = self._grade_workspace(submission, name, start, units)
        except SandboxFailure as error:
            self._check_stopping()
            self.log(f"{name}: the sandbox failed: {error}")
            problem = self.canary()
            if problem is not None:  # the sandbox broke: no zero for anyone, stop the batch
                raise SandboxBroken(
                    f"the sandbox stopped working while grading {name} "
                    f"({self.sandbox.describe()}):\n{error}\ncanary run: {problem}"
                ) from error
            results = self.ungradable(
                name,
                "could not be graded: the sandbox failed to run the probes (not a problem "
                "with your submission; your instructor can see the details)",
                start,
            )
            results["extra_data"]["grader_error"] = str(error)[-4000:]
        except Exception as error:
            detail = traceback.format_exc()
            self.log(f"{name}: internal grader error: {detail}")
            results = self.ungradable(
                name, f"could not be graded: internal grader error ({type(error).__name__})", start
            )
            results["extra_data"]["grader_error"] = detail[-4000:]
        self._check_stopping()
        return write(results)

    def _grade_workspace(
        self,
        submission: Submission,
        name: str,
        start: float,
        only: Collection[str] | None = None,
    ) -> dict:
        bundle = self.bundle
        variant = self.choose_variant()
        reference = bundle.answers(variant)
        scratch = self.scratch.new("submission")
        workspace = scratch / "work"
        try:
            write_tree(bundle.blank, workspace)
            write_tree(submission.files, workspace)
            built, build_log = True, ""
            if bundle.build != "none" or bundle.suite.setting("BUILD"):
                self._check_stopping()
                built, build_log = self.build(workspace, self.sandbox)
            # The sandbox runs unit_source() (re-rendered by ast.unparse), not the file.
            probe_lines = results_io.probe_lines(bundle.suite)
            host_paths = [self.scratch.root, workspace, REPO_ROOT, self.runtime.root]
            if bundle.root is not None:
                host_paths.append(bundle.root)
            scrub = results_io.Scrubber(host_paths, probe_lines)
            explain = functools.partial(results_io.explain_error, workspace, self.sandbox, scrub)
            outcomes = []
            for unit in bundle.suite.units:
                if only is not None and unit not in only:
                    continue
                parsed, result, limits = self.run_unit(unit, workspace, self.sandbox, variant)
                if not parsed.started:
                    # The runner announces itself before any student code is imported, so
                    # silence means the sandbox or the runtime failed, not the submission.
                    raise SandboxFailure(
                        f"{unit}: {describe_end(result, limits)}\n{result.output[-3000:]}"
                    )
                outcome = score_unit(
                    bundle.suite,
                    reference[unit],
                    bundle.points[unit],
                    unit,
                    parsed,
                    result,
                    limits,
                    explain,
                )
                outcome.output_tail = scrub(outcome.output_tail, limit=2000)
                outcomes.append(outcome)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        results = results_io.graded(
            self, name, submission, outcomes, start, built, build_log, scrub
        )
        # For instructors (Gradescope does not show extra_data to students; feedback.txt
        # leaves it out): which inputs this result is for, out of how many.
        results["extra_data"]["variant"] = {"number": variant, "of": bundle.variant_count}
        return results

    # -- batches -------------------------------------------------------------------------------

    def grade_batch(
        self, paths, out_dir: Path, jobs: int = 1, resume: bool = True, progress: bool = True
    ) -> list[dict]:
        from autograder.engine.batch import grade_batch

        return grade_batch(self, paths, out_dir, jobs=jobs, resume=resume, progress=progress)
