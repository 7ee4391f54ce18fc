"""A class-sized batch: 50 submissions graded with --jobs 2 through the command line, every
one with a result, and re-rendered (``report``); resuming a batch regrades nothing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import pytest

from autograder.tests.conftest import make_submission

pytestmark = [pytest.mark.hw1, pytest.mark.slow]

KINDS = {
    "reference": ("needle/ops/ops_mathematic.py", "needle/autograd.py", "apps/simple_ml.py"),
    "blank": (),
    "ops": ("needle/ops/ops_mathematic.py",),
    "autograd": ("needle/autograd.py",),
    "engine": ("needle/ops/ops_mathematic.py", "needle/autograd.py"),
}


def test_fifty_submissions_two_jobs_fifty_results(hw1, hw1_grader, tmp_path):
    paths = []
    for index in range(50):
        kind = list(KINDS)[index % len(KINDS)]
        paths.append(make_submission(tmp_path / "subs" / f"{kind}-{index:02d}", hw1, KINDS[kind]))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "autograder", "grade", "hw1", *map(str, paths)]
    command += ["--jobs", "2", "--out", str(out)]
    start = time.monotonic()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - start
    assert finished.returncode == 0, finished.stderr[-2000:]
    print(f"\n50 submissions, --jobs 2: {elapsed:.0f} s ({elapsed / 50:.2f} s per submission)")

    results = sorted(out.glob("*/results.json"))
    assert len(results) == 50
    scores: dict[str, set] = {}
    for path in results:
        kind = path.parent.name.split("-")[0]
        scores.setdefault(kind, set()).add(json.loads(path.read_text())["score"])
    assert all(len(values) == 1 for values in scores.values()), scores  # deterministic
    assert scores["reference"] == {hw1.max_score} and scores["blank"] == {0.0}
    with open(out / "gradebook.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 50

    (out / "report.html").unlink()
    rerender = subprocess.run(
        [sys.executable, "-m", "autograder", "report", str(out)], capture_output=True, text=True
    )
    assert rerender.returncode == 0 and (out / "report.html").is_file()


def test_resuming_a_batch_regrades_nothing(hw1, hw1_grader, tmp_path):
    paths = [
        make_submission(tmp_path / "subs" / kind, hw1, KINDS[kind]) for kind in ("blank", "ops")
    ]
    out = tmp_path / "out"
    first = hw1_grader.grade_batch(paths, out, jobs=2, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    again = hw1_grader.grade_batch(paths, out, jobs=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")} == stamps
    assert [r["score"] for r in again] == [r["score"] for r in first]
    # A changed submission is graded again.
    (paths[0] / "apps" / "simple_ml.py").write_text("# changed\n")
    hw1_grader.grade_batch(paths, out, jobs=2, progress=False)
    assert (out / "blank" / "results.json").stat().st_mtime_ns != stamps[
        out / "blank" / "results.json"
    ]
