"""Fixtures of the autograder's tests: hw1's releases, submissions made from them, a grader.

Submissions are assembled from the two releases the release tool renders: the *blank* one
(as students get it) and the *reference-filled* one. A "mixed" submission takes some
accepted files from each, so the points it deserves follow from which grading units depend
on which files (see ``autograder/probes/hw1.py``), not from the grader's own output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autograder.authoring.bundle import Homework
from autograder.engine.grading import Grader
from autograder.engine.sandbox import local_sandbox
from autograder.engine.workspace import write_tree

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def hw1() -> Homework:
    return Homework.load("hw1")


@pytest.fixture(scope="session")
def hw1_grader(hw1, tmp_path_factory):
    """A grader of hw1 in the local sandbox (reference answers cached under build/)."""
    with Grader(hw1.bundle, local_sandbox()) as grader:
        yield grader


@pytest.fixture(scope="session")
def fast_hw1_grader(hw1):
    """The same, with 5-second limits: for submissions that hang on purpose."""
    overrides = {"wall_s": 5.0, "cpu_s": 5}
    with Grader(hw1.bundle, local_sandbox(), limit_overrides=overrides) as grader:
        yield grader


def make_submission(folder: Path, homework: Homework, reference_files=(), extra=None) -> Path:
    """A submission folder: every accepted file from the blank release, except the
    ``reference_files`` (taken from the reference-filled release) and ``extra`` contents."""
    files = {}
    for path in homework.accept:
        source = homework.reference if path in reference_files else homework.blank
        files[path] = source[path]
    files.update(extra or {})
    write_tree(files, folder)
    return folder
