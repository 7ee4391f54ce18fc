"""One real class of hw1, end to end and cheaply (four submissions made from the releases):
identities from file names and a manifest, per-unit visibility in results.json and in
feedback.txt, lateness in the class gradebook, and a one-unit regrade of the whole class
that leaves every other unit as it was. The only course test that grades for real."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from autograder.authoring.bundle import with_visibility
from autograder.course.classes import grade_class
from autograder.course.regrade import regrade
from autograder.engine.grading import Grader
from autograder.engine.sandbox import local_sandbox
from autograder.tests.conftest import make_submission
from autograder.tests.course_fakes import write_course

pytestmark = pytest.mark.hw1

REFERENCE = ("needle/ops/ops_mathematic.py", "needle/autograd.py", "apps/simple_ml.py")
POLICY = """\
[homeworks.hw1]
due = 2025-09-19T23:59:00Z
late_penalty = 10

[homeworks.hw1.visibility]
backward = "after_due_date"
nn_epoch_ndl = "hidden"
"""
BEFORE_DUE = dt.datetime(2025, 9, 19, 12, 0, tzinfo=dt.timezone.utc)


def test_a_class_graded_with_identities_visibility_lateness_and_a_unit_regrade(hw1, tmp_path):
    course = write_course(tmp_path / "course", POLICY)
    assert with_visibility(hw1.bundle, {"forward": "visible"}) is hw1.bundle  # default: same
    bundle = with_visibility(hw1.bundle, course.policy("hw1").visibility)
    assert bundle.root != hw1.bundle.root and bundle.key != hw1.bundle.key
    assert hw1.bundle.visibility == {} and bundle.reference_key == hw1.bundle.reference_key

    subs = tmp_path / "subs"
    paths = [
        make_submission(subs / "s1_hw1", hw1, REFERENCE),  # Ann: id in the name
        make_submission(subs / "bode", hw1),  # Ben (login), blank release, on time
        make_submission(subs / "upload-7", hw1, REFERENCE),  # Ben again, by the manifest, late
        make_submission(subs / "stranger", hw1),  # nobody's
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "submission,student,submitted_at\n"
        "s1_hw1,,2025-09-19T20:00:00Z\n"
        "bode,,2025-09-18T10:00:00Z\n"
        "upload-7,s2,2025-09-21T01:00:00Z\n"
    )
    out = tmp_path / "out"
    with Grader(bundle, local_sandbox(), variant=0) as grader:
        identities = grade_class(
            course, grader, paths, out, manifest=manifest, jobs=2, now=BEFORE_DUE, progress=False
        )
        assert [(e.name, e.students) for e in identities.entries] == [
            ("s1_hw1", ["s1"]),
            ("bode", ["s2"]),
            ("upload-7", ["s2"]),
            ("stranger", []),
        ]
        ann = json.loads((out / "s1_hw1" / "results.json").read_text())
        shown = {t["name"]: t["visibility"] for t in ann["tests"]}
        assert shown == {
            "forward": "visible",
            "backward": "after_due_date",
            "topo_sort": "visible",
            "compute_gradient": "visible",
            "softmax_loss_ndl": "visible",
            "nn_epoch_ndl": "hidden",
        }
        assert ann["score"] == ann["max_score"] == 100.0
        feedback = (out / "s1_hw1" / "feedback.txt").read_text()
        assert "== backward: shown after the due date" in feedback
        assert "== nn_epoch_ndl: not shown to students" in feedback
        assert "total not shown yet" in feedback and "== forward: 10 / 10" in feedback

        with open(out / "_class" / "gradebook.csv") as handle:
            rows = {r["student_id"]: r for r in csv.DictReader(handle)}
        assert rows["s1"]["final_score"] == "100.0" and rows["s1"]["status"] == "submitted"
        ben = rows["s2"]
        assert ben["submission"] == "upload-7" and ben["other_submissions"] == "bode"
        assert (ben["raw_score"], ben["penalty_percent"], ben["final_score"]) == (
            "100.0",
            "20.0",
            "80.0",
        )
        assert rows["s3"]["status"] == "missing"
        page = (out / "_class" / "report.html").read_text()
        assert "stranger" in page and "matched to no student (1)" in page

        before = {
            name: json.loads((out / name / "results.json").read_text())
            for name in ("s1_hw1", "bode", "upload-7", "stranger")
        }
        changes = regrade(course, grader, out, only=["topo_sort"], who="ta", now=BEFORE_DUE)
    assert len(changes) == 4
    for name, old in before.items():
        new = json.loads((out / name / "results.json").read_text())
        for old_test, new_test in zip(old["tests"], new["tests"]):
            if old_test["name"] != "topo_sort":
                assert new_test == old_test
        assert new["score"] == old["score"]  # the same code scores the same
        assert new["extra_data"]["regrades"][0]["units"] == ["topo_sort"]
    with open(out / "_class" / "regrades.csv") as handle:
        log = list(csv.DictReader(handle))
    assert [r["submission"] for r in log] == ["s1_hw1", "bode", "upload-7", "stranger"]
    assert log[0]["old_units"] == log[0]["new_units"] == "topo_sort=20"
    assert log[1]["old_units"] == "topo_sort=0"
