"""Per-unit visibility: Gradescope's ``visibility`` of each results.json row, and the local
feedback.txt showing a unit only in the phases its visibility allows (before the due date
only "visible"; after the student's due date "after_due_date" too; once published
"after_published"; "hidden" never), with the total withheld while anything is."""

from __future__ import annotations

import datetime as dt

import pytest

from autograder.course.classes import refresh, shown_visibilities
from autograder.course.identities import Entry
from autograder.engine.bundle import shown_visibility, visibility_problem
from autograder.engine.results import readable_feedback
from autograder.tests.course_fakes import fake_result, write_class, write_course

VISIBILITY = {"forward": "visible", "backward": "after_due_date", "cuda_ops": "hidden"}
UTC = dt.timezone.utc


def test_feedback_shows_only_the_units_shown_now():
    result = fake_result("ann", {"forward": 7, "backward": 20}, VISIBILITY)
    before = readable_feedback(result)
    assert "feedback of forward for ann" in before and "== forward: 7 / 10" in before
    assert "feedback of backward" not in before and "20 / 25" not in before
    assert "== backward: shown after the due date" in before
    assert "== cuda_ops: not shown to students" in before
    assert "total not shown yet" in before and "27 / 35" not in before
    after = readable_feedback(result, ("visible", "after_due_date"))
    assert "feedback of backward for ann" in after and "feedback of cuda_ops" not in after
    everything = readable_feedback(fake_result("ann", {"forward": 7, "backward": 20}))
    assert "ann: 27 / 35" in everything  # all visible: the total is shown, as before


def test_phases_follow_the_students_due_date_and_publication(tmp_path):
    course = write_course(
        tmp_path,
        '[homeworks.hw1]\ndue = 2025-09-19T23:59:00Z\nextensions = { s2 = "2d" }\n',
    )
    policy = course.policy("hw1")
    day_after = dt.datetime(2025, 9, 20, 12, 0, tzinfo=UTC)
    assert shown_visibilities(policy, ["s1"], day_after) == ("visible", "after_due_date")
    assert shown_visibilities(policy, ["s2"], day_after) == ("visible",)  # extension
    assert shown_visibilities(policy, ["s1", "s2"], day_after) == ("visible",)  # group
    assert "after_published" in shown_visibilities(policy, ["s2"], day_after, published=True)


def test_refresh_rewrites_feedback_for_the_phase(tmp_path):
    course = write_course(
        tmp_path / "course",
        '[homeworks.hw1]\ndue = 2025-09-19T23:59:00Z\nextensions = { s2 = "2d" }\n',
    )
    out = tmp_path / "out"
    graded = [(Entry("ann", "/s/ann", ["s1"]), 1, 2), (Entry("ben", "/s/ben", ["s2"]), 1, 2)]
    write_class(out, graded, VISIBILITY)
    refresh(course, out, now=dt.datetime(2025, 9, 19, 12, 0, tzinfo=UTC))
    for name in ("ann", "ben"):
        assert "feedback of backward" not in (out / name / "feedback.txt").read_text()
    refresh(course, out, now=dt.datetime(2025, 9, 20, 12, 0, tzinfo=UTC))
    assert "feedback of backward for ann" in (out / "ann" / "feedback.txt").read_text()
    assert "feedback of backward" not in (out / "ben" / "feedback.txt").read_text()
    page = (out / "_class" / "report.html").read_text()
    assert "after_due_date" in page and "hidden" in page  # the class report shows them


def test_visibility_tables_are_checked_and_stored_only_when_not_all_visible():
    points = {"forward": 10.0, "backward": 25.0}
    assert visibility_problem("hw1", points, {"forward": "after_due_date"}) is None
    assert "not graded" in visibility_problem("hw1", points, {"nope": "hidden"})
    assert "must be one of" in visibility_problem("hw1", points, {"forward": "secret"})
    assert shown_visibility({"forward": "visible", "backward": "hidden"}) == {"backward": "hidden"}
    assert shown_visibility({"forward": "visible"}) == {}


def test_assignment_toml_visibility_is_validated(tmp_path):
    from autograder.authoring.assignment import AssignmentError, load
    from autograder.engine.paths import REPO_ROOT

    root = tmp_path / "repo"
    (root / "assignments" / "hw1").mkdir(parents=True)
    text = (REPO_ROOT / "assignments" / "hw1" / "assignment.toml").read_text()
    toml = root / "assignments" / "hw1" / "assignment.toml"
    toml.write_text(text + '\n[grading.visibility]\nforward = "after_due_date"\n')
    assert load("hw1", root).visibility == {"forward": "after_due_date"}
    toml.write_text(text + '\n[grading.visibility]\nforward = "later"\n')
    with pytest.raises(AssignmentError, match="visibility must be one of"):
        load("hw1", root)
