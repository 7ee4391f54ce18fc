"""Realistic mistakes: does grading notice the bugs students actually write?

Mutation coverage (``coverage.py``) blanks whole regions, the easiest bug there is to catch.
This tool applies a catalogue of *realistic* mistakes instead — a dropped partial batch, a
graph that grows across steps, a forgotten view offset, a strict ``>`` for ``>=`` — each a
small edit of the reference, kept as data in ``assignments/hwN/mistakes.toml``::

    [[mistake]]
    id = "partial-batch-dropped"             # unique within the homework
    file = "src/simple_ml.py"                # a student path of the release
    find = "for start in range(0, n, batch):"   # text of the reference-filled release ...
    replace = "for start in range(0, n - batch + 1, batch):"   # ... and what the student wrote
    costs = ["softmax_regression_epoch"]     # grading units that must lose points
    public = true                            # the public tests must catch it too (default)
    why = "drops the last partial minibatch when n is not a multiple of the batch"

Optional fields: ``count`` (how many times ``find`` occurs, default 1: every occurrence is
replaced), ``gpu = true`` (only measurable with a CUDA GPU), ``fast = true`` (part of the
subset ``make test`` runs).

For each mistake the tool grades the mutated accepted files with the hidden probes (the same
grading bundle and engine as a real submission) and, unless ``--no-public``, runs the release's
public tests on the mutated reference-filled release. A mistake is *caught by the probes* when
every unit in ``costs`` scores below its points; *caught by the public tests* when at least one
public test of those units fails (the public tests are chosen with each unit's selector,
``[grading.selectors]``, as ``make check`` does).
``python -m autograder.authoring.mistakes [HW ...] [--fast]`` writes a report per homework
to ``build/mistakes/`` and exits 1 when a mistake escapes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from autograder.authoring.assignment import REPO_ROOT, Assignment, homeworks, load
from autograder.authoring.coverage import build_native, gpu_present, run_public_tests
from autograder.authoring.release import render_release
from autograder.engine.workspace import write_tree

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_OUT = REPO_ROOT / "build" / "mistakes"


class CatalogueError(ValueError):
    """A catalogue entry that does not apply to the reference; the message says why."""


@dataclasses.dataclass
class Mistake:
    hw: str
    id: str
    file: str
    find: str
    replace: str
    costs: list[str]
    why: str
    public: bool = True
    count: int = 1
    gpu: bool = False
    fast: bool = False


@dataclasses.dataclass
class MistakeResult:
    mistake: Mistake
    unit_scores: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    public_failures: list[str] = dataclasses.field(default_factory=list)
    public_run: bool = False
    not_run: str = ""
    seconds: float = 0.0

    @property
    def caught_by_probes(self) -> bool:
        return all(
            unit in self.unit_scores and self.unit_scores[unit][0] < self.unit_scores[unit][1]
            for unit in self.mistake.costs
        )

    @property
    def caught_by_public(self) -> bool:
        return bool(self.public_failures)

    @property
    def escaped(self) -> list[str]:
        """What the catalogue promised and grading did not deliver."""
        if self.not_run:
            return []
        problems = []
        if not self.caught_by_probes:
            lost = {u: s for u, s in self.unit_scores.items() if s[0] < s[1]}
            problems.append(
                f"hidden probes: units {self.mistake.costs} must lose points; lost: {lost}"
            )
        if self.public_run and self.mistake.public and not self.caught_by_public:
            problems.append("public tests: every test passed")
        return problems


def catalogue_path(assignment: Assignment) -> Path:
    return REPO_ROOT / "assignments" / assignment.name / "mistakes.toml"


def load_catalogue(hw: str) -> list[Mistake]:
    """The mistakes of ``hw`` (an empty list when it has no catalogue)."""
    assignment = load(hw)
    path = catalogue_path(assignment)
    if not path.is_file():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Mistake)} - {"hw"}
    mistakes, seen = [], set()
    for number, entry in enumerate(data.get("mistake", []), start=1):
        unknown = set(entry) - fields
        missing = {"id", "file", "find", "replace", "costs", "why"} - set(entry)
        if unknown or missing:
            raise CatalogueError(
                f"{path} entry {number}: unknown fields {sorted(unknown)}, "
                f"missing {sorted(missing)}"
            )
        if entry["id"] in seen:
            raise CatalogueError(f"{path}: two mistakes named {entry['id']!r}")
        seen.add(entry["id"])
        mistakes.append(Mistake(hw=hw, **entry))
    return mistakes


def apply_mistake(files: dict[str, bytes], mistake: Mistake, accept: tuple[str, ...]) -> dict:
    """``files`` (a reference-filled release) with ``mistake`` made; checks it applies."""
    if mistake.file not in accept:
        raise CatalogueError(f"{mistake.hw}/{mistake.id}: {mistake.file} is not an accepted file")
    if mistake.file not in files:
        raise CatalogueError(f"{mistake.hw}/{mistake.id}: no file {mistake.file} in the release")
    text = files[mistake.file].decode("utf-8")
    found = text.count(mistake.find)
    if found != mistake.count:
        raise CatalogueError(
            f"{mistake.hw}/{mistake.id}: {mistake.find!r} occurs {found} times in "
            f"{mistake.file}, the catalogue says {mistake.count}"
        )
    if mistake.find == mistake.replace:
        raise CatalogueError(f"{mistake.hw}/{mistake.id}: the edit changes nothing")
    changed = dict(files)
    changed[mistake.file] = text.replace(mistake.find, mistake.replace).encode("utf-8")
    return changed


class MistakeRunner:
    """Grades the mistakes of one homework with its grading bundle and public tests."""

    def __init__(self, hw: str, public: bool = True, log=print):
        from autograder.authoring.bundle import build_bundle
        from autograder.engine.grading import Grader
        from autograder.engine.sandbox import local_sandbox

        self.assignment = load(hw)
        self.reference = render_release(self.assignment, fill=True)
        self.bundle = build_bundle(hw, self.assignment, log=log)
        self.grader = Grader(self.bundle, local_sandbox(), log=lambda message: None)
        self.public = public
        self.gpu = gpu_present()
        self.log = log

    def close(self) -> None:
        self.grader.close()

    def run(self, mistake: Mistake) -> MistakeResult:
        start = time.monotonic()
        result = MistakeResult(mistake)
        files = apply_mistake(self.reference, mistake, self.bundle.accept)
        unknown = [u for u in mistake.costs if u not in self.bundle.points]
        if unknown:
            raise CatalogueError(f"{mistake.hw}/{mistake.id}: no grading units {unknown}")
        if mistake.gpu and not self.gpu:
            result.not_run = "needs a CUDA GPU"
            return result
        scratch = Path(tempfile.mkdtemp(prefix="needle-mistake-"))
        try:
            submission = scratch / "submission"
            write_tree(
                {path: files[path] for path in self.bundle.accept if path in files}, submission
            )
            graded = self.grader.grade(submission)
            for test in graded["tests"]:
                result.unit_scores[test["name"]] = (float(test["score"]), float(test["max_score"]))
            if self.public and mistake.public:
                release = scratch / "release"
                write_tree(files, release)
                try:
                    build_native(release, self.assignment)
                except RuntimeError:
                    result.public_failures = ["(the release does not build)"]
                else:
                    select = " or ".join(
                        f"({self.assignment.selector(unit)})" for unit in mistake.costs
                    )
                    result.public_failures, _ = run_public_tests(
                        release, self.assignment, True, select
                    )
                result.public_run = True
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.seconds = time.monotonic() - start
        return result


def run_catalogue(
    hw: str, *, fast: bool = False, public: bool = True, only: list[str] | None = None, log=print
) -> list[MistakeResult]:
    mistakes = [
        m for m in load_catalogue(hw) if (not fast or m.fast) and (only is None or m.id in only)
    ]
    if not mistakes:
        return []
    runner = MistakeRunner(hw, public=public, log=log)
    results = []
    try:
        for number, mistake in enumerate(mistakes, start=1):
            result = runner.run(mistake)
            mark = "not run" if result.not_run else ("ESCAPED" if result.escaped else "caught")
            log(f"  [{number}/{len(mistakes)}] {hw}/{mistake.id}: {mark} ({result.seconds:.0f} s)")
            sys.stdout.flush()
            results.append(result)
    finally:
        runner.close()
    return results


def render_report(hw: str, results: list[MistakeResult]) -> str:
    """A Markdown table: each mistake, the units it must cost, and what caught it."""
    lines = [
        f"# {hw}: realistic mistakes",
        "",
        "| mistake | file | must cost | hidden probes | public tests | why |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.mistake
        if r.not_run:
            probes = public = f"not run: {r.not_run}"
        else:
            probes = "caught" if r.caught_by_probes else "**ESCAPED**"
            if not r.public_run:
                public = "not run"
            elif r.caught_by_public:
                public = f"caught ({len(r.public_failures)} failing)"
            else:
                public = "**missed**" if m.public else "missed (not expected)"
        lines.append(
            f"| `{m.id}` | `{m.file}` | {', '.join(m.costs)} | {probes} | {public} | {m.why} |"
        )
    caught_p = sum(r.caught_by_probes for r in results if not r.not_run)
    caught_t = sum(r.caught_by_public for r in results if r.public_run)
    measured = sum(1 for r in results if not r.not_run)
    lines += [
        "",
        f"{len(results)} mistakes; {measured} measured here; caught by the hidden probes: "
        f"{caught_p}; caught by the public tests: {caught_t} of "
        f"{sum(r.public_run for r in results)} run.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.authoring.mistakes",
        description="Grade the catalogue of realistic mistakes of each homework.",
    )
    parser.add_argument("homeworks", nargs="*", help="default: every homework with a catalogue")
    parser.add_argument("--fast", action="store_true", help="only the mistakes marked fast")
    parser.add_argument("--no-public", action="store_true", help="hidden probes only")
    parser.add_argument("--only", nargs="*", help="mistake ids")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    chosen = args.homeworks or [hw for hw in homeworks() if load_catalogue(hw)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    escaped = 0
    summary = {}
    for hw in chosen:
        print(f"{hw}: grading its realistic mistakes", flush=True)
        results = run_catalogue(hw, fast=args.fast, public=not args.no_public, only=args.only)
        (out / f"{hw}.md").write_text(render_report(hw, results))
        for r in results:
            for problem in r.escaped:
                print(f"ESCAPED {hw}/{r.mistake.id}: {problem}")
                escaped += 1
        summary[hw] = {
            "mistakes": len(results),
            "caught_by_probes": sum(r.caught_by_probes for r in results if not r.not_run),
            "caught_by_public": sum(r.caught_by_public for r in results if r.public_run),
            "public_run": sum(r.public_run for r in results),
            "not_run": sum(bool(r.not_run) for r in results),
        }
        print(f"  report: {out / f'{hw}.md'}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for hw, row in summary.items():
        print(
            f"{hw}: {row['mistakes']} mistakes, probes caught {row['caught_by_probes']}, "
            f"public tests caught {row['caught_by_public']} of {row['public_run']}, "
            f"not measurable here {row['not_run']}"
        )
    return 1 if escaped else 0


if __name__ == "__main__":
    raise SystemExit(main())
