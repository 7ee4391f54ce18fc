"""What the pages show: a student's feedback under the visibility rules, and the class
dashboard, computed with the course tools (``autograder.course``) over the server's class
layout ``DATA/classes/<hw>/`` (one folder per stored result and ``_class/identities.json``,
the layout ``autograder grade --course`` writes)."""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from autograder.course.classes import shown_visibilities
from autograder.course.config import Course, Policy
from autograder.course.gradebook import Row, class_rows
from autograder.course.identities import Entry, Identities
from autograder.engine.bundle import VISIBILITIES
from autograder.engine.results import WITHHELD, readable_feedback, write_results
from autograder.server.db import DONE, Database, Submission
from autograder.server.grading import entry_name
from autograder.server.storage import Storage


@dataclass
class UnitView:
    name: str
    score: float | None
    max_score: float | None
    output: str
    withheld: str = ""  # why it is not shown ("" when shown)


@dataclass
class Feedback:
    """A submission as its reader may see it."""

    id: int
    homework: str
    student_id: str
    filename: str
    submitted_at: dt.datetime
    state: str
    score: float | None  # None while withheld or not graded
    max_score: float | None
    final: float | None  # after the late penalty
    late: str  # "" when on time
    units: list[UnitView] = field(default_factory=list)
    text: str = ""  # the plain-text feedback (what `make submit` prints)
    error: str = ""

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "homework": self.homework,
            "student": self.student_id,
            "filename": self.filename,
            "submitted_at": self.submitted_at.isoformat(),
            "state": self.state,
            "score": self.score,
            "max_score": self.max_score,
            "final_score": self.final,
            "late": self.late,
            "units": [u.__dict__ for u in self.units],
            "feedback": self.text,
            "error": self.error,
        }


def with_course_visibility(result: dict, policy: Policy) -> dict:
    """``result`` with the course's visibility of each unit (course.toml's
    ``[homeworks.hwN.visibility]`` over the bundle's, as ``grade --course`` applies it)."""
    if not policy.visibility:
        return result
    tests = [
        {**t, "visibility": policy.visibility.get(t["name"], t.get("visibility", "visible"))}
        for t in result.get("tests", [])
    ]
    return {**result, "tests": tests}


def late_text(course: Course, hw: str, student: str, when: dt.datetime) -> tuple[str, object]:
    policy = course.policy(hw)
    lateness = policy.lateness(student, when)
    if not lateness.late_by:
        return "", lateness
    hours = lateness.late_by.total_seconds() / 3600
    if lateness.too_late:
        return f"{hours:.1f} h late: after the maximum lateness (score 0)", lateness
    return f"{hours:.1f} h late (−{lateness.penalty_percent:g}%)", lateness


def feedback(
    course: Course,
    row: Submission,
    instructor: bool = False,
    now: dt.datetime | None = None,
    published: bool = False,
) -> Feedback:
    """``row`` as a student sees it now (an instructor sees every unit)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    policy = course.policy(row.homework)
    shown = (
        VISIBILITIES if instructor else shown_visibilities(policy, [row.student_id], now, published)
    )
    late, lateness = late_text(course, row.homework, row.student_id, row.submitted_at)
    view = Feedback(
        row.id,
        row.homework,
        row.student_id,
        row.filename,
        row.submitted_at,
        row.state,
        None,
        row.max_score,
        None,
        late,
        error="" if row.state != "failed" else "could not be graded; the staff can regrade it",
    )
    if row.state != DONE or not row.result_json:
        return view
    result = with_course_visibility(json.loads(row.result_json), policy)
    withheld_any = False
    for test in result["tests"]:
        visibility = test.get("visibility", "visible")
        if visibility not in shown:
            withheld_any = True
            view.units.append(
                UnitView(test["name"], None, None, "", WITHHELD.get(visibility, "not shown"))
            )
        else:
            view.units.append(
                UnitView(test["name"], test["score"], test["max_score"], test.get("output", ""))
            )
    view.text = readable_feedback(result, shown)
    if not withheld_any:
        view.score = float(result["score"])
        view.final = policy.final_score(view.score, float(result["max_score"]), lateness)  # type: ignore[arg-type]
    return view


def materialize(db: Database, storage: Storage, classes_dir: Path, course: Course, hw: str) -> Path:
    """Write the class layout of ``hw`` from the database (the source of truth): every
    stored result, and the identities (who submitted what, when)."""
    folder = Path(classes_dir) / hw
    folder.mkdir(parents=True, exist_ok=True)
    with db.session() as session:
        rows = session.scalars(
            select(Submission).where(Submission.homework == hw).order_by(Submission.id)
        ).all()
    entries = []
    for row in rows:
        name = entry_name(row.id, row.student_id)
        if row.state == DONE and row.result_json:
            result = with_course_visibility(json.loads(row.result_json), course.policy(hw))
            write_results(result, folder, name)
        on_roster = course.student(row.student_id) is not None
        entries.append(
            Entry(
                name=name,
                path=str(storage.path(row.sha256)),
                students=[row.student_id] if on_roster else [],
                how="server upload" if on_roster else "",
                submitted_at=row.submitted_at.isoformat(),
                time_from="server",
            )
        )
    Identities(hw, entries).save(folder)
    return folder


@dataclass
class HomeworkStats:
    hw: str
    rows: list[Row]
    units: list[str]
    pass_rate: dict[str, float | None]  # unit -> share of graded students with full marks
    histogram_svg: str
    late: int
    graded: int


def homework_stats(folder: Path, course: Course, hw: str) -> HomeworkStats:
    identities = Identities.load(folder)
    rows = class_rows(course, identities, folder)
    units: list[str] = []
    full: dict[str, int] = {}
    graded = [r for r in rows if r.result is not None]
    for row in graded:
        for test in row.result["tests"]:  # type: ignore[index]
            if test["name"] not in units:
                units.append(test["name"])
            if test["max_score"] and test["score"] >= test["max_score"]:
                full[test["name"]] = full.get(test["name"], 0) + 1
    rate = {u: (full.get(u, 0) / len(graded) if graded else None) for u in units}
    percents = [
        100.0 * r.final / r.max_score for r in graded if r.final is not None and r.max_score
    ]
    late = sum(1 for r in graded if r.lateness is not None and r.lateness.late_by)
    return HomeworkStats(hw, rows, units, rate, histogram(percents, hw), late, len(graded))


def histogram(percents: list[float], label: str, bins: int = 10) -> str:
    """An inline SVG bar chart of final scores (percent of the maximum), ``bins`` bins."""
    counts = [0] * bins
    for value in percents:
        counts[min(bins - 1, max(0, int(value * bins / 100.0)))] += 1
    width, height, pad = 320, 120, 18
    bar = (width - 2 * pad) / bins
    top = max(counts) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 2 * pad}" '
        f'role="img" aria-label="{html.escape(label)} score histogram">'
    ]
    for i, count in enumerate(counts):
        h = (height - pad) * count / top
        x, y = pad + i * bar, height - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
            f'fill="#4a7bd0"><title>{i * 100 // bins}–{(i + 1) * 100 // bins}%: '
            f"{count}</title></rect>"
        )
        if count:
            parts.append(
                f'<text x="{x + bar / 2 - 1:.1f}" y="{y - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{count}</text>'
            )
    parts.append(
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#333"/>'
        f'<text x="{pad}" y="{height + 14}" font-size="10">0%</text>'
        f'<text x="{width - pad}" y="{height + 14}" font-size="10" text-anchor="end">100%</text>'
        "</svg>"
    )
    return "".join(parts)
