"""Mutation coverage: every region of every homework whose regions are Python or hw0's small
C++ file, stubbed alone, is caught.

Quick mode (each public-test run stops at its first failure; hidden probes only for regions
that escape the public tests). ``python -m autograder.authoring.coverage`` writes the full report.
Measured at about 7 minutes of CPU for hw0, hw1, hw2, hw4 and hw4_extra (128 regions; two
run at a time). hw3's 71 C++/CUDA regions each need a rebuild of the backend (and a GPU for
the CUDA ones), so hw3 is covered by ``python -m autograder.authoring.coverage hw3``, not here.
"""

from __future__ import annotations

import pytest

from autograder.authoring.coverage import cover_homework, render_report


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["hw0", "hw1", "hw2", "hw4", "hw4_extra"])
def test_every_region_is_caught(hw, tmp_path):
    mutants, probes = cover_homework(hw, tmp_path, quick=True, jobs=2, log=lambda message: None)
    report = render_report({hw: (mutants, probes)}, quick=True)
    uncaught = [m.label for m in mutants if not m.caught_by and not m.not_run]
    assert mutants, f"{hw} has no regions"
    assert not uncaught, f"regions no test catches: {uncaught}\n{report}"
