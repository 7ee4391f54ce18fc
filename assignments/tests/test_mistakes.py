"""Realistic mistakes (``assignments/hwN/mistakes.toml``, ``autograder/authoring/mistakes.py``).

Every catalogue applies to its reference-filled release (each ``find`` occurs exactly
``count`` times in an accepted file) and names real grading units; the mistakes marked
``fast`` are graded like a submission (hidden probes and public tests) and none escapes.
The full catalogues: ``python -m autograder.authoring.mistakes``.
"""

from __future__ import annotations

import pytest

from autograder.authoring.assignment import homeworks, load
from autograder.authoring.mistakes import apply_mistake, load_catalogue, run_catalogue
from autograder.authoring.release import render_release

CATALOGUED = [hw for hw in homeworks() if load_catalogue(hw)]
AT_LEAST_TEN = ("hw0", "hw1", "hw2")  # issue #13; the other catalogues set their own bar


@pytest.mark.parametrize("hw", CATALOGUED)
def test_catalogue_applies_to_the_reference(hw):
    assignment = load(hw)
    reference = render_release(assignment, fill=True)
    mistakes = load_catalogue(hw)
    for mistake in mistakes:
        changed = apply_mistake(reference, mistake, assignment.accept)
        assert changed[mistake.file] != reference[mistake.file], mistake.id
        assert mistake.costs, f"{hw}/{mistake.id} costs no unit"
        unknown = [unit for unit in mistake.costs if unit not in assignment.points]
        assert not unknown, f"{hw}/{mistake.id}: no grading units {unknown}"
        assert mistake.why.strip(), f"{hw}/{mistake.id} says not why"
    if hw in AT_LEAST_TEN:
        assert len(mistakes) >= 10, f"{hw}: {len(mistakes)} mistakes, at least 10 expected"
        assert any(m.fast for m in mistakes), f"{hw}: mark one or two mistakes fast = true"


CPP_HOMEWORKS = ("hw3", "hw4", "hw4_extra")


@pytest.mark.parametrize(
    "hw",
    # hw1's run in make test (about 40 s); hw0's and hw2's are slow; the C++ homeworks compile
    # the release for every mistake: minutes each (make test-long).
    [
        pytest.param("hw0", marks=pytest.mark.slow),
        "hw1",
        pytest.param("hw2", marks=pytest.mark.slow),
        *(pytest.param(hw, marks=[pytest.mark.slow, pytest.mark.long]) for hw in CPP_HOMEWORKS),
    ],
)
def test_fast_mistakes_are_caught(hw):
    results = run_catalogue(hw, fast=True, log=lambda message: None)
    assert results, f"{hw} has no mistake marked fast"
    escaped = {r.mistake.id: r.escaped for r in results if r.escaped}
    assert not escaped, f"{hw}: mistakes that escape grading: {escaped}"
