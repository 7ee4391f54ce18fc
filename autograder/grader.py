"""Grading: run a homework's hidden probes on a submission in a sandbox and score the answers.

One submission is graded in these steps:

1. read its accepted files (``submission.load_submission``) and overlay them on the blank
   release: the *workspace* (the reference is never part of it);
2. compile its C++/CUDA inside the sandbox when the homework has native code (a compile
   error becomes feedback, the probes still run);
3. for each grading unit, start a fresh sandboxed process (``runner.py``) that sees the
   workspace read-only, the runtime, the runner and the probes of that unit only, and writes
   answers into an otherwise empty folder;
4. parse those answers as plain data and compare them, here, with the reference answers
   (the same probes run on the reference-filled release, outside any sandbox, cached under
   ``build/autograder/reference``); each case passes or fails, a unit scores its points times
   the weighted share of its passing cases;
5. write Gradescope's ``results.json`` (and ``feedback.txt``) for the submission.

Only this process writes scores. Whatever the submission prints, exits with, patches or writes
is never read, except the answers, which are data.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from autograder import answers as answer_io
from autograder.paths import BUILD_DIR, PACKAGE_DIR, REPO_ROOT
from autograder.probes import KIT_PATH, ProbeSuite, load_suite
from autograder.runner import RECORD_PREFIX
from autograder.runtime import Runtime, ensure_runtime
from autograder.sandbox import (
    GRADER,
    RUNTIME,
    SITE,
    WORK,
    Mount,
    RunResult,
    Sandbox,
    SandboxLimits,
    TrustedRunner,
    describe_end,
)
from autograder.submission import Submission, SubmissionError, load_submission

GRADER_VERSION = "1.0"
RUNNER_PATH = PACKAGE_DIR / "runner.py"
MAX_FEEDBACK_CHARS = 6000


class SandboxFailure(RuntimeError):
    """The sandbox could not run the probe runner at all (never the submission's fault)."""


class GraderSetupError(RuntimeError):
    """The homework cannot be graded at all (missing probes, a probe that fails on the
    reference...): an instructor's problem, reported before any submission is touched."""


# --- the homework ----------------------------------------------------------------------------


@dataclasses.dataclass
class Homework:
    """What grading a homework needs: its points, accepted files, probes and both releases."""

    name: str
    points: dict[str, float]
    accept: tuple[str, ...]
    max_file_bytes: int
    backend: str
    build: str  # "none", "ext" (one pybind11 module per src/*.cpp) or "cmake"
    suite: ProbeSuite
    blank: dict[str, bytes]  # the student release as shipped: student path -> bytes
    reference: dict[str, bytes]  # the same release with every region filled back

    @classmethod
    def load(cls, hw: str, assignment=None) -> Homework:
        """The homework ``hw`` from ``assignments/hw/assignment.toml`` (or ``assignment``)."""
        from autograder.assignment import AssignmentError, load
        from autograder.release import ReleaseError, render_release

        try:
            assignment = assignment or load(hw)
            if not assignment.probes:
                raise GraderSetupError(f"{hw}: assignment.toml names no [grading] probes")
            probes = assignment.root / assignment.probes
            if not probes.is_file():
                raise GraderSetupError(f"{hw}: no probe module {assignment.probes} yet")
            blank = render_release(assignment, fill=False)
            reference = render_release(assignment, fill=True)
        except (AssignmentError, ReleaseError) as error:
            raise GraderSetupError(str(error)) from None
        return cls(
            name=assignment.name,
            points=dict(assignment.points),
            accept=tuple(assignment.accept),
            max_file_bytes=assignment.max_file_bytes,
            backend=assignment.backend,
            build=assignment.build,
            suite=load_suite(probes),
            blank=blank,
            reference=reference,
        )

    def check(self) -> None:
        units, probed = list(self.points), self.suite.units
        missing = [u for u in units if u not in probed]
        extra = [u for u in probed if u not in units]
        if missing or extra:
            raise GraderSetupError(
                f"{self.name}: units with points but no probes: {missing or 'none'}; "
                f"probes of units without points: {extra or 'none'}"
            )

    @property
    def max_score(self) -> float:
        return float(sum(self.points.values()))


def _unreachable_ancestor(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot traverse, if any."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _tree_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


def write_tree(files: dict[str, bytes], root: Path) -> None:
    """Write ``files`` under ``root`` (folders 755, files 644: the sandbox user reads them)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
    for directory, _, _ in os.walk(root):
        os.chmod(directory, 0o755)


# --- building native code ---------------------------------------------------------------


def build_commands(
    workspace: Path, build: str, custom: list | None, values: dict[str, str]
) -> list[list[str]]:
    """Compile commands (inside paths) for a workspace: ``custom`` (a probe module's BUILD,
    with ``{placeholders}``) or the default of the ``build`` kind."""
    if custom:
        return [[part.format(**values) for part in command] for command in custom]
    if build == "ext":  # one pybind11 module per src/*.cpp, next to it (hw0)
        return [
            ["c++", "-O2", "-std=c++17", "-shared", "-fPIC", "-w"]
            + [f"-I{values['python_include']}", f"-I{values['pybind11_include']}"]
            + [f"src/{source.name}", "-o", f"src/{source.stem}{values['ext_suffix']}"]
            for source in sorted((workspace / "src").glob("*.cpp"))
        ]
    if build == "cmake":  # the release's CMakeLists.txt (hw3+)
        return [
            ["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"]
            + [f"-DPython_EXECUTABLE={values['python']}"]
            + [f"-Dpybind11_DIR={values['pybind11_cmake_dir']}"],
            ["cmake", "--build", "build", "-j", "1"],
        ]
    return []


def build_workspace(
    workspace: Path,
    sandbox: Sandbox,
    runtime: Runtime,
    build: str,
    custom: list | None,
    limits: SandboxLimits,
    scratch: Path,
) -> tuple[bool, str]:
    """Compile a workspace's C++/CUDA inside ``sandbox`` (the workspace is writable for this
    step only): (succeeded, log). A compile error is feedback, not a grader failure."""
    import sysconfig

    mounts = [
        Mount(runtime.python_home, RUNTIME),
        Mount(runtime.site, SITE),
        Mount(workspace, WORK, writable=True),
        Mount(scratch, GRADER),
    ]
    site = sandbox.view(mounts, SITE)
    values = {
        "python": sandbox.view(mounts, RUNTIME) + "/bin/python3",
        "python_include": sandbox.view(mounts, RUNTIME) + "/" + runtime.include_dir,
        "pybind11_include": f"{site}/{runtime.pybind11_include}",
        "pybind11_cmake_dir": f"{site}/{runtime.pybind11_cmake_dir}",
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX") or ".so",
        "work": sandbox.view(mounts, WORK),
    }
    commands = build_commands(workspace, build, custom, values)
    if not commands:
        return True, ""
    limits = dataclasses.replace(
        limits,
        wall_s=max(limits.wall_s, 300),
        cpu_s=max(limits.cpu_s, 300),
        memory_bytes=max(limits.memory_bytes, 4096 * 1024 * 1024),
    )
    log = []
    for command in commands:
        result = sandbox.run(command, mounts, limits, cwd=WORK)
        log.append("$ " + " ".join(command) + "\n" + result.output)
        if result.returncode != 0:
            log.append(describe_end(result, limits))
            return False, "\n".join(log)
    return True, "\n".join(log)


# --- outcomes ------------------------------------------------------------------------------


@dataclasses.dataclass
class CaseOutcome:
    name: str
    weight: float
    passed: bool
    explanation: str = ""


@dataclasses.dataclass
class UnitOutcome:
    unit: str
    points: float
    cases: list[CaseOutcome]
    ended: str  # how the sandboxed run ended ("finished", "stopped: CPU time limit ...")
    wall_s: float
    output_tail: str = ""

    @property
    def score(self) -> float:
        total = sum(c.weight for c in self.cases)
        passed = sum(c.weight for c in self.cases if c.passed)
        return round(self.points * passed / total, 4) if total else 0.0


# --- the grader ----------------------------------------------------------------------------


class Grader:
    """Grades submissions of one homework with one sandbox backend."""

    def __init__(
        self,
        homework: Homework,
        sandbox: Sandbox,
        *,
        limits: SandboxLimits | None = None,
        limit_overrides: dict | None = None,
        build_dir: Path = BUILD_DIR,
        scratch_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        reference: tuple[str, dict] | None = None,
    ):
        """``reference``: (key, answers) computed elsewhere (a Gradescope export ships its
        answers, not the reference code); by default they are computed or read from the
        cache under ``build_dir``."""
        homework.check()
        self.homework = homework
        self.sandbox = sandbox
        self.limits = limits or SandboxLimits()
        # Limits set by the person grading (--timeout...) win over a probe module's LIMITS.
        self.limit_overrides = dict(limit_overrides or {})
        if self.limit_overrides:
            self.limits = dataclasses.replace(self.limits, **self.limit_overrides)
        self.build_dir = Path(build_dir)
        self.log = log or (lambda message: print(message, file=sys.stderr))
        # The runtime lives in the repository's build folder (or $NEEDLE_BUILD_DIR), which the
        # sandbox user can reach, whatever ``build_dir`` the reference cache uses.
        self.runtime: Runtime = ensure_runtime()
        unreachable = _unreachable_ancestor(self.runtime.root)
        if unreachable and getattr(sandbox, "writer_uid", None) is not None:
            raise GraderSetupError(
                f"the sandbox user cannot reach the runtime {self.runtime.root}: {unreachable} "
                "is not searchable by others; set NEEDLE_BUILD_DIR to a folder that is"
            )
        self._scratch = Path(tempfile.mkdtemp(prefix="needle-grader-", dir=scratch_dir))
        os.chmod(self._scratch, 0o755)
        self._counter = 0
        self._lock = threading.Lock()
        try:
            if reference is not None:
                self.reference_key, self.reference = reference
            else:
                self.reference_key = self._reference_key()
                self.reference = self._reference_answers()
        except BaseException:  # e.g. GraderSetupError: leave no scratch folder behind
            self.close()
            raise

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_scratch(self, label: str) -> Path:
        with self._lock:
            self._counter += 1
            number = self._counter
        path = self._scratch / f"{number:05d}-{label}"
        path.mkdir()
        os.chmod(path, 0o755)
        return path

    def unit_limits(self, unit: str) -> SandboxLimits:
        overrides = {**self.homework.suite.limits(unit), **self.limit_overrides}
        return dataclasses.replace(self.limits, **overrides) if overrides else self.limits

    def _mounts(self, workspace: Path, grader_dir: Path, writable_work=False) -> list[Mount]:
        """The whole view of a sandboxed run (besides the read-only system and /tmp)."""
        return [
            Mount(self.runtime.python_home, RUNTIME),
            Mount(self.runtime.site, SITE),
            Mount(workspace, WORK, writable=writable_work),
            Mount(grader_dir, GRADER),
        ]

    def _python(self, sandbox: Sandbox, mounts: list[Mount]) -> str:
        return sandbox.view(mounts, RUNTIME) + "/bin/python3"

    # -- building native code ----------------------------------------------------------------

    def build(self, workspace: Path, sandbox: Sandbox) -> tuple[bool, str]:
        """Compile the workspace's native code in ``sandbox``: (succeeded, log)."""
        scratch = self._new_scratch("build")
        return build_workspace(
            workspace,
            sandbox,
            self.runtime,
            self.homework.build,
            self.homework.suite.setting("BUILD"),
            self.limits,
            scratch,
        )

    # -- running one unit ------------------------------------------------------------------

    def run_unit(
        self, unit: str, workspace: Path, sandbox: Sandbox
    ) -> tuple[answer_io.UnitAnswers, RunResult, SandboxLimits]:
        """Run the probes of ``unit`` on ``workspace`` in ``sandbox``; parse what came out."""
        suite = self.homework.suite
        scratch = self._new_scratch(unit)
        grader_dir = scratch / "grader"
        kit_dir = grader_dir / "lib" / "autograder" / "probes"
        kit_dir.mkdir(parents=True)
        (grader_dir / "lib" / "autograder" / "__init__.py").write_text("")
        (kit_dir / "__init__.py").write_text("")
        shutil.copyfile(KIT_PATH, kit_dir / "kit.py")
        shutil.copyfile(RUNNER_PATH, grader_dir / "runner.py")
        (grader_dir / "probes.py").write_text(suite.unit_source(unit), encoding="utf-8")
        mounts = self._mounts(workspace, grader_dir)
        limits = self.unit_limits(unit)
        work = sandbox.view(mounts, WORK)
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env["NEEDLE_NUM_THREADS"] = "1"
        if self.homework.backend:
            env["NEEDLE_BACKEND"] = self.homework.backend
        search = [f"{work}/{p}".rstrip("/") for p in suite.search_path()]
        config = {
            "unit": unit,
            "probe_file": sandbox.view(mounts, GRADER) + "/probes.py",
            "sys_path": [
                sandbox.view(mounts, SITE),
                *search,
                sandbox.view(mounts, GRADER) + "/lib",
            ],
            "env": env,
            "limits": sandbox.rlimits(limits),
            "cwd": work,
        }
        (grader_dir / "config.json").write_text(json.dumps(config, indent=1))
        write_tree({}, grader_dir)  # permissions for the sandbox user
        argv = [self._python(sandbox, mounts), "-I", "-S", "-B"]
        argv += [sandbox.view(mounts, GRADER) + "/runner.py"]
        argv += [sandbox.view(mounts, GRADER) + "/config.json"]
        result = sandbox.run(argv, mounts, limits, cwd=WORK, record_prefix=RECORD_PREFIX)
        expected = [info.name for info in suite.cases[unit]]
        parsed = answer_io.read_answers(result.records, expected)
        result.records = []  # parsed; free the memory
        shutil.rmtree(scratch, ignore_errors=True)
        return parsed, result, limits

    # -- reference answers -------------------------------------------------------------------

    def _reference_key(self) -> str:
        parts = [
            GRADER_VERSION,
            self.homework.suite.digest,
            hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest(),
            _tree_digest(self.homework.reference),
            self.homework.backend,
            self.runtime.key,
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]

    def _reference_answers(self) -> dict[str, dict[str, Any]]:
        """Reference answers per unit: from the cache, or computed now (outside the sandbox,
        on the reference-filled release) and cached."""
        folder = self.build_dir / "autograder" / "reference" / self.homework.name
        folder = folder / self.reference_key
        index = folder / "answers.json"
        if index.is_file():
            stored = json.loads(index.read_text())
            with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
                loaded = {name: arrays[name] for name in arrays.files}
            return {
                unit: {case: answer_io.from_storable(v, loaded) for case, v in cases.items()}
                for unit, cases in stored.items()
            }
        self.log(f"computing reference answers for {self.homework.name} (cached afterwards)")
        workspace = self._new_scratch("reference") / "work"
        write_tree(self.homework.reference, workspace)
        runner = TrustedRunner()
        built, build_log = self.build(workspace, runner)
        if not built:
            raise GraderSetupError(f"the reference does not compile:\n{build_log[-3000:]}")
        reference: dict[str, dict[str, Any]] = {}
        problems = []
        for unit in self.homework.suite.units:
            parsed, result, limits = self.run_unit(unit, workspace, runner)
            for info in self.homework.suite.cases[unit]:
                value = parsed.cases.get(info.name)
                if value is None:
                    problems.append(
                        f"{unit}/{info.name}: no answer ({describe_end(result, limits)})\n"
                        + result.output[-2000:]
                    )
                elif answer_io.is_not_gradable(value):
                    self.log(f"{unit}/{info.name}: not gradable here: {value.message}")
                elif isinstance(value, answer_io.ErrorAnswer):
                    where = "".join(f"\n    {f}:{n} in {fn}" for f, n, fn in value.frames[-4:])
                    problems.append(f"{unit}/{info.name}: {value.type}: {value.message}{where}")
            reference[unit] = parsed.cases
        if problems:
            raise GraderSetupError(
                f"{self.homework.name}: the reference fails {len(problems)} probe(s); fix the "
                "probes or the reference before grading:\n  " + "\n  ".join(problems[:20])
            )
        arrays: dict[str, np.ndarray] = {}
        stored = {
            unit: {case: answer_io.to_storable(v, arrays) for case, v in cases.items()}
            for unit, cases in reference.items()
        }
        staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{threading.get_ident()}")
        staging.mkdir(parents=True, exist_ok=True)
        np.savez(staging / "arrays.npz", **arrays)
        (staging / "answers.json").write_text(json.dumps(stored))
        try:
            staging.rename(folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workspace.parent, ignore_errors=True)
        return reference

    # -- scoring -------------------------------------------------------------------------------

    def score_unit(
        self,
        unit: str,
        parsed: answer_io.UnitAnswers,
        result: RunResult,
        limits: SandboxLimits,
        explain_error: Callable[[answer_io.ErrorAnswer], str],
    ) -> UnitOutcome:
        ended = describe_end(result, limits)
        cases = []
        for info in self.homework.suite.cases[unit]:
            expected = self.reference[unit][info.name]
            got = parsed.cases.get(info.name)
            tolerance = answer_io.Tolerance(info.rtol, info.atol, info.check_dtype)
            if answer_io.is_not_gradable(expected):  # never a pass, whatever was answered
                reason = f"not graded on this machine: {expected.message[:300]}"
                cases.append(CaseOutcome(info.name, info.weight, False, reason))
                continue
            if got is None:
                why = ended
                if ended == "finished":  # status 0, yet the runner did not finish
                    why = (
                        "the probe process exited early with status 0 (does the code call "
                        "exit() or sys.exit()?)"
                    )
                cases.append(CaseOutcome(info.name, info.weight, False, f"no answer: {why}"))
                continue
            problem = answer_io.compare(expected, got, tolerance)
            if problem is None:
                cases.append(CaseOutcome(info.name, info.weight, True))
            elif isinstance(got, answer_io.ErrorAnswer) and not isinstance(
                expected, answer_io.ErrorAnswer
            ):
                cases.append(CaseOutcome(info.name, info.weight, False, explain_error(got)))
            else:
                cases.append(CaseOutcome(info.name, info.weight, False, problem))
        return UnitOutcome(
            unit, self.homework.points[unit], cases, ended, result.wall_s, result.output[-2000:]
        )

    # -- one submission ----------------------------------------------------------------------

    def load(self, path: Path) -> Submission:
        homework = self.homework
        return load_submission(
            path, homework.name, homework.accept, homework.max_file_bytes, set(homework.blank)
        )

    def fingerprint(self, submission: Submission) -> str:
        parts = [
            GRADER_VERSION,
            submission.sha256,
            self.reference_key,
            self.sandbox.kind,
            repr(self.limits),
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def grade(self, path: str | Path, out_dir: Path | None = None, name: str | None = None):
        """Grade the submission at ``path``; return (and write under ``out_dir/name``) its
        Gradescope results. Never raises because of the submission."""
        start = time.monotonic()
        path = Path(path)
        name = name or safe_name(path.name)
        try:
            submission = self.load(path)
        except SubmissionError as error:
            results = self.ungradable(name, f"could not be graded: {error}", start)
            return self._write(results, out_dir, name)
        except Exception as error:  # a reader bug must not take the batch down
            detail = traceback.format_exc()
            results = self.ungradable(name, f"could not be graded: {type(error).__name__}", start)
            results["extra_data"]["grader_error"] = detail[-4000:]
            return self._write(results, out_dir, name)
        try:
            results = self._grade_workspace(submission, name, start)
        except SandboxFailure as error:
            self.log(f"{name}: the sandbox failed: {error}")
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
        return self._write(results, out_dir, name)

    def _grade_workspace(self, submission: Submission, name: str, start: float) -> dict:
        scratch = self._new_scratch("submission")
        workspace = scratch / "work"
        try:
            write_tree(self.homework.blank, workspace)
            write_tree(submission.files, workspace)
            built, build_log = True, ""
            if self.homework.build != "none" or self.homework.suite.setting("BUILD"):
                built, build_log = self.build(workspace, self.sandbox)
            probe_lines = {
                line.strip()
                for line in self.homework.suite.source.splitlines()
                if len(line.strip()) >= 16
            }
            scrub = Scrubber(
                [self._scratch, workspace, REPO_ROOT, self.build_dir, self.runtime.root],
                probe_lines,
            )
            outcomes = []
            for unit in self.homework.suite.units:
                parsed, result, limits = self.run_unit(unit, workspace, self.sandbox)
                if not parsed.started:
                    # The runner announces itself before any student code is imported, so
                    # silence means the sandbox or the runtime failed, not the submission.
                    raise SandboxFailure(
                        f"{unit}: {describe_end(result, limits)}\n{result.output[-3000:]}"
                    )
                explain = functools.partial(explain_error, workspace, self.sandbox, scrub)
                outcome = self.score_unit(unit, parsed, result, limits, explain)
                outcome.output_tail = scrub(outcome.output_tail, limit=2000)
                outcomes.append(outcome)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.results(name, submission, outcomes, start, built, build_log, scrub)

    # -- results.json ----------------------------------------------------------------------

    def _extra(self, name: str) -> dict:
        return {
            "homework": self.homework.name,
            "submission": name,
            "grader_version": GRADER_VERSION,
            "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run_id": uuid.uuid4().hex,
            "sandbox": {
                "kind": self.sandbox.kind,
                "isolated": self.sandbox.isolated,
                "description": self.sandbox.describe(),
                "image": getattr(self.sandbox, "image_id", None),
                "limits": dataclasses.asdict(self.limits),
            },
            "probes_sha256": self.homework.suite.digest,
            "reference_key": self.reference_key,
            "runtime": {"key": self.runtime.key, "numpy": self.runtime.numpy_version},
            "seeds": "fixed in the probe module (see probes_sha256)",
        }

    def _banner(self) -> list[str]:
        if self.sandbox.isolated:
            return []
        return [
            "WARNING: NOT ISOLATED. This submission ran without a sandbox "
            f"({self.sandbox.describe()}); its score cannot be trusted.",
            "",
        ]

    def ungradable(self, name: str, reason: str, start: float) -> dict:
        tests = []
        for number, (unit, points) in enumerate(self.homework.points.items(), start=1):
            tests.append(
                {
                    "name": unit,
                    "number": str(number),
                    "score": 0.0,
                    "max_score": points,
                    "status": "failed",
                    "output": reason,
                    "visibility": "visible",
                    "tags": [self.homework.name],
                }
            )
        extra = self._extra(name)
        extra["gradable"] = False
        return {
            "score": 0.0,
            "max_score": self.homework.max_score,
            "execution_time": int(round(time.monotonic() - start)),
            "output": "\n".join(self._banner() + [reason]),
            "output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": extra,
        }

    def results(self, name, submission, outcomes, start, built, build_log, scrub) -> dict:
        tests = []
        for number, outcome in enumerate(outcomes, start=1):
            tests.append(
                {
                    "name": outcome.unit,
                    "number": str(number),
                    "score": outcome.score,
                    "max_score": outcome.points,
                    "status": "passed" if outcome.score == outcome.points else "failed",
                    "output": unit_feedback(outcome),
                    "output_format": "text",
                    "visibility": "visible",
                    "tags": [self.homework.name, outcome.unit],
                    "extra_data": {
                        "cases": {c.name: c.passed for c in outcome.cases},
                        "ended": outcome.ended,
                        "wall_s": round(outcome.wall_s, 3),
                        "output_tail": outcome.output_tail,  # instructors only
                    },
                }
            )
        lines = self._banner()
        if not built:
            lines += ["Your C++ code did not compile (the probes ran anyway):", ""]
            lines += [scrub(build_log[-4000:], limit=4000), ""]
        lines += submission.notes
        score = round(sum(t["score"] for t in tests), 4)
        extra = self._extra(name)
        extra.update(
            gradable=True,
            fingerprint=self.fingerprint(submission),
            submission_sha256=submission.sha256,
            files=sorted(submission.files),
            built=built,
        )
        return {
            "score": score,
            "max_score": self.homework.max_score,
            "execution_time": int(round(time.monotonic() - start)),
            "output": "\n".join(lines).strip(),
            "output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": extra,
        }

    def _write(self, results: dict, out_dir: Path | None, name: str) -> dict:
        if out_dir is None:
            return results
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=1, allow_nan=False)
        partial = folder / "results.json.partial"
        partial.write_text(text)
        partial.replace(folder / "results.json")
        (folder / "feedback.txt").write_text(readable_feedback(results))
        return results

    # -- batches -------------------------------------------------------------------------------

    def grade_batch(
        self,
        paths: list[str | Path],
        out_dir: Path,
        jobs: int = 1,
        resume: bool = True,
        progress: bool = True,
    ) -> list[dict]:
        """Grade many submissions, ``jobs`` at a time; every one gets a results.json."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = unique_names([Path(p) for p in paths])
        results: dict[str, dict] = {}
        todo = []
        for path, name in zip(paths, names):
            previous = self.previous_result(Path(path), out_dir / name / "results.json")
            if resume and previous is not None:
                results[name] = previous
            else:
                todo.append((Path(path), name))
        bar = _progress(len(paths), len(results), progress)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(self.grade, path, out_dir, name): name for path, name in todo}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except Exception as error:  # grade() catches everything; belt and braces
                    results[name] = self.ungradable(
                        name, f"could not be graded: {type(error).__name__}", time.monotonic()
                    )
                    self._write(results[name], out_dir, name)
                bar.update(1)
        bar.close()
        ordered = [results[name] for name in names]
        from autograder.report import write_batch_outputs

        write_batch_outputs(out_dir, ordered, self.homework)
        return ordered

    def previous_result(self, path: Path, results_path: Path) -> dict | None:
        """The stored result of ``path`` when it was graded with the same hashes."""
        if not results_path.is_file():
            return None
        try:
            previous = json.loads(results_path.read_text())
            fingerprint = previous["extra_data"]["fingerprint"]
            submission = self.load(path)
        except Exception:
            return None
        return previous if fingerprint == self.fingerprint(submission) else None


# --- feedback ------------------------------------------------------------------------------


class Scrubber:
    """Makes text from the sandbox safe to show: host paths and hidden-probe lines removed."""

    def __init__(self, paths: list[Path], probe_lines: set[str]):
        self.replacements = [(str(p), "") for p in sorted(paths, key=lambda p: -len(str(p)))]
        self.replacements += [
            (WORK + "/", ""),
            (GRADER + "/", "<grader>/"),
            (RUNTIME, "<python>"),
            (SITE, "<site>"),
        ]
        self.probe_lines = sorted(probe_lines, key=len, reverse=True)

    def __call__(self, text: str, limit: int = 500) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        for line in self.probe_lines:
            if line in text:
                text = text.replace(line, "[hidden probe code]")
        if len(text) > limit:
            text = text[: limit - 20] + " [... cut ...]"
        return text


def explain_error(
    workspace: Path, sandbox: Sandbox, scrub: Scrubber, error: answer_io.ErrorAnswer
) -> str:
    """'raised X: message', and where in the student's files it happened."""
    message = scrub(error.message.strip(), limit=300)
    text = f"raised {error.type}" + (f": {message}" if message else "")
    work_prefix = WORK + "/" if sandbox.remaps_paths else str(workspace) + "/"
    for filename, line, function in reversed(error.frames):
        if not filename.startswith(work_prefix):
            continue
        relative = filename[len(work_prefix) :]
        source = _source_line(workspace, relative, line)
        location = f"{relative}, line {line}, in {scrub(function, 80)}"
        text += f"\n      at {location}" + (f": {scrub(source, 160)}" if source else "")
        break
    return text


def _source_line(workspace: Path, relative: str, line: int) -> str:
    path = (workspace / relative).resolve()
    if not path.is_relative_to(workspace.resolve()) or not path.is_file():
        return ""
    if path.stat().st_size > 2_000_000:
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def unit_feedback(outcome: UnitOutcome) -> str:
    passed = sum(c.passed for c in outcome.cases)
    lines = [
        f"{passed} of {len(outcome.cases)} checks passed: {outcome.score:g} / {outcome.points:g}"
        " points"
    ]
    if outcome.ended != "finished":
        lines.append(f"The probe process {outcome.ended}.")
    for case in outcome.cases:
        mark = "PASS" if case.passed else "FAIL"
        lines.append(
            f"  [{mark}] {case.name}" + (f": {case.explanation}" if case.explanation else "")
        )
    text = "\n".join(lines)
    return (
        text if len(text) <= MAX_FEEDBACK_CHARS else text[: MAX_FEEDBACK_CHARS - 12] + "\n[... cut]"
    )


def readable_feedback(results: dict) -> str:
    lines = [
        f"{results['extra_data'].get('homework', '')} — "
        f"{results['extra_data'].get('submission', '')}: "
        f"{results['score']:g} / {results['max_score']:g}",
        "",
    ]
    if results.get("output"):
        lines += [results["output"], ""]
    for test in results["tests"]:
        lines.append(f"== {test['name']}: {test['score']:g} / {test['max_score']:g}")
        lines.append(test.get("output", ""))
        lines.append("")
    return "\n".join(lines)


def safe_name(name: str) -> str:
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip", ".ipynb"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned[:80] or "submission"


def unique_names(paths: list[Path]) -> list[str]:
    names, seen = [], {}
    for path in paths:
        name = safe_name(path.name)
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        else:
            seen[name] = 1
        names.append(name)
    return names


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=done, unit="submission", desc="grading", file=sys.stderr)
