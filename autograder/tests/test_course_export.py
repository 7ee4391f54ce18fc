"""LMS exports, read back the way the import reads them: Canvas's gradebook CSV (a header row
"Student","ID","SIS User ID","SIS Login ID","Section", then one column per assignment; the
"Points Possible" row skipped; students found by ID, else SIS User ID, else SIS Login ID) and
the plain CSV."""

from __future__ import annotations

import csv

from autograder.cli import main
from autograder.course.identities import Entry
from autograder.tests.course_fakes import write_class, write_course

POLICY = """\
[homeworks.hw1]
due = 2025-09-19T23:59:00Z
late_penalty = 50
canvas_column = "HW1 (8812)"
missing = "zero"
"""


def canvas_import(path, column: str) -> dict[str, str]:
    """What Canvas's importer takes from the file: grade cells by student, keyed as it
    matches them (Canvas ID, else SIS User ID, else SIS Login ID)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    at = header.index(column)
    grades = {}
    for row in rows[1:]:
        if row[0].strip() == "Points Possible":
            continue
        assert len(row) == len(header)
        key = row[1] or row[2] or row[3]
        assert key, f"Canvas cannot tell who {row[0]!r} is"
        grades[key] = row[at]
    return grades


def _class(tmp_path):
    course = write_course(tmp_path / "course", POLICY)
    out = tmp_path / "grades"
    ann = Entry("ann", "/s/ann.zip", ["s1"], "file name", "2025-09-19T20:00:00+00:00")
    ben = Entry("ben", "/s/ben.zip", ["s2"], "file name", "2025-09-20T08:00:00+00:00")
    stray = Entry("=cmd", "/s/=cmd.zip")  # unmatched: in no LMS row
    write_class(out, [(ann, 10, 25), (ben, 10, 20), (stray, 1, 1)])
    return course, out


def test_canvas_csv_imports_final_scores_by_student(tmp_path, capsys):
    course, out = _class(tmp_path)
    args = ["export", "hw1", "--canvas", "--course", str(course.path), "--grades", str(out)]
    assert main(args) == 0
    path = out / "_class" / "canvas.csv"
    assert capsys.readouterr().out.strip() == str(path)
    grades = canvas_import(path, "HW1 (8812)")
    # Canvas IDs from the roster; ben's 30 points halved for one day late; missing -> 0
    assert grades == {"501": "35.0", "502": "15.0", "503": "0.0", "504": "0.0"}
    with open(path, newline="") as handle:
        points = list(csv.reader(handle))[1]
    assert points[0].strip() == "Points Possible" and points[5] == "35.0"


def test_plain_csv_has_one_row_per_roster_student(tmp_path):
    course, out = _class(tmp_path)
    target = tmp_path / "plain.csv"
    code = main(
        [
            "export",
            "hw1",
            "--csv",
            "--course",
            str(course.path),
            "--grades",
            str(out),
            "--out",
            str(target),
        ]
    )
    assert code == 0
    with open(target, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student_id"] for r in rows] == ["s1", "s2", "s3", "s4"]
    assert [r["score"] for r in rows] == ["35.0", "15.0", "0.0", "0.0"]
    assert rows[1]["status"] == "late" and rows[2]["status"] == "missing"
    assert rows[0]["email"] == "ann@uni.edu"


def test_missing_blank_leaves_the_lms_cell_empty(tmp_path):
    course, out = _class(tmp_path)
    (tmp_path / "course" / "course.toml").write_text(
        (tmp_path / "course" / "course.toml").read_text().replace('"zero"', '"blank"')
    )
    target = tmp_path / "c.csv"
    args = ["export", "hw1", "--canvas", "--course", str(course.path), "--grades", str(out)]
    assert main([*args, "--out", str(target)]) == 0
    assert canvas_import(target, "HW1 (8812)")["503"] == ""


def test_export_needs_a_course_and_one_format(tmp_path, capsys):
    assert main(["export", "hw1", "--canvas"]) == 2
    assert "needs --course" in capsys.readouterr().err
    assert main(["export", "hw1", "--canvas", "--csv"]) == 2
