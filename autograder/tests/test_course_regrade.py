"""Regrades in place: one unit across the class changes that unit's row only (every other
unit, and every other submission, byte for byte as it was), the totals and the class
gradebook follow, and each regrade appends who, when, old and new to the log."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
from types import SimpleNamespace

import pytest

from autograder.course.config import CourseError
from autograder.course.identities import Entry
from autograder.course.regrade import regrade
from autograder.tests.course_fakes import POINTS, fake_result, write_class, write_course

NOW = dt.datetime(2025, 10, 1, 12, 0, tzinfo=dt.timezone.utc)


class StubGrader:
    """Stands in for the engine's Grader: 'grades' a submission by giving every unit asked
    for ``new_score`` (and records what it was asked)."""

    def __init__(self, new_score: float):
        self.bundle = SimpleNamespace(name="hw1", points=POINTS)
        self.new_score = new_score
        self.calls: list[tuple[str, object]] = []
        self.wrote: list[str] = []

    def check_sandbox(self):
        pass

    def grade(self, path, out_dir=None, name=None, units=None):
        self.calls.append((name, None if units is None else sorted(units)))
        result = fake_result(name, {u: self.new_score for u in POINTS})
        if units is not None:
            result["tests"] = [t for t in result["tests"] if t["name"] in units]
        if out_dir is not None:
            (out_dir / name / "results.json").write_text(json.dumps(result))
            self.wrote.append(name)
        return result


@pytest.fixture
def graded_class(tmp_path):
    course = write_course(tmp_path / "course")
    subs = tmp_path / "subs"
    subs.mkdir()
    graded = []
    students = (("ann", "s1", 10, 25), ("ben", "s2", 4, 7), ("stray", None, 0, 3))
    for name, student, forward, backward in students:
        (subs / f"{name}.zip").write_bytes(b"")
        entry = Entry(name, str(subs / f"{name}.zip"), [student] if student else [])
        graded.append((entry, forward, backward))
    out = tmp_path / "out"
    write_class(out, graded)
    return course, out


def _stored(out, name):
    return json.loads((out / name / "results.json").read_text())


def test_one_unit_across_the_class_leaves_the_other_units_untouched(graded_class):
    course, out = graded_class
    before = {n: _stored(out, n) for n in ("ann", "ben", "stray")}
    grader = StubGrader(new_score=2.0)
    changes = regrade(course, grader, out, only=["forward"], who="ta1", reason="probe fix", now=NOW)
    assert sorted(grader.calls) == [(n, ["forward"]) for n in ("ann", "ben", "stray")]
    assert grader.wrote == []  # a partial result never overwrites a stored one
    assert len(changes) == 3
    for name, old in before.items():
        new = _stored(out, name)
        assert [t["name"] for t in new["tests"]] == [t["name"] for t in old["tests"]]
        for old_test, new_test in zip(old["tests"], new["tests"]):
            if old_test["name"] == "forward":
                assert new_test["score"] == 2.0
            else:
                assert new_test == old_test
        expected = old["score"] - old["tests"][0]["score"] + 2.0
        assert new["score"] == pytest.approx(expected)
        assert new["extra_data"]["regrades"][0]["units"] == ["forward"]
    with open(out / "_class" / "gradebook.csv") as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert rows["s2"]["forward"] == "2.0" and rows["s2"]["backward"] == "7.0"
    assert rows["s2"]["raw_score"] == "9.0"
    with open(out / "_class" / "regrades.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [(r["student"], r["submission"]) for r in log] == [
        ("s1", "ann"),
        ("s2", "ben"),
        ("(unmatched)", "stray"),
    ]
    ben = log[1]
    assert (ben["who"], ben["scope"]) == ("ta1", "forward")
    assert ben["when"] == "2025-10-01T12:00:00+00:00"
    assert (ben["old_units"], ben["new_units"]) == ("forward=4", "forward=2")
    assert (ben["old_score"], ben["new_score"], ben["reason"]) == ("11", "9", "probe fix")
    assert "Regrades (3)" in (out / "_class" / "report.html").read_text()


def test_one_student_full_regrade_touches_no_one_else(graded_class):
    course, out = graded_class
    others = {n: (out / n / "results.json").read_bytes() for n in ("ann", "stray")}
    grader = StubGrader(new_score=1.0)
    regrade(course, grader, out, students=["s2"], who="prof", now=NOW)
    assert grader.calls == [("ben", None)]
    assert _stored(out, "ben")["score"] == 2.0
    assert {n: (out / n / "results.json").read_bytes() for n in others} == others
    regrade(course, StubGrader(3.0), out, students=["s2"], only=["backward"], who="prof", now=NOW)
    with open(out / "_class" / "regrades.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [(r["scope"], r["old_score"], r["new_score"]) for r in log] == [
        ("all units", "11", "2"),
        ("backward", "2", "4"),
    ]


def test_regrade_refuses_unknown_students_and_units(graded_class):
    course, out = graded_class
    before = copy.deepcopy(_stored(out, "ann"))
    with pytest.raises(CourseError, match="s9"):
        regrade(course, StubGrader(0.0), out, students=["s9"])
    with pytest.raises(CourseError, match="no units"):
        regrade(course, StubGrader(0.0), out, only=["nonsense"])
    assert _stored(out, "ann") == before
