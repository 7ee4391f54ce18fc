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
from collections.abc import Collection
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


PROBE_WINDOW = 20  # any run of this many characters of the probe source is hidden
UNIT_TEXT_BUDGET = 2000  # student-controlled characters per unit (docs/feedback-policy.md)
SUBMISSION_TEXT_BUDGET = 8000  # ... and per submission, notes and build log included
NOTES_BUDGET = 1000
OMITTED = "(details omitted: this submission's feedback limit was reached)"


def probe_lines(suite) -> set[str]:
    """The lines of a probe module as the grader holds it AND as each unit's sandbox sees it
    (``unit_source`` re-renders the module with ast.unparse, so its lines differ)."""
    texts = [suite.source] + [suite.unit_source(unit) for unit in suite.units]
    return {line.strip() for text in texts for line in text.splitlines() if line.strip()}


class Scrubber:
    """Makes text from the sandbox safe to show: control characters and terminal escapes
    removed, host paths replaced, and every run of ``PROBE_WINDOW`` characters that also
    occurs in a line of the hidden probe module (either rendering) replaced."""

    def __init__(self, paths: list[Path], probe_lines: set[str], window: int = PROBE_WINDOW):
        self.replacements = [(str(p), "") for p in sorted(paths, key=lambda p: -len(str(p)))]
        self.replacements += [
            (WORK + "/", ""),
            (GRADER + "/", "<grader>/"),
            (RUNTIME, "<python>"),
            (SITE, "<site>"),
        ]
        self.window = window
        self.windows = {
            line[i : i + window]
            for line in probe_lines
            for i in range(len(line) - window + 1)
            if line[i : i + window].strip()
        }

    def redact(self, text: str) -> str:
        size = self.window
        if len(text) < size or not self.windows:
            return text
        hidden = [False] * len(text)
        for start in range(len(text) - size + 1):
            if text[start : start + size] in self.windows:
                hidden[start : start + size] = [True] * size
        if not any(hidden):
            return text
        pieces, index = [], 0
        while index < len(text):
            if hidden[index]:
                while index < len(text) and hidden[index]:
                    index += 1
                pieces.append("[hidden probe code]")
            else:
                pieces.append(text[index])
                index += 1
        return "".join(pieces)

    def __call__(self, text: str, limit: int = 500, redact: bool = True) -> str:
        """``redact=False`` for compiler output: probes are never compiled, so it holds no
        probe text, while file names such as ``src/simple_ml_ext.cpp`` also appear in the
        probe module's docstring and would be hidden."""
        text = answer_io.safe_text(text, max(limit * 4, 4000))  # bounded work from here on
        for old, new in self.replacements:
            text = text.replace(old, new)
        if redact:
            text = self.redact(text)
        if len(text) > limit:
            text = text[: max(0, limit - 20)] + " [... cut ...]"
        return text


def explain_error(
    workspace: Path, sandbox: Sandbox, scrub: Scrubber, error: answer_io.ErrorAnswer
) -> str:
    """'raised X: message', and where in the student's files it happened.

    Only what the policy allows (docs/feedback-policy.md): the exception's type name (a
    dotted identifier, checked when parsed), its scrubbed message, and the innermost frame
    that is a real file of the workspace (a code object's file name is student-chosen text:
    ``compile(..., filename=ANYTHING)``), with that file's own line."""
    # Indented: a message's own lines can never pass for the grader's ("== unit: 10 / 10").
    message = scrub(error.message.strip(), limit=300).replace("\n", "\n        | ")
    kind = scrub(answer_io.safe_type_name(error.type), limit=120)
    text = f"raised {kind}" + (f": {message}" if message else "")
    work_prefix = WORK + "/" if sandbox.remaps_paths else str(workspace) + "/"
    for filename, line, function in reversed(error.frames):
        if not filename.startswith(work_prefix):
            continue
        relative = filename[len(work_prefix) :]
        if not _is_workspace_file(workspace, relative):
            continue
        source = _source_line(workspace, relative, line)
        location = f"{scrub(relative, 160)}, line {line}, in {scrub(function, 80)}"
        text += f"\n      at {location}" + (f": {scrub(source, 160)}" if source else "")
        break
    return text


