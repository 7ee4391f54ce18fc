"""Regrades: one student, a list, or the whole class, every unit or only some
(``--only UNIT``), in place.

A full regrade replaces the submission's result; a unit regrade grades only that unit
(``Grader.grade(..., units=...)``) and replaces only its row in the stored result, so every
other unit keeps its score, feedback and numbering, and the total is recomputed. Each regraded
submission appends one line to ``OUT/_class/regrades.csv``: when, who, the student, the
submission, what was regraded, the old and new unit and total scores, and the reason. The
class gradebook and report are rebuilt afterwards (``classes.refresh``).
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.course.config import Course, CourseError
from autograder.course.gradebook import class_dir, read_result
from autograder.course.identities import Entry, Identities
from autograder.engine.results import write_results

if TYPE_CHECKING:
    from autograder.engine.grading import Grader

LOG = "regrades.csv"
LOG_COLUMNS = [
    "when",
    "who",
    "student",
    "submission",
    "scope",
    "old_units",
    "new_units",
    "old_score",
    "new_score",
    "reason",
]


@dataclass
class Change:
    entry: Entry
    scope: str
    old_units: dict[str, float]
    new_units: dict[str, float]
    old_score: float | None
    new_score: float


def select(identities: Identities, students: Collection[str] = ()) -> list[Entry]:
    """The submissions of ``students`` (every submission of the class when none given)."""
    if not students:
        return list(identities.entries)
    chosen = []
    for student in students:
        found = identities.of(student)
        if not found:
            raise CourseError(f"{student}: no submission of this student in the class")
        chosen += [e for e in found if e not in chosen]
    return chosen


def merge_units(old: dict, new: dict, units: Collection[str]) -> dict:
    """``old`` with the rows of ``units`` taken from ``new``; the total recomputed."""
    fresh = {t["name"]: t for t in new["tests"] if t["name"] in units}
    missing = sorted(set(units) - set(fresh))
    if missing:
        raise ValueError(f"the regrade gave no result for {missing}")
    merged = dict(old)
    merged["tests"] = [fresh.get(t["name"], t) for t in old["tests"]]
    merged["score"] = round(sum(t["score"] for t in merged["tests"]), 4)
    merged["max_score"] = float(sum(t["max_score"] for t in merged["tests"]))
    extra = dict(old.get("extra_data", {}))
    history = list(extra.get("regrades", []))
    history.append(
        {
            "units": sorted(units),
            "at": new.get("extra_data", {}).get("graded_at"),
            "bundle_key": new.get("extra_data", {}).get("bundle_key"),
            "variant": new.get("extra_data", {}).get("variant"),
        }
    )
    extra["regrades"] = history
    merged["extra_data"] = extra
    return merged


def _unit_scores(result: dict | None, units: Collection[str] | None) -> dict[str, float]:
    tests = (result or {}).get("tests", [])
    return {t["name"]: t["score"] for t in tests if units is None or t["name"] in units}


def regrade(
    course: Course,
    grader: Grader,
    out_dir: Path,
    students: Collection[str] = (),
    only: Collection[str] | None = None,
    who: str | None = None,
    reason: str = "",
    now: dt.datetime | None = None,
) -> list[Change]:
    """Regrade the chosen submissions in ``out_dir`` and log each change."""
    from autograder.course.classes import refresh

    out_dir = Path(out_dir)
    identities = Identities.load(out_dir)
    if identities.homework != grader.bundle.name:
        raise CourseError(f"{out_dir} holds {identities.homework}, not {grader.bundle.name}")
    if only:
        unknown = sorted(set(only) - set(grader.bundle.points))
        if unknown:
            raise CourseError(f"{grader.bundle.name} has no units {unknown}")
    entries = select(identities, students)
    missing = [e.name for e in entries if not Path(e.path).exists()]
    if missing:
        raise CourseError(f"submissions no longer where they were graded from: {missing}")
    if entries:
        grader.check_sandbox()
    who = who or getpass.getuser()
    changes = []
    for entry in entries:
        old = read_result(out_dir, entry)
        if only and old is not None:
            fresh = grader.grade(entry.path, None, entry.name, units=only)
            new = merge_units(old, fresh, only)
            write_results(new, out_dir, entry.name)
        else:  # a full regrade (or no stored result to merge into)
            new = grader.grade(entry.path, out_dir, entry.name)
        change = Change(
            entry,
            ",".join(sorted(only)) if only else "all units",
            _unit_scores(old, only),
            _unit_scores(new, only),
            None if old is None else float(old["score"]),
            float(new["score"]),
        )
        append_log(out_dir, change, who, reason, now)
        changes.append(change)
    refresh(course, out_dir, now=now)
    return changes


def append_log(
    out_dir: Path, change: Change, who: str, reason: str, now: dt.datetime | None = None
) -> Path:
    path = class_dir(out_dir) / LOG
    new_file = not path.is_file()
    when = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(LOG_COLUMNS)
        writer.writerow(
            [
                when,
                who,
                " ".join(change.entry.students) or "(unmatched)",
                change.entry.name,
                change.scope,
                _scores(change.old_units),
                _scores(change.new_units),
                "" if change.old_score is None else f"{change.old_score:g}",
                f"{change.new_score:g}",
                reason,
            ]
        )
    return path


def _scores(units: dict[str, float]) -> str:
    return " ".join(f"{unit}={score:g}" for unit, score in units.items())
