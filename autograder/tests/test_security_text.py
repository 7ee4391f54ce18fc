"""Text made safe at the boundary, and feedback that does not leak (docs/feedback-policy.md).
No sandbox needed: answers and results are built by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from autograder.engine.answers import (
    ErrorAnswer,
    NDArrayAnswer,
    Tolerance,
    compare,
    safe_name,
    safe_text,
)
from autograder.engine.batch import unique_names
from autograder.engine.report import write_gradebook
from autograder.engine.results import Scrubber, explain_error, readable_feedback

TOL = Tolerance()
PROBE_LINE = "return _gradients(ops.divide_scalar, [a], seed=1234)"


def test_terminal_escapes_and_control_characters_are_stripped():
    forged = "\x1b[2J\x1b[Hhw1: 100 / 100\r\x1b]0;title\x07ok\x9b31m\x00\x7f\u202e\tend\nx"
    clean = safe_text(forged, 500)
    assert clean == "hw1: 100 / 100ok\tend\nx"
    assert safe_name("a\nb\tc\x1b[1m", 100) == "a b c"
    assert len(safe_text("y" * 10_000, 100)) <= 100


def test_the_scrubber_hides_any_twenty_character_run_of_the_probe_module(tmp_path):
    scrub = Scrubber([tmp_path], {PROBE_LINE})
    assert "divide_scalar, [a], s" not in scrub(f"x {PROBE_LINE[5:40]} y")
    assert scrub("short ops.divide") == "short ops.divide"  # under 20 characters: kept
    assert "\x1b" not in scrub("\x1b[2Jhello")


def test_explain_error_shows_only_checked_type_names_and_real_workspace_files(tmp_path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "simple_ml.py").write_text("x = 1\nraise ValueError('mine')\n")

    class Local:
        remaps_paths = False

    scrub = Scrubber([], {PROBE_LINE})
    secret = ErrorAnswer(
        "ValueError",
        PROBE_LINE,
        (
            (f"{tmp_path}/{PROBE_LINE}", 1, PROBE_LINE),
            (f"{tmp_path}/apps/simple_ml.py", 2, "softmax_loss"),
        ),
    )
    text = explain_error(tmp_path, Local(), scrub, secret)  # type: ignore[arg-type]
    assert PROBE_LINE not in text and "gradients(ops.divide" not in text
    assert "apps/simple_ml.py, line 2, in softmax_loss: raise ValueError('mine')" in text
    forged_type = ErrorAnswer(PROBE_LINE, "", ())
    assert "unnamed exception type" in explain_error(tmp_path, Local(), scrub, forged_type)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expected, got",
    [
        (6.6712345, 0.0),
        (NDArrayAnswer(np.array([1.2345678, 2.0])), NDArrayAnswer(np.zeros(2))),
        (NDArrayAnswer(np.array([True, False])), NDArrayAnswer(np.array([False, False]))),
        ("float32", "float64"),
        (ErrorAnswer("SecretError", "", ()), 1.0),
        (ErrorAnswer("SecretError", "", ()), ErrorAnswer("ValueError", "", ())),
        ([1.0, 7.7654321], [1.0, 0.0]),
        ({"k": 9.8765432}, {"k": 0.0}),
    ],
)
def test_compare_never_shows_an_expected_value(expected, got):
    message = compare(expected, got, TOL)
    assert message
    for secret in ("6.67", "1.2345", "True", "float32", "SecretError", "7.765", "9.876"):
        assert secret not in message, message
    assert "largest difference" not in message


def test_gradebook_cells_cannot_be_formulas(tmp_path):
    results = [
        {
            "score": 1.0,
            "max_score": 2.0,
            "tests": [],
            "output": '=HYPERLINK("http://x")\x1b[2J',
            "extra_data": {"submission": "=cmd|'/C calc'!A0", "gradable": False},
        }
    ]
    path = tmp_path / "gradebook.csv"
    write_gradebook(path, results)
    rows = list(csv.reader(path.open()))
    assert rows[1][0].startswith("'=") and "\x1b" not in path.read_text()
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in rows[1])


def test_output_names_are_unique_without_regard_to_case_and_suffixes():
    paths = [Path(p) for p in ("alice.zip", "alice.tar.gz", "alice-2.zip", "ALICE", "Alice-2")]
    names = unique_names(paths)
    folded = [n.casefold() for n in names]
    assert len(set(folded)) == len(names), names
    assert names[0] == "alice" and names[2] != names[1]


def test_feedback_txt_has_no_control_characters():
    results = {
        "score": 0,
        "max_score": 1,
        "output": "\x1b[2Jnote",
        "tests": [{"name": "u", "score": 0, "max_score": 1, "output": "x\r100 / 100\x1b[H"}],
        "extra_data": {"homework": "hw1", "submission": "s"},
    }
    text = readable_feedback(results)
    assert "\x1b" not in text and "\r" not in text