def _is_workspace_file(workspace: Path, relative: str) -> bool:
    if not relative or len(relative) > 240 or "\n" in relative or relative.startswith("/"):
        return False
    try:
        path = (workspace / relative).resolve()
        return path.is_relative_to(workspace.resolve()) and path.is_file()
    except (OSError, ValueError):
        return False


def _source_line(workspace: Path, relative: str, line: int) -> str:
    path = (workspace / relative).resolve()
    if not path.is_relative_to(workspace.resolve()) or not path.is_file():
        return ""
    if path.stat().st_size > 2_000_000:
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def bound_feedback(outcomes: list[UnitOutcome], scrub: Scrubber, budget: int) -> int:
    """Scrub every case explanation and hold the student-controlled ones (error messages,
    the student's own strings) to UNIT_TEXT_BUDGET per unit and ``budget`` in all; returns
    what is left of ``budget``."""
    for outcome in outcomes:
        room = min(UNIT_TEXT_BUDGET, budget)
        for case in outcome.cases:
            if not case.explanation:
                continue
            text = case.explanation
            if case.student_text:  # grader-made text (shapes, tolerances) is left as is
                text = scrub(text, limit=600)
                if len(text) > room:
                    text = OMITTED
                else:
                    room -= len(text)
                    budget -= len(text)
            case.explanation = text
        outcome.output_tail = scrub(outcome.output_tail, limit=2000)
    return budget


def unit_feedback(outcome: UnitOutcome) -> str:
    if not outcome.graded:
        return f"Not graded here: {outcome.not_graded_reason} (left out of the total)."
    graded = [c for c in outcome.cases if c.graded]
    passed = sum(c.passed for c in graded)
    lines = [
        f"{passed} of {len(graded)} checks passed: {outcome.score:g} / {outcome.points:g} points"
    ]
    if len(graded) < len(outcome.cases):
        lines.append(f"{len(outcome.cases) - len(graded)} checks cannot run here (not counted).")
    if outcome.ended != "finished":
        lines.append(f"The probe process {outcome.ended}.")
    for case in outcome.cases:
        mark = "PASS" if case.passed else ("FAIL" if case.graded else "SKIP")
        lines.append(
            f"  [{mark}] {case.name}" + (f": {case.explanation}" if case.explanation else "")
        )
    text = "\n".join(lines)
    return (
        text if len(text) <= MAX_FEEDBACK_CHARS else text[: MAX_FEEDBACK_CHARS - 12] + "\n[... cut]"
    )


#: What a student is shown of a unit whose visibility is not (yet) among those shown.
WITHHELD = {
    "after_due_date": "shown after the due date",
    "after_published": "shown when grades are published",
    "hidden": "not shown to students",
}


def readable_feedback(results: dict, shown: Collection[str] = ("visible",)) -> str:
    """The student's feedback as plain text. ``shown``: the visibilities shown now (before
    the due date only "visible"; see docs/running-a-class.md#feedback-visibility). A unit
    whose visibility is not shown appears by name only, and then, as on Gradescope, the
    total is withheld too."""
    withheld = [t for t in results["tests"] if t.get("visibility", "visible") not in shown]
    total = (
        "total not shown yet (some tests are not shown)"
        if withheld
        else f"{results['score']:g} / {results['max_score']:g}"
    )
    lines = [
        f"{results['extra_data'].get('homework', '')} — "
        f"{results['extra_data'].get('submission', '')}: {total}",
        "",
    ]
    if results.get("output"):
        lines += [results["output"], ""]
    for test in results["tests"]:
        if any(test is w for w in withheld):
            why = WITHHELD.get(test.get("visibility", ""), "not shown")
            lines += [f"== {test['name']}: {why}", ""]
            continue
        lines.append(f"== {test['name']}: {test['score']:g} / {test['max_score']:g}")
        lines.append(test.get("output", ""))
        lines.append("")
    return _strip_controls("\n".join(lines))


