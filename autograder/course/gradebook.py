"""The class gradebook: one row per roster student, keyed by student id, in roster order —
the submission used, when it came in, its lateness and penalty, raw and final score and each
unit's score — and the LMS exports made from it.

Which submission counts for a student with several: the latest by submission time (as
Gradescope's active submission); when any of them has no known time the row is marked
``duplicate: unresolved`` and gets no final score (and no LMS grade) until a manifest gives
the times or names the one to use. Every submission keeps its own result either way.

Files, all under ``OUT/_class/``: ``gradebook.csv`` (everything), ``grades.csv`` (the plain
export: id, name, email, section, final score, max score, status) and ``canvas.csv``
(Canvas's gradebook import: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``,
``Section``, then one column per assignment, with Canvas's ``Points Possible`` row).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course.config import Course, Lateness, Student
from autograder.course.identities import CLASS_DIR, Entry, Identities
from autograder.engine.report import csv_cell, not_graded

CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_ROW = "    Points Possible"  # how Canvas's own export spells it


@dataclass
class Row:
    """One student's line of the class gradebook."""

    student: Student
    entry: Entry | None  # the submission that counts (None: missing or unresolved)
    result: dict | None  # its results.json
    lateness: Lateness | None
    raw: float | None
    final: float | None
    max_score: float | None
    status: str
    others: list[Entry] = field(default_factory=list)  # the student's other submissions

    def unit(self, name: str) -> str | float:
        """The unit's cell: its score, "not graded" (never a zero), or blank."""
        for test in (self.result or {}).get("tests", []):
            if test["name"] == name:
                return "not graded" if not_graded(test) else test["score"]
        return ""


def read_result(out_dir: Path, entry: Entry) -> dict | None:
    try:
        result = json.loads((Path(out_dir) / entry.name / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "score" in result else None


def class_rows(course: Course, identities: Identities, out_dir: Path) -> list[Row]:
    """The gradebook rows, one per roster student, in roster order."""
    policy = course.policy(identities.homework)
    rows = []
    for student in course.students:
        mine = identities.of(student.id)
        chosen, status = None, "missing"
        if len(mine) == 1:
            chosen, status = mine[0], "submitted"
        elif mine and all(e.submitted is not None for e in mine):
            chosen = max(mine, key=lambda e: e.submitted)  # type: ignore[arg-type,return-value]
            status = f"{len(mine)} submissions: latest used"
        elif mine:
            status = "duplicate: unresolved (give submission times or a manifest)"
        others = [e for e in mine if e is not chosen]
        result = read_result(out_dir, chosen) if chosen else None
        if chosen is None or result is None:
            if chosen is not None:
                status = "not graded yet"
            rows.append(Row(student, chosen, None, None, None, None, None, status, others))
            continue
        lateness = policy.lateness(student.id, chosen.submitted)
        raw, max_score = float(result["score"]), float(result["max_score"])
        if not result.get("extra_data", {}).get("gradable", True):
            status = "could not be graded"
        if lateness.too_late:
            status = "too late (after the maximum lateness)"
        elif lateness.late_by:
            status = "late"
        if chosen.submitted is None and policy.due is not None:
            status += "; submission time unknown (not checked for lateness)"
        final = policy.final_score(raw, max_score, lateness)
        rows.append(Row(student, chosen, result, lateness, raw, final, max_score, status, others))
    return rows


def hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def _time(moment: dt.datetime | None) -> str:
    return moment.isoformat() if moment else ""


def write_class_gradebook(path: Path, rows: list[Row], units: list[str]) -> None:
    """Everything of every row (the instructor's file)."""
    header = [
        "student_id",
        "name",
        "email",
        "section",
        "submission",
        "submitted_at",
        "due",
        "late_hours",
        "penalty_percent",
        "raw_score",
        "final_score",
        "max_score",
        "status",
        *units,
        "other_submissions",
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            late = row.lateness
            cells = [
                row.student.id,
                row.student.name,
                row.student.email,
                row.student.section,
                row.entry.name if row.entry else "",
                row.entry.submitted_at or "" if row.entry else "",
                _time(late.due) if late else "",
                hours(late.late_by) if late else "",
                late.penalty_percent if late else "",
                "" if row.raw is None else row.raw,
                "" if row.final is None else row.final,
                "" if row.max_score is None else row.max_score,
                row.status,
                *(row.unit(u) for u in units),
                " ".join(e.name for e in row.others),
            ]
            writer.writerow([csv_cell(c) for c in cells])


def lms_score(row: Row, missing: str) -> str | float:
    """The grade an LMS should get: the final score; for a missing or unresolved
    submission blank (the LMS keeps what it has) or 0 (``missing = "zero"``)."""
    if row.final is not None:
        return row.final
    if row.status == "missing" and missing == "zero":
        return 0.0
    return ""


def write_plain_csv(path: Path, course: Course, hw: str, rows: list[Row]) -> Path:
    policy = course.policy(hw)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "name", "email", "section", "score", "max_score", "status"])
        for row in rows:
            cells = [
                row.student.id,
                row.student.name,
                row.student.email,
                row.student.section,
                lms_score(row, policy.missing),
                "" if row.max_score is None else row.max_score,
                row.status,
            ]
            writer.writerow([csv_cell(c) for c in cells])
    return path


def write_canvas_csv(path: Path, course: Course, hw: str, rows: list[Row]) -> Path:
    """Canvas's gradebook import format (Grades > Import): the identity columns Canvas reads
    (it matches a student by ``ID``, else ``SIS User ID``, else ``SIS Login ID``), then the
    assignment column named ``policy.column`` ("Name (canvas id)" updates that assignment,
    a new name creates one). The ``Points Possible`` row is the one Canvas exports and skips
    on import."""
    policy = course.policy(hw)
    possible = max((r.max_score for r in rows if r.max_score is not None), default="")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CANVAS_HEADER, policy.column])
        writer.writerow([CANVAS_POINTS_ROW, "", "", "", "", possible])
        for row in rows:
            student = row.student
            cells = [
                student.name,
                student.canvas_id,
                student.id,
                student.login or student.email,
                student.section,
                lms_score(row, policy.missing),
            ]
            writer.writerow([csv_cell(c) for c in cells])
    return path


def class_dir(out_dir: Path) -> Path:
    folder = Path(out_dir) / CLASS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder
