"""Deadlines: late penalties per day or hour (started periods), grace, maximum lateness,
penalties of the score or of the points available, per-student extensions, and the class
gradebook's raw score, lateness, penalty and final score."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from autograder.course.classes import refresh
from autograder.course.identities import Entry
from autograder.tests.course_fakes import write_class, write_course

DUE = dt.datetime(2025, 9, 19, 23, 59, tzinfo=dt.timezone.utc)
POLICY = """\
[homeworks.hw1]
due = 2025-09-19T23:59:00Z
late_penalty = 10
late_period = "day"
max_late = "3d"
grace = "10m"

[homeworks.hw1.extensions]
s2 = "2d"
s3 = 2025-09-25T12:00:00Z
"""


@pytest.fixture
def policy(tmp_path):
    return write_course(tmp_path, POLICY).policy("hw1")


@pytest.mark.parametrize(
    "late_by, percent",
    [
        (dt.timedelta(minutes=-5), 0),  # early
        (dt.timedelta(minutes=9), 0),  # within the grace
        (dt.timedelta(minutes=11), 10),  # a started day
        (dt.timedelta(hours=24), 10),  # exactly one day
        (dt.timedelta(hours=24, seconds=1), 20),  # into the second day
        (dt.timedelta(days=2, hours=23), 30),
    ],
)
def test_penalty_per_started_day(policy, late_by, percent):
    late = policy.lateness("s1", DUE + late_by)
    assert late.penalty_percent == percent and not late.too_late
    assert policy.final_score(30.0, 40.0, late) == pytest.approx(30.0 * (1 - percent / 100))


def test_past_the_maximum_lateness_scores_zero(policy):
    late = policy.lateness("s1", DUE + dt.timedelta(days=3, minutes=1))
    assert late.too_late and policy.final_score(40.0, 40.0, late) == 0.0


def test_extensions_move_the_due_date_by_a_duration_or_to_a_date(policy):
    two_days_late = DUE + dt.timedelta(days=2)
    assert policy.lateness("s1", two_days_late).penalty_percent == 20
    on_time = policy.lateness("s2", two_days_late)  # "2d": due moves to the 21st, 23:59
    assert on_time.penalty_percent == 0 and on_time.extended
    assert on_time.due == DUE + dt.timedelta(days=2)
    late = policy.lateness("s3", dt.datetime(2025, 9, 25, 13, 0, tzinfo=dt.timezone.utc))
    assert late.due == dt.datetime(2025, 9, 25, 12, 0, tzinfo=dt.timezone.utc)
    assert late.penalty_percent == 10


def test_unknown_time_is_never_late(policy):
    assert policy.lateness("s1", None).penalty_percent == 0


def test_hourly_penalty_of_the_points_available(tmp_path):
    course = write_course(
        tmp_path,
        """\
        [homeworks.hw1]
        due = 2025-09-19T18:00:00-04:00
        late_penalty = 5
        late_period = "hour"
        penalty_of = "max_score"
        """,
    )
    policy = course.policy("hw1")
    late = policy.lateness("s1", dt.datetime(2025, 9, 19, 22, 30, tzinfo=dt.timezone.utc))
    assert late.late_by == dt.timedelta(minutes=30)
    assert late.penalty_percent == 5
    late = policy.lateness("s1", dt.datetime(2025, 9, 20, 1, 0, tzinfo=dt.timezone.utc))
    assert late.penalty_percent == 15  # three hours late
    assert policy.final_score(10.0, 40.0, late) == 4.0  # 10 - 15% of 40
    assert policy.final_score(4.0, 40.0, late) == 0.0  # never below zero


def test_the_class_gradebook_has_raw_lateness_penalty_and_final(tmp_path):
    course = write_course(tmp_path / "course", POLICY)
    out = tmp_path / "out"
    one_day = Entry("s1", "/s/s1.zip", ["s1"], "file name", "2025-09-20T05:00:00+00:00")
    extended = Entry("s2", "/s/s2.zip", ["s2"], "file name", "2025-09-21T05:00:00+00:00")
    no_time = Entry("s3", "/s/s3.zip", ["s3"], "file name")
    write_class(out, [(one_day, 10, 20), (extended, 10, 25), (no_time, 5, 5)])
    refresh(course, out)
    with open(out / "_class" / "gradebook.csv") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["s1", "s2", "s3", "s4"]
    ann = rows["s1"]
    assert (ann["raw_score"], ann["late_hours"], ann["penalty_percent"]) == ("30.0", "5.02", "10.0")
    assert ann["final_score"] == "27.0" and ann["status"] == "late"
    assert ann["cuda_ops"] == "not graded" and ann["forward"] == "10.0"
    assert rows["s2"]["final_score"] == "35.0" and rows["s2"]["late_hours"] == "0.0"
    assert rows["s2"]["due"].startswith("2025-09-21T23:59")
    assert "time unknown" in rows["s3"]["status"] and rows["s3"]["final_score"] == "10.0"
    assert rows["s4"]["status"] == "missing" and rows["s4"]["final_score"] == ""
    page = (out / "_class" / "report.html").read_text()
    assert page.index("Ann Lee") < page.index("Ben Ode") < page.index("Cat Poe")
    assert "(extension)" in page and ">n/g<" in page and ">10%<" in page
