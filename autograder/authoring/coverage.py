"""Mutation coverage of a homework's tests: is every solution region checked by something?

``python -m autograder.authoring.coverage [HW ...] [--quick] [--jobs N] [--no-probes] [--out DIR]``

For each marked region of the homework, the tool builds the reference-filled release with
*only that region* stubbed (as the student receives it) and runs

- the public tests (``tests/`` of the release, in a subprocess), recording which fail, and
- the hidden probes, through the grading engine (``autograder.engine.grading``) when the
  homework has probes: the mutant's accepted files are graded like a submission, and every
  probe case that fails is recorded as ``probe:<unit>/<case>``.

A region that no test and no probe catches is *uncovered*: its body could be deleted without
anyone noticing. CUDA regions on a machine without a GPU cannot be measured (their tests and
probes need one); they are listed as *not measurable here*, neither caught nor uncovered.
The report ``DIR/report.md`` (default ``build/coverage``) lists every region with the tests
that catch it; the exit status is 1 when any region is uncovered.

``--quick`` stops each public-test run at its first failure (enough to know a region is
caught, much faster; the report then lists that first test only) and skips the probes unless
a region escapes the public tests. Python regions run in parallel (``--jobs``); C++ regions
run one after another in one workspace, rebuilding incrementally.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder.authoring.assignment import REPO_ROOT, Assignment, homeworks, load
from autograder.authoring.markers import find_regions, stub_line, syntax_for
from autograder.authoring.release import build_release

DEFAULT_OUT = REPO_ROOT / "build" / "coverage"
TEST_TIMEOUT_S = 900


@dataclass
class Mutant:
    """One region stubbed alone, and what caught it."""

    path: str  # student path of the file
    ordinal: int  # index of the region among the file's regions
    tag: str
    function: str | None
    line: int
    caught_by: list[str] = field(default_factory=list)
    probe_status: str = "not run"
    seconds: float = 0.0
    error: str | None = None
    not_run: str | None = None  # why the region could not be measured on this machine

    @property
    def label(self) -> str:
        return f"{self.path}:{self.function or f'line {self.line}'}"

    @property
    def native(self) -> bool:
        return syntax_for(self.path) == "cpp"

    @property
    def needs_gpu(self) -> bool:
        return self.path.endswith(".cu")


def gpu_present() -> bool:
    """True when the installed needle has a CUDA backend that sees a GPU."""
    try:
        import importlib

        ndarray_backend_cuda = importlib.import_module(
            "needle.backend_ndarray.ndarray_backend_cuda"
        )
    except ImportError:
        return False
    try:
        return ndarray_backend_cuda.device_count() > 0
    except Exception:  # a driver that fails to answer counts as no GPU
        return False


def mutants_of(assignment: Assignment, workspace: Path) -> list[Mutant]:
    """Every region of the homework's own tags in the filled release at ``workspace``."""
    mutants = []
    for path in sorted(workspace.rglob("*")):
        relative = path.relative_to(workspace).as_posix()
        syntax = syntax_for(relative)
        if not path.is_file() or syntax is None or relative.startswith("tests/"):
            continue
        if relative in ("conftest.py", "submit.py", "carry.py"):
            continue
        regions = find_regions(path.read_text(encoding="utf-8"), syntax, relative)
        for ordinal, region in enumerate(regions):
            if region.tag in assignment.tags:
                mutants.append(Mutant(relative, ordinal, region.tag, region.function, region.begin))
    return mutants


def stub_one(text: str, path: str, ordinal: int) -> str:
    """``text`` with only its ``ordinal``-th region stubbed."""
    syntax = syntax_for(path)
    assert syntax is not None, path
    regions = find_regions(text, syntax, path)
    region = regions[ordinal]
    lines = text.splitlines()
    lines[region.begin : region.end - 1] = stub_line(region)
    result = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    if syntax_for(path) == "cpp" and region.kind == "throw" and "<stdexcept>" not in result:
        result = "#include <stdexcept>\n" + result
    return result


def _environment(assignment: Assignment) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if assignment.backend:
        env["NEEDLE_BACKEND"] = assignment.backend
    return env


def build_native(workspace: Path, assignment: Assignment) -> None:
    """``make build`` in a release workspace (no-op for homeworks without C++)."""
    if assignment.build == "none":
        return
    result = subprocess.run(
        ["make", "-s", "build", f"PYTHON={sys.executable}"],
        cwd=workspace,
        capture_output=True,
        text=True,
        env=_environment(assignment),
    )
    if result.returncode != 0:
        raise RuntimeError(f"make build failed in {workspace}:\n{result.stderr[-3000:]}")


