"""Writing results: Gradescope's ``results.json``, the student's ``feedback.txt``, and the
scrubbing that keeps host paths and hidden probe code out of anything a student reads.

The format is Gradescope's (docs/grading.md#results-format): ``score``, ``max_score``,
``execution_time``, ``output``, ``tests[]`` (one per grading unit) and ``extra_data``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.engine import answers as answer_io
from autograder.engine.sandbox import GRADER, RUNTIME, SITE, WORK, Sandbox
from autograder.engine.scoring import UnitOutcome

if TYPE_CHECKING:
    from autograder.engine.grading import Grader
    from autograder.engine.submission import Submission

GRADER_VERSION = "1.0"
MAX_FEEDBACK_CHARS = 6000


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


# --- the documents ---------------------------------------------------------------------------


def _extra(grader: Grader, name: str) -> dict:
    bundle, sandbox = grader.bundle, grader.sandbox
    return {
        "homework": bundle.name,
        "submission": name,
        "grader_version": GRADER_VERSION,
        "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_id": uuid.uuid4().hex,
        "sandbox": {
            "kind": sandbox.kind,
            "isolated": sandbox.isolated,
            "description": sandbox.describe(),
            "image": getattr(sandbox, "image_id", None),
            "limits": dataclasses.asdict(grader.limits),
        },
        "bundle_key": bundle.key,
        "probes_sha256": bundle.suite.digest,
        "reference_key": bundle.reference_key,
        "runtime": {"key": grader.runtime.key, "numpy": grader.runtime.numpy_version},
        "seeds": "fixed in the probe module (see probes_sha256)",
    }


def _banner(sandbox: Sandbox) -> list[str]:
    if sandbox.isolated:
        return []
    return [
        "WARNING: NOT ISOLATED. This submission ran without a sandbox "
        f"({sandbox.describe()}); its score cannot be trusted.",
        "",
    ]


def ungradable(grader: Grader, name: str, reason: str, start: float) -> dict:
    """Results for a submission that could not be graded: every unit 0, the reason shown."""
    bundle = grader.bundle
    tests = []
    for number, (unit, points) in enumerate(bundle.points.items(), start=1):
        tests.append(
            {
                "name": unit,
                "number": str(number),
                "score": 0.0,
                "max_score": points,
                "status": "failed",
                "output": reason,
                "visibility": "visible",
                "tags": [bundle.name],
            }
        )
    extra = _extra(grader, name)
    extra["gradable"] = False
    return {
        "score": 0.0,
        "max_score": bundle.max_score,
        "execution_time": int(round(time.monotonic() - start)),
        "output": "\n".join(_banner(grader.sandbox) + [reason]),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": extra,
    }


def graded(
    grader: Grader,
    name: str,
    submission: Submission,
    outcomes: list[UnitOutcome],
    start: float,
    built: bool,
    build_log: str,
    scrub: Scrubber,
) -> dict:
    """Results for a graded submission: one test per unit with its per-check feedback."""
    tests: list[dict[str, Any]] = []
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
                "tags": [grader.bundle.name, outcome.unit],
                "extra_data": {
                    "cases": {c.name: c.passed for c in outcome.cases},
                    "ended": outcome.ended,
                    "wall_s": round(outcome.wall_s, 3),
                    "output_tail": outcome.output_tail,  # instructors only
                },
            }
        )
    lines = _banner(grader.sandbox)
    if not built:
        lines += ["Your C++ code did not compile (the probes ran anyway):", ""]
        lines += [scrub(build_log[-4000:], limit=4000), ""]
    lines += submission.notes
    extra = _extra(grader, name)
    extra.update(
        gradable=True,
        fingerprint=grader.fingerprint(submission),
        submission_sha256=submission.sha256,
        files=sorted(submission.files),
        built=built,
    )
    return {
        "score": round(sum(t["score"] for t in tests), 4),
        "max_score": grader.bundle.max_score,
        "execution_time": int(round(time.monotonic() - start)),
        "output": "\n".join(lines).strip(),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": extra,
    }


def write_results(results: dict, out_dir: Path | None, name: str) -> dict:
    """Write ``out_dir/name/results.json`` (atomically) and ``feedback.txt``."""
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
