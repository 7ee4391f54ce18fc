"""The course server end to end with the real grading cluster (``GradingCluster``, two local
Dask workers): the load test's short form, in which five students submit twelve hw1 zips
through the API while a grading worker is killed (SIGKILL) and then the server restarted
(SIGTERM); every acknowledged submission is stored, graded exactly once and gets the score
it deserves (the reference every point, the blank release none). The full run, 50 students
and 200 submissions per scenario, is ``make load-test``."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="no server extra (pip install -e .[server])")
pytest.importorskip("distributed", reason="no Dask distributed (pip install -e .[server])")

from autograder.server.loadtest import kinds_of_submission, run_scenario, table  # noqa: E402


def test_short_load_with_a_worker_killed_and_a_server_restart(hw1, tmp_path):
    kinds = kinds_of_submission(hw1)
    assert [score for _, _, score in kinds] == [hw1.max_score, 0.0]
    outcome = run_scenario("kill-and-restart", 5, 12, tmp_path, workers=2, kinds=kinds)
    print(table([outcome]))
    assert outcome.acknowledged == 12
    assert outcome.graded == 12
    assert (outcome.lost, outcome.duplicated, outcome.wrong_score, outcome.failed) == (0, 0, 0, 0)
    assert len(outcome.faults) == 2 and outcome.faults[0].startswith("killed worker pid")
    assert outcome.p50_s is not None and outcome.p95_s >= outcome.p50_s
    assert outcome.ok