def run_public_tests(
    workspace: Path, assignment: Assignment, quick: bool, select: str | None = None
) -> tuple[list[str], str]:
    """Run the release's public tests (those ``select``, a ``-k`` expression, picks); return
    (failing test ids, a short note)."""
    report = workspace / ".coverage-junit.xml"
    command = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"]
    if select:
        command += ["-k", select]
    command += ["-p", "no:hypothesispytest"]  # its import alone costs seconds per run
    command += ["--junitxml", str(report), "-o", "junit_family=xunit1"]
    if quick:
        command.append("-x")
    try:
        result = subprocess.run(
            command,
            cwd=workspace,
            capture_output=True,
            text=True,
            env=_environment(assignment),
            timeout=TEST_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return ["(timeout)"], "the public tests timed out"
    if not report.is_file():
        return ["(pytest crashed)"], result.stdout[-2000:] + result.stderr[-2000:]
    failed = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    report.unlink()
    if result.returncode not in (0, 1):
        failed = failed or [f"(pytest exit {result.returncode})"]
    return failed, ""


class ProbeRunner:
    """Grades mutants with the hidden probes, if the grading engine and probes exist."""

    def __init__(self, assignment: Assignment):
        self.grader = None
        self.status = "no probes"
        try:
            from autograder.authoring.bundle import build_bundle
            from autograder.engine.grading import Grader
            from autograder.engine.sandbox import local_sandbox

            bundle = build_bundle(assignment.name, assignment, log=lambda message: None)
            self.grader = Grader(bundle, local_sandbox())
            self.status = "probes"
        except Exception as error:  # noqa: BLE001 - any reason means "public tests only"
            self.status = f"hidden probes unavailable ({type(error).__name__}: {error})"[:300]

    def failing_cases(self, workspace: Path, accept: tuple[str, ...]) -> list[str]:
        assert self.grader is not None, "failing_cases needs the hidden probes"
        submission = Path(tempfile.mkdtemp(prefix="coverage-submission-"))
        try:
            for relative in accept:
                source = workspace / relative
                if source.is_file():
                    target = submission / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
            results = self.grader.grade(submission)
        finally:
            shutil.rmtree(submission, ignore_errors=True)
        failing = []
        for test in results.get("tests", []):
            cases = test.get("extra_data", {}).get("cases", {})
            failing += [f"probe:{test['name']}/{c}" for c, ok in cases.items() if not ok]
            if test.get("score", 0) < test.get("max_score", 0) and not cases:
                failing.append(f"probe:{test['name']}")
        return failing

    def close(self) -> None:
        if self.grader is not None:
            self.grader.close()


def _link_copy(source: Path, target: Path) -> None:
    """A copy of a release tree that shares file contents (hard links) with the source."""
    shutil.copytree(source, target, copy_function=os.link)


def _replace(path: Path, text: str) -> None:
    path.unlink()  # break the hard link before writing
    path.write_text(text, encoding="utf-8")


def cover_homework(
    hw: str, out: Path, *, quick: bool = False, jobs: int = 2, probes: bool = True, log=print
) -> tuple[list[Mutant], str]:
    """Run every mutant of ``hw``; return them (with what caught each) and a probe status."""
    assignment = load(hw)
    work = Path(out).resolve() / "work" / hw
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    base = build_release(hw, work, fill=True)
    build_native(base, assignment)
    failed, note = run_public_tests(base, assignment, quick=False)
    if failed:
        raise RuntimeError(
            f"{hw}: the reference-filled release fails its own public tests: {failed[:5]} {note}"
        )
    mutants = mutants_of(assignment, base)
    log(f"{hw}: {len(mutants)} regions; public tests pass on the reference")
    prober = ProbeRunner(assignment) if probes else None
    probe_status = prober.status if prober else "hidden probes not run (--no-probes)"
    if prober is not None and prober.grader is None:
        prober = None

    def run_python(mutant: Mutant) -> Mutant:
        start = time.monotonic()
        workspace = work / f"mutant-{mutant.path.replace('/', '_')}-{mutant.ordinal}"
        _link_copy(base, workspace)
        try:
            original = (base / mutant.path).read_text(encoding="utf-8")
            _replace(workspace / mutant.path, stub_one(original, mutant.path, mutant.ordinal))
            mutant.caught_by, mutant.error = run_public_tests(workspace, assignment, quick)
            mutant.caught_by = list(mutant.caught_by)
            if prober is not None and (not quick or not mutant.caught_by):
                mutant.caught_by += prober.failing_cases(workspace, assignment.accept)
                mutant.probe_status = "run"
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        mutant.seconds = time.monotonic() - start
        return mutant

    # CUDA regions are exercised only on a GPU (their tests and probes skip elsewhere): without
    # one they are reported as not measurable here, never as caught or uncovered.
    if any(m.needs_gpu for m in mutants) and not gpu_present():
        for mutant in mutants:
            if mutant.needs_gpu:
                mutant.not_run = "needs a CUDA GPU (none on this machine)"
    python_mutants = [m for m in mutants if not m.native and not m.not_run]
    native_mutants = [m for m in mutants if m.native and not m.not_run]
    done = sum(bool(m.not_run) for m in mutants)
    if done:
        log(f"  {done} region(s) not run: needs a CUDA GPU (none on this machine)")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for mutant in pool.map(run_python, python_mutants):
            done += 1
            state = f"caught by {len(mutant.caught_by)}" if mutant.caught_by else "UNCAUGHT"
            log(f"  [{done}/{len(mutants)}] {mutant.label}: {state} ({mutant.seconds:.1f}s)")

    if native_mutants:
        workspace = work / "native"
        # Without the base's build folder: its CMake cache names the base's path, and CMake
        # refuses to reuse it from another folder (every mutant would then "not compile").
        shutil.copytree(base, workspace, ignore=shutil.ignore_patterns("build"))
        build_native(workspace, assignment)  # the reference builds here; mutants then rebuild
        for mutant in native_mutants:
            start = time.monotonic()
            file = workspace / mutant.path
            original = file.read_text(encoding="utf-8")
            try:
                file.write_text(stub_one(original, mutant.path, mutant.ordinal), encoding="utf-8")
                try:
                    build_native(workspace, assignment)
                    mutant.caught_by, mutant.error = run_public_tests(workspace, assignment, quick)
                except RuntimeError as error:
                    mutant.caught_by, mutant.error = ["(does not compile)"], str(error)[-500:]
                if prober is not None and (not quick or not mutant.caught_by):
                    mutant.caught_by += prober.failing_cases(workspace, assignment.accept)
                    mutant.probe_status = "run"
            finally:
                file.write_text(original, encoding="utf-8")
            mutant.seconds = time.monotonic() - start
            done += 1
            state = f"caught by {len(mutant.caught_by)}" if mutant.caught_by else "UNCAUGHT"
            log(f"  [{done}/{len(mutants)}] {mutant.label}: {state} ({mutant.seconds:.1f}s)")
    if prober is not None:
        prober.close()
    shutil.rmtree(work, ignore_errors=True)
    return mutants, probe_status


def render_report(results: dict[str, tuple[list[Mutant], str]], quick: bool) -> str:
    """The Markdown report: a summary, then each homework's regions × catching tests."""
    lines = ["# Mutation coverage of the homework tests", ""]
    lines += [
        "Each solution region is stubbed alone in the reference-filled release; a region is "
        "*caught* when at least one public test (or hidden probe case, `probe:unit/case`) "
        "fails." + (" Quick mode: each run stops at its first failing test." if quick else ""),
        "",
        "| homework | regions | caught | uncovered | not measurable here | hidden probes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for hw, (mutants, probe_status) in results.items():
        caught = sum(bool(m.caught_by) for m in mutants)
        not_run = sum(bool(m.not_run) for m in mutants)
        uncovered = len(mutants) - caught - not_run
        lines.append(
            f"| {hw} | {len(mutants)} | {caught} | {uncovered} | {not_run} | {probe_status} |"
        )
    for hw, (mutants, _) in results.items():
        lines += ["", f"## {hw}", "", "| region | tag | caught by | tests | seconds |"]
        lines.append("|---|---|---|---:|---:|")
        for m in mutants:
            public = [t for t in m.caught_by if not t.startswith("probe:")]
            hidden = [t for t in m.caught_by if t.startswith("probe:")]
            shown = ", ".join(f"`{t}`" for t in (public[:4] + hidden[:2]))
            more = len(m.caught_by) - min(len(public), 4) - min(len(hidden), 2)
            if more > 0:
                shown += f" … (+{more})"
            if m.not_run:
                shown = f"not run: {m.not_run}"
            lines.append(
                f"| `{m.label}` | {m.tag} | {shown or '**UNCOVERED**'} | "
                f"{len(public)} public + {len(hidden)} hidden | {m.seconds:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.authoring.coverage",
        description="Stub each solution region alone and check that some test catches it.",
    )
    parser.add_argument("homeworks", nargs="*", help="homeworks (default: all with public tests)")
    parser.add_argument("--quick", action="store_true", help="stop each run at its first failure")
    parser.add_argument("--jobs", type=int, default=2, help="parallel mutants (default 2)")
    parser.add_argument("--no-probes", action="store_true", help="public tests only")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    args = parser.parse_args(argv)
    names = args.homeworks or [
        hw for hw in homeworks() if (REPO_ROOT / load(hw).public_tests).is_dir()
    ]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for hw in names:
        results[hw] = cover_homework(
            hw, out, quick=args.quick, jobs=args.jobs, probes=not args.no_probes
        )
    report = render_report(results, args.quick)
    (out / "report.md").write_text(report, encoding="utf-8")
    data = {
        hw: {
            "probes": status,
            "regions": [
                {
                    "region": m.label,
                    "tag": m.tag,
                    "caught_by": m.caught_by,
                    "not_run": m.not_run,
                    "seconds": m.seconds,
                }
                for m in mutants
            ],
        }
        for hw, (mutants, status) in results.items()
    }
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    uncovered = [
        m.label
        for mutants, _ in results.values()
        for m in mutants
        if not m.caught_by and not m.not_run
    ]
    not_run = [m for mutants, _ in results.values() for m in mutants if m.not_run]
    print(f"report: {out / 'report.md'}")
    if not_run:
        print(f"{len(not_run)} region(s) not measurable here: {not_run[0].not_run}")
    if uncovered:
        print("uncovered regions:\n  " + "\n  ".join(uncovered), file=sys.stderr)
        return 1
    print("every region is caught")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
