"""Batch outputs (gradebook.csv, report.html) from stored results, and the command line's
behaviour on bad input."""

from __future__ import annotations

import csv
import html
import io
import json
import subprocess
import sys

import pytest

from autograder.cli import main, print_score_table
from autograder.engine.report import render_html, rerender, write_gradebook


def fake_result(name: str, scores: dict[str, float], isolated: bool = True, gradable=True):
    points = {"forward": 10.0, "backward": 25.0}
    return {
        "score": sum(scores.values()),
        "max_score": sum(points.values()),
        "output": "" if gradable else "could not be graded: the archive contains a link",
        "tests": [
            {"name": unit, "score": scores[unit], "max_score": points[unit], "output": "<b>x</b>"}
            for unit in points
        ],
        "extra_data": {
            "submission": name,
            "gradable": gradable,
            "sandbox": {"isolated": isolated, "description": "bwrap" if isolated else "plain"},
        },
    }


RESULTS = [
    fake_result("alice", {"forward": 10.0, "backward": 25.0}),
    fake_result("bob", {"forward": 5.0, "backward": 0.0}),
    fake_result("carol", {"forward": 0.0, "backward": 0.0}, gradable=False),
]


def test_gradebook_has_a_row_per_submission_and_a_column_per_unit(tmp_path):
    write_gradebook(tmp_path / "g.csv", RESULTS)
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert [r["submission"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[1]["forward"] == "5.0" and rows[1]["score"] == "5.0"
    assert rows[2]["gradable"] == "no" and "link" in rows[2]["note"]


def test_report_is_self_contained_sortable_with_histogram_and_pass_rates():
    page = render_html(RESULTS, "hw1 grading report")
    assert "<svg" in page and "class='sortable'" in page and "<script>" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no remote assets
    assert "33% (1/3)" in page  # forward: one of three submissions has full marks
    assert "NOT ISOLATED" not in page
    assert "<b>x</b>" not in page and html.escape("<b>x</b>") in page  # feedback is escaped
    flagged = render_html(
        [*RESULTS, fake_result("dave", {"forward": 0, "backward": 0}, False)], "t"
    )
    assert "NOT ISOLATED" in flagged


def test_report_command_rerenders_from_stored_results(tmp_path):
    for result in RESULTS:
        folder = tmp_path / result["extra_data"]["submission"]
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(result))
    assert rerender(tmp_path) == tmp_path / "report.html"
    assert "bob" in (tmp_path / "report.html").read_text()
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


def test_score_table_lists_every_unit():
    stream = io.StringIO()
    print_score_table(RESULTS, stream)
    lines = stream.getvalue().splitlines()
    assert "forward" in lines[0] and "backward" in lines[0]
    assert lines[3].split()[:2] == ["bob", "5/35"]


def test_unknown_homework_is_a_usage_error():
    finished = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "hw9", "x"], capture_output=True, text=True
    )
    assert finished.returncode == 2 and "hw9" in finished.stderr


@pytest.mark.hw1
def test_a_missing_submission_still_gets_a_result(hw1_grader, tmp_path):
    results = hw1_grader.grade_batch(
        [tmp_path / "does-not-exist.zip"], tmp_path / "out", progress=False
    )
    assert results[0]["score"] == 0
    assert "could not be graded" in results[0]["output"]
    assert (tmp_path / "out" / "does-not-exist" / "results.json").is_file()


@pytest.mark.hw1
def test_check_runs_the_public_tests_in_the_sandbox(tmp_path):
    from autograder.authoring.release import build_release
    from autograder.engine.check import run_check

    reference = build_release("hw1", tmp_path / "filled", fill=True)
    blank = build_release("hw1", tmp_path / "blank", archive=False)
    assert run_check("hw1", reference, k="topo_sort") == 0
    assert run_check("hw1", blank, k="topo_sort") != 0
    assert run_check("hw2", blank) == 2  # a hw1 folder is not a hw2 release
