"""Mutation coverage: every region of hw0 and hw1, stubbed alone, is caught.

Quick mode (each public-test run stops at its first failure; hidden probes only for regions
that escape the public tests). ``python -m autograder.coverage`` writes the full report.
Measured at about 1.5 minutes of CPU (hw0 compiles its C++ twice; hw1 has 31 regions), so it
runs with the slow tests (``make test-slow``).
"""

from __future__ import annotations

import pytest

from autograder.coverage import cover_homework, render_report


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["hw0", "hw1"])
def test_every_region_is_caught(hw, tmp_path):
    mutants, probes = cover_homework(hw, tmp_path, quick=True, jobs=2, log=lambda message: None)
    report = render_report({hw: (mutants, probes)}, quick=True)
    uncaught = [m.label for m in mutants if not m.caught_by]
    assert mutants, f"{hw} has no regions"
    assert not uncaught, f"regions no test catches: {uncaught}\n{report}"
