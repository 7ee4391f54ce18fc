"""A class: ``course.toml`` and the roster CSV it names, loaded into dataclasses.

Schema (documented example: ``docs/course/course.example.toml``)::

    [course]
    name = "Deep Learning Systems, Fall 2025"
    roster = "roster.csv"              # relative to course.toml
    timezone = "America/New_York"      # for dates written without an offset (default UTC)

    [homeworks.hw1]
    due = 2025-09-19T23:59:00-04:00    # a TOML date-time (with or without offset)
    late_penalty = 10                  # percent deducted per started period late (default 0)
    late_period = "day"                # "day" or "hour"
    max_late = "3d"                    # later than this after the due date: final score 0
    grace = "15m"                      # lateness below this is not lateness (default none)
    penalty_of = "score"               # percent of the points earned ("score") or of the
                                       # points available ("max_score")
    canvas_column = "HW1 (123456)"     # the Canvas gradebook column (default: "hw1")
    missing = "blank"                  # LMS cell of a student with no submission: "blank"
                                       # (left alone on import) or "zero"

    [homeworks.hw1.extensions]         # student id → a new due date, or a duration added
    s1002 = "2d"
    s1003 = 2025-09-22T12:00:00-04:00

    [homeworks.hw1.visibility]         # unit → visible | after_due_date | hidden |
    nn_epoch_ndl = "after_due_date"    # after_published (over assignment.toml's)

Roster CSV: a header row with ``id`` and ``name`` (required) and any of ``email``, ``login``
(Canvas's SIS Login ID), ``canvas_id`` (Canvas's numeric user ID), ``section`` and ``files``
(file-name patterns a student's submissions may carry, ``;``-separated shell globs).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder.engine.bundle import VISIBILITIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

UTC = dt.timezone.utc
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0}
PERIODS = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}


class CourseError(ValueError):
    """A course.toml or roster that does not follow the schema; the message names the file."""


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    email: str = ""
    login: str = ""
    canvas_id: str = ""
    section: str = ""
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lateness:
    """How late one submission is and what it costs."""

    due: dt.datetime | None  # the student's due date (extension applied)
    late_by: dt.timedelta  # zero when on time or when the time is unknown
    penalty_percent: float  # of the basis (score or max_score)
    too_late: bool  # past max_late: final score 0
    extended: bool


@dataclass(frozen=True)
class Policy:
    """One homework's deadline, late policy, extensions and visibility."""

    hw: str
    due: dt.datetime | None = None
    late_penalty: float = 0.0
    late_period: str = "day"
    max_late: dt.timedelta | None = None
    grace: dt.timedelta = dt.timedelta(0)
    penalty_of: str = "score"
    canvas_column: str = ""
    missing: str = "blank"
    extensions: dict[str, dt.datetime] = field(default_factory=dict)
    visibility: dict[str, str] = field(default_factory=dict)

    def due_for(self, student_id: str | None) -> dt.datetime | None:
        return self.extensions.get(student_id or "", self.due)

    def lateness(self, student_id: str | None, submitted: dt.datetime | None) -> Lateness:
        """The lateness of a submission made at ``submitted`` (None: unknown, never late)."""
        due = self.due_for(student_id)
        extended = student_id in self.extensions
        if due is None or submitted is None or submitted <= due + self.grace:
            return Lateness(due, dt.timedelta(0), 0.0, False, extended)
        late_by = submitted - due
        if self.max_late is not None and late_by > self.max_late:
            return Lateness(due, late_by, 100.0, True, extended)
        periods = -(-late_by // PERIODS[self.late_period])  # started periods: ceiling
        percent = min(100.0, periods * self.late_penalty)
        return Lateness(due, late_by, percent, False, extended)

    def final_score(self, raw: float, max_score: float, lateness: Lateness) -> float:
        """The score after the late penalty, never below zero."""
        if lateness.too_late:
            return 0.0
        basis = raw if self.penalty_of == "score" else max_score
        return round(max(0.0, raw - basis * lateness.penalty_percent / 100.0), 4)

    @property
    def column(self) -> str:
        return self.canvas_column or self.hw


@dataclass(frozen=True)
class Course:
    name: str
    students: tuple[Student, ...]
    policies: dict[str, Policy]
    timezone: dt.tzinfo = UTC
    path: Path | None = None

    def policy(self, hw: str) -> Policy:
        """The homework's policy (no deadline, no penalty when course.toml does not name it)."""
        return self.policies.get(hw, Policy(hw))

    def student(self, student_id: str) -> Student | None:
        return next((s for s in self.students if s.id == student_id), None)

    def parse_time(self, text: str) -> dt.datetime:
        """An ISO 8601 time; one without an offset is in the course's time zone."""
        return aware(dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")), self.timezone)


def aware(moment: dt.datetime | dt.date, zone: dt.tzinfo) -> dt.datetime:
    if not isinstance(moment, dt.datetime):  # a bare date: the end of that day
        moment = dt.datetime.combine(moment, dt.time(23, 59, 59))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def duration(value, where: str) -> dt.timedelta:
    """``"3d"``, ``"12h"``, ``"30m"``, or a number of days."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return dt.timedelta(days=value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise CourseError(f"{where}: {value!r} is not a duration like '3d', '12h' or '30m'")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def load_course(path: str | Path) -> Course:
    """Read ``course.toml`` and its roster; raise ``CourseError`` naming what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CourseError(f"{path}: {error}") from None
    head = data.get("course", {})
    if not isinstance(head, dict) or "roster" not in head:
        raise CourseError(f"{path}: [course] needs roster = 'roster.csv'")
    zone = _zone(head.get("timezone", "UTC"), path)
    students = load_roster(path.parent / head["roster"])
    ids = {s.id for s in students}
    policies = {}
    for hw, table in data.get("homeworks", {}).items():
        if not isinstance(table, dict):
            raise CourseError(f"{path}: [homeworks.{hw}] must be a table")
        policies[hw] = _policy(hw, table, zone, ids, f"{path}: [homeworks.{hw}]")
    return Course(str(head.get("name", path.stem)), students, policies, zone, path)


def _zone(name: str, path: Path) -> dt.tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:
        raise CourseError(
            f"{path}: unknown timezone {name!r}; write dates with an offset instead"
        ) from None


def _policy(hw: str, table: dict, zone: dt.tzinfo, ids: set[str], where: str) -> Policy:
    known = {
        "due",
        "late_penalty",
        "late_period",
        "max_late",
        "grace",
        "penalty_of",
        "canvas_column",
        "missing",
        "extensions",
        "visibility",
    }
    odd = sorted(set(table) - known)
    if odd:
        raise CourseError(f"{where}: unknown keys {odd}")
    due = table.get("due")
    if due is not None and not isinstance(due, (dt.date, dt.datetime)):
        raise CourseError(f"{where}: due must be a TOML date-time, e.g. 2025-09-19T23:59:00-04:00")
    due = aware(due, zone) if due is not None else None
    penalty = table.get("late_penalty", 0)
    if not isinstance(penalty, (int, float)) or not 0 <= penalty <= 100:
        raise CourseError(f"{where}: late_penalty is a percent, 0..100")
    choices = {
        "late_period": PERIODS,
        "penalty_of": ("score", "max_score"),
        "missing": ("blank", "zero"),
    }
    for key, allowed in choices.items():
        if key in table and table[key] not in allowed:
            raise CourseError(f"{where}: {key} must be one of {', '.join(allowed)}")
    extensions = {}
    for student, value in table.get("extensions", {}).items():
        if student not in ids:
            raise CourseError(f"{where}: extension for {student!r}, who is not on the roster")
        if due is None:
            raise CourseError(f"{where}: extensions need a due date")
        if isinstance(value, (dt.date, dt.datetime)):
            extensions[student] = aware(value, zone)
        else:
            extensions[student] = due + duration(value, f"{where} extensions.{student}")
    visibility = dict(table.get("visibility", {}))
    odd_values = {u: v for u, v in visibility.items() if v not in VISIBILITIES}
    if odd_values:
        raise CourseError(f"{where}: visibility must be one of {', '.join(VISIBILITIES)}")
    return Policy(
        hw=hw,
        due=due,
        late_penalty=float(penalty),
        late_period=table.get("late_period", "day"),
        max_late=duration(table["max_late"], f"{where} max_late") if "max_late" in table else None,
        grace=duration(table.get("grace", "0m"), f"{where} grace"),
        penalty_of=table.get("penalty_of", "score"),
        canvas_column=str(table.get("canvas_column", "")),
        missing=table.get("missing", "blank"),
        extensions=extensions,
        visibility=visibility,
    )


def load_roster(path: Path) -> tuple[Student, ...]:
    """The students of a roster CSV, in its order; ids must be unique."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise CourseError(f"{path}: {error}") from None
    students: list[Student] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get("id") or not row.get("name"):
            raise CourseError(f"{path}:{number}: every student needs an id and a name")
        if row["id"] in seen:
            raise CourseError(f"{path}:{number}: student id {row['id']!r} appears twice")
        seen.add(row["id"])
        patterns = tuple(p.strip() for p in row.get("files", "").split(";") if p.strip())
        students.append(
            Student(
                id=row["id"],
                name=row["name"],
                email=row.get("email", ""),
                login=row.get("login", ""),
                canvas_id=row.get("canvas_id", ""),
                section=row.get("section", ""),
                patterns=patterns,
            )
        )
    return tuple(students)
