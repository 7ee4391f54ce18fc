"""Identities: submissions matched to the roster by file name, Gradescope metadata or a
manifest; unmatched, ambiguous and duplicate submissions reported, none dropped."""

from __future__ import annotations

import json
import zipfile

import pytest

from autograder.course.config import CourseError, load_course
from autograder.course.gradebook import class_rows
from autograder.course.identities import Entry, Identities, match_submissions, read_manifest
from autograder.engine.batch import unique_names
from autograder.engine.paths import REPO_ROOT
from autograder.tests.course_fakes import write_class, write_course


def _submissions(folder, names):
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        if name.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("needle/autograd.py", "x = 1\n")
        else:
            (path / "needle").mkdir(parents=True)
            (path / "needle" / "autograd.py").write_text("x = 1\n")
        paths.append(path)
    return list(zip(paths, unique_names(paths)))


def test_file_names_match_ids_emails_logins_and_patterns(tmp_path):
    course = write_course(tmp_path / "course")
    names = [
        "s2.zip",  # the id
        "hw1_cat.poe.zip",  # an email local part, as a word of the name
        "annie-final",  # a roster pattern (annie*)
        "DROY_hw1.zip",  # the login, case ignored
        "mystery.zip",  # nobody
        "ben_and_dee.zip",  # two students' names: ambiguous
    ]
    identities = match_submissions(course, "hw1", _submissions(tmp_path / "subs", names))
    found = {e.name: (e.students, e.how) for e in identities.entries}
    assert found["s2"] == (["s2"], "file name")
    assert found["hw1_cat.poe"] == (["s3"], "file name")
    assert found["annie-final"] == (["s1"], "file name")
    assert found["DROY_hw1"] == (["s4"], "file name")
    assert found["mystery"] == ([], "")
    assert found["ben_and_dee"] == ([], "")
    unmatched = {e.name: e.candidates for e in identities.unmatched}
    assert unmatched == {"mystery": [], "ben_and_dee": ["s2", "s4"]}


def test_gradescope_metadata_in_a_folder_or_zip_names_the_students_and_time(tmp_path):
    course = write_course(tmp_path / "course")
    metadata = {
        "created_at": "2025-09-20T10:00:00.123456-04:00",
        "users": [
            {"name": "Ann", "sid": "s1", "email": "x@y"},
            {"name": "Ben", "sid": "", "email": "BEN@uni.edu"},
        ],
    }
    subs = _submissions(tmp_path / "subs", ["submission_1", "submission_2.zip"])
    (subs[0][0] / "submission_metadata.json").write_text(json.dumps(metadata))
    with zipfile.ZipFile(subs[1][0], "a") as archive:
        archive.writestr("submission_metadata.json", json.dumps({"users": [{"sid": "s3"}]}))
    identities = match_submissions(course, "hw1", subs)
    group, single = identities.entries
    assert group.students == ["s1", "s2"] and group.how == "gradescope metadata"
    assert group.submitted_at == "2025-09-20T10:00:00.123456-04:00"
    assert single.students == ["s3"] and single.submitted_at is None


def test_a_manifest_wins_over_the_file_name_and_gives_times(tmp_path):
    course = write_course(tmp_path / "course")
    subs = _submissions(tmp_path / "subs", ["s2.zip", "upload-77.zip"])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "submission,student,submitted_at\n"
        "s2.zip,s4,2025-09-20T01:00:00+00:00\n"
        "upload-77.zip,,2025-09-21T00:00:00\n"
        "gone.zip,s1,\n"
    )
    identities = match_submissions(course, "hw1", subs, read_manifest(manifest, course))
    first, second = identities.entries
    assert (first.students, first.how, first.time_from) == (["s4"], "manifest", "manifest")
    assert second.students == [] and second.submitted_at == "2025-09-21T00:00:00+00:00"
    assert any("gone.zip" in w for w in identities.warnings)
    manifest.write_text("submission,student\nx.zip,nobody\n")
    with pytest.raises(CourseError, match="not on the roster"):
        read_manifest(manifest, course)


def test_duplicates_keep_every_submission_and_the_latest_counts(tmp_path):
    course = write_course(tmp_path / "course")
    early, late = "2025-09-19T10:00:00+00:00", "2025-09-19T12:00:00+00:00"
    graded = [
        (Entry("s1", "/subs/s1.zip", ["s1"], "file name", early), 10, 25),
        (Entry("s1-2", "/subs/s1-2.zip", ["s1"], "file name", late), 10, 5),
        (Entry("s2", "/subs/s2.zip", ["s2"], "file name"), 0, 0),
        (Entry("s2-2", "/subs/s2-2.zip", ["s2"], "file name", late), 3, 0),
        (Entry("nobody", "/subs/nobody.zip"), 1, 1),
    ]
    out = tmp_path / "out"
    write_class(out, graded)
    identities = Identities.load(out)
    names = [entry.name for entry, _, _ in graded]
    assert [e.name for e in identities.entries] == names  # nothing dropped
    assert set(identities.duplicates()) == {"s1", "s2"}
    rows = {r.student.id: r for r in class_rows(course, identities, out)}
    assert rows["s1"].entry.name == "s1-2" and rows["s1"].final == 15.0  # latest, not best
    assert [e.name for e in rows["s1"].others] == ["s1"]
    assert rows["s2"].final is None and "unresolved" in rows["s2"].status  # one time unknown
    assert rows["s3"].status == "missing" and rows["s3"].entry is None
    assert [r.student.id for r in class_rows(course, identities, out)] == ["s1", "s2", "s3", "s4"]


def test_roster_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(CourseError, match=r"roster.csv:3: student id 's1' appears twice"):
        write_course(tmp_path / "a", roster="id,name\ns1,A\ns1,B\n")
    with pytest.raises(CourseError, match="not on the roster"):
        table = "[homeworks.hw1]\ndue = 2025-01-01T00:00:00Z\nextensions = {x9 = '1d'}\n"
        write_course(tmp_path / "b", table)


def test_the_documented_example_loads():
    course = load_course(REPO_ROOT / "docs" / "course" / "course.example.toml")
    assert len(course.students) == 4 and course.policy("hw1").visibility
    assert course.policy("hw1").due_for("s1002") > course.policy("hw1").due_for("s1001")
