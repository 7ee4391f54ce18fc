"""Grading a class: a batch with identities, then the class outputs rebuilt from what is on
disk (so a regrade, a late batch or ``report --course`` leaves everything consistent).

``grade_class`` matches the submissions to the roster, grades them with the engine's batch
(every submission its own folder and result, resumable), saves the identities and calls
``refresh``, which rewrites ``OUT/_class/gradebook.csv`` and ``report.html``, the engine's
per-submission ``gradebook.csv`` / ``report.html``, and every ``feedback.txt`` for the current
phase of the homework (before the due date only "visible" units are shown; after the
student's due date also "after_due_date" ones; once ``--published``, "after_published" too;
"hidden" never).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.course.config import Course, Policy
from autograder.course.gradebook import class_dir, class_rows, read_result, write_class_gradebook
from autograder.course.identities import (
    Identities,
    match_submissions,
    merge_previous,
    read_manifest,
)
from autograder.course.report import render_class_report
from autograder.engine.batch import expand_submissions, unique_names
from autograder.engine.report import load_results, unit_names, write_batch_outputs
from autograder.engine.results import write_results

if TYPE_CHECKING:
    from autograder.engine.grading import Grader


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def shown_visibilities(
    policy: Policy, students: Collection[str], now: dt.datetime, published: bool = False
) -> tuple[str, ...]:
    """The visibilities a submission's feedback shows at ``now``."""
    shown = ["visible"]
    dues = [policy.due_for(s) for s in students] or [policy.due]
    if all(due is not None and now > due for due in dues) or (policy.due is None and published):
        shown.append("after_due_date")
    if published:
        shown.append("after_published")
    return tuple(shown)


def grade_class(
    course: Course,
    grader: Grader,
    paths: list[str | Path],
    out_dir: Path,
    manifest: Path | None = None,
    jobs: int = 1,
    resume: bool = True,
    now: dt.datetime | None = None,
    progress: bool = True,
) -> Identities:
    """Grade a class's submissions of the grader's homework into ``out_dir``."""
    hw = grader.bundle.name
    rows = read_manifest(Path(manifest), course) if manifest else None
    submissions = expand_submissions(paths, grader.bundle.accept, grader.log)
    names = unique_names(submissions)  # the names grade_batch gives them (same function)
    identities = match_submissions(course, hw, list(zip(submissions, names)), rows)
    grader.grade_batch(submissions, out_dir, jobs=jobs, resume=resume, progress=progress)
    identities = merge_previous(identities, out_dir)
    identities.save(out_dir)
    refresh(course, out_dir, now=now)
    return identities


def refresh(
    course: Course, out_dir: Path, now: dt.datetime | None = None, published: bool = False
) -> Path:
    """Rebuild the class outputs and every feedback.txt from the stored results and
    identities; returns the class report's path."""
    out_dir = Path(out_dir)
    identities = Identities.load(out_dir)
    hw = identities.homework
    policy = course.policy(hw)
    now = now or now_utc()
    for entry in identities.entries:
        result = read_result(out_dir, entry)
        if result is not None:
            shown = shown_visibilities(policy, entry.students, now, published)
            write_results(result, out_dir, entry.name, shown)
    results = load_results(out_dir, homework=hw)
    if results:
        write_batch_outputs(out_dir, results)
    units = unit_names(results)
    points: dict[str, float] = {}
    visibility: dict[str, str] = {}
    for result in results:
        for test in result.get("tests", []):
            points[test["name"]] = max(points.get(test["name"], 0.0), float(test["max_score"]))
            visibility.setdefault(test["name"], test.get("visibility", "visible"))
    rows = class_rows(course, identities, out_dir)
    folder = class_dir(out_dir)
    write_class_gradebook(folder / "gradebook.csv", rows, units)
    page = render_class_report(course, identities, rows, units, points, visibility, out_dir)
    (folder / "report.html").write_text(page, encoding="utf-8")
    return folder / "report.html"