def _strip_controls(text: str) -> str:
    """The last line of defence for feedback.txt: no terminal control sequence at all."""
    return answer_io.safe_text(text, max(len(text), 1))


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
            "memory_enforced": sandbox.memory_enforcement,  # "cgroup" | "rlimit-only"
            "limits": dataclasses.asdict(grader.limits),
        },
        "bundle_key": bundle.key,
        "probes_sha256": bundle.suite.digest,
        "reference_key": bundle.reference_key,
        "runtime": {"key": grader.runtime.key, "numpy": grader.runtime.numpy_version},
        "seeds": "the probe module's, mixed with the input variant (see variant)",
    }


def _banner(sandbox: Sandbox) -> list[str]:
    lines = []
    if not sandbox.isolated:
        lines += [
            "WARNING: NOT ISOLATED. This submission ran without a sandbox "
            f"({sandbox.describe()}); its score cannot be trusted.",
            "",
        ]
    if sandbox.memory_enforcement != "cgroup":
        lines += [MEMORY_NOT_ENFORCED, ""]
    return lines


MEMORY_NOT_ENFORCED = (
    "NOTE: the memory limit is not fully enforced on this grader (no memory cgroup: only "
    "each process's address space is limited)."
)


def ungradable(grader: Grader, name: str, reason: str, start: float) -> dict:
    """Results for a submission that could not be graded: every unit 0, the reason shown."""
    bundle = grader.bundle
    reason = answer_io.safe_text(reason, NOTES_BUDGET)
    tests: list[dict[str, Any]] = []
    not_graded = bundle.not_gradable_units()
    for number, (unit, points) in enumerate(bundle.points.items(), start=1):
        tests.append(
            {
                "name": unit,
                "number": str(number),
                "score": 0.0,
                "max_score": 0.0 if unit in not_graded else points,
                "status": "failed",
                "output": reason,
                "visibility": bundle.visibility_of(unit),
                "tags": [bundle.name],
            }
        )
    extra = _extra(grader, name)
    extra["gradable"] = False
    return {
        "score": 0.0,
        "max_score": float(sum(t["max_score"] for t in tests)),
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
    budget = SUBMISSION_TEXT_BUDGET
    notes = [answer_io.safe_text(note, NOTES_BUDGET) for note in submission.notes]
    notes_text = answer_io.safe_text("\n".join(notes), NOTES_BUDGET)
    budget -= len(notes_text)
    log = ""
    if not built:
        log = scrub(build_log[-4000:], limit=max(200, min(4000, budget - 2000)), redact=False)
        budget -= len(log)
    bound_feedback(outcomes, scrub, budget)
    tests: list[dict[str, Any]] = []
    order = list(grader.bundle.points)  # a regrade of some units keeps their numbers
    for outcome in outcomes:
        number = order.index(outcome.unit) + 1 if outcome.unit in order else len(tests) + 1
        tests.append(
            {
                "name": outcome.unit,
                "number": str(number),
                "score": outcome.score,
                "max_score": outcome.max_score,
                "status": "passed" if outcome.score == outcome.max_score else "failed",
                "output": unit_feedback(outcome),
                "output_format": "text",
                "visibility": grader.bundle.visibility_of(outcome.unit),
                "tags": [grader.bundle.name, outcome.unit],
                "extra_data": {
                    "cases": {c.name: c.passed for c in outcome.cases},
                    "ended": outcome.ended,
                    "wall_s": round(outcome.wall_s, 3),
                    "output_tail": outcome.output_tail,  # instructors only
                    **({} if outcome.graded else {"not_graded": outcome.not_graded_reason}),
                },
            }
        )
    lines = _banner(grader.sandbox)
    if not built:
        lines += ["Your C++ code did not compile (the probes ran anyway):", "", log, ""]
    lines += [notes_text] if notes_text else []
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
        "max_score": float(sum(t["max_score"] for t in tests)),
        "execution_time": int(round(time.monotonic() - start)),
        "output": "\n".join(lines).strip(),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": extra,
    }


def write_results(
    results: dict, out_dir: Path | None, name: str, shown: Collection[str] = ("visible",)
) -> dict:
    """Write ``out_dir/name/results.json`` (atomically) and ``feedback.txt`` (showing the
    units whose visibility is in ``shown``)."""
    if out_dir is None:
        return results
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, allow_nan=False)
    partial = folder / "results.json.partial"
    partial.write_text(text)
    partial.replace(folder / "results.json")
    (folder / "feedback.txt").write_text(readable_feedback(results, shown))
    return results
