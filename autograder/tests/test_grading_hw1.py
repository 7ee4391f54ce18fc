"""hw1 graded end to end in the local sandbox: full marks, zero, and exactly the points of the
correct parts; a crash, a hang or a memory blow-up costs only its own unit."""

from __future__ import annotations

import json

import pytest

from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1

OPS = "needle/ops/ops_mathematic.py"
AUTOGRAD = "needle/autograd.py"
APPS = "apps/simple_ml.py"


def relu_share(homework) -> float:
    """nn_epoch_ndl's ReLU checks depend on the ops file only; its nn_epoch checks also on
    autograd and apps. The share of the unit's points the ReLU checks carry:"""
    cases = homework.suite.cases["nn_epoch_ndl"]
    relu = [c for c in cases if c.name.startswith("relu")]
    assert 0 < len(relu) < len(cases)
    return sum(c.weight for c in relu) / sum(c.weight for c in cases)


def test_reference_blank_and_mixed_submissions_get_exactly_their_points(hw1, hw1_grader, tmp_path):
    points = hw1.points
    relu = points["nn_epoch_ndl"] * relu_share(hw1)
    ops_units = points["forward"] + points["backward"]
    autograd_units = points["topo_sort"] + points["compute_gradient"]
    cases = {
        "reference": ((OPS, AUTOGRAD, APPS), hw1.max_score),
        "blank": ((), 0.0),
        "ops_only": ((OPS,), ops_units + relu),
        "autograd_only": ((AUTOGRAD,), autograd_units),
        "ops_and_apps": ((OPS, APPS), ops_units + relu + points["softmax_loss_ndl"]),
        "ops_and_autograd": ((OPS, AUTOGRAD), ops_units + autograd_units + relu),
    }
    paths = [
        make_submission(tmp_path / "subs" / name, hw1, reference_files=files)
        for name, (files, _) in cases.items()
    ]
    results = hw1_grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    scores = {r["extra_data"]["submission"]: r["score"] for r in results}
    for name, (_, expected) in cases.items():
        assert scores[name] == pytest.approx(expected, abs=1e-3), (name, scores)
    # Files on disk say the same, and the gradebook has a row per submission.
    for name in cases:
        stored = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert stored["score"] == scores[name]
    rows = (tmp_path / "out" / "gradebook.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(cases)
    assert "<svg" in (tmp_path / "out" / "report.html").read_text()


def test_results_json_follows_the_gradescope_schema(hw1, hw1_grader, tmp_path):
    folder = make_submission(tmp_path / "ops_only", hw1, reference_files=(OPS,))
    results = hw1_grader.grade(folder, tmp_path / "out")
    assert set(results) >= {"score", "max_score", "execution_time", "tests", "extra_data"}
    assert isinstance(results["execution_time"], int)
    assert results["max_score"] == hw1.max_score
    assert [t["name"] for t in results["tests"]] == list(hw1.points)
    for number, test in enumerate(results["tests"], start=1):
        assert test["number"] == str(number)
        assert test["max_score"] == hw1.points[test["name"]]
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert isinstance(test["output"], str) and test["output"]
        assert "hw1" in test["tags"]
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(results["score"])
    extra = results["extra_data"]
    assert extra["sandbox"]["isolated"] is True
    assert len(extra["probes_sha256"]) == 64
    assert extra["submission_sha256"]
    json.dumps(results, allow_nan=False)  # strict JSON
    # The feedback of a failing unit names the student's file and line, not the probe's.
    topo = next(t for t in results["tests"] if t["name"] == "topo_sort")
    assert "NotImplementedError" in topo["output"]
    assert "needle/autograd.py, line" in topo["output"]
    assert "/grader" not in topo["output"] and "probes" not in topo["output"]
    assert str(hw1_grader.bundle.root) not in json.dumps(results["tests"])


def test_wrong_values_are_explained_with_index_expected_got_and_tolerance(
    hw1, hw1_grader, tmp_path
):
    ops = hw1.reference[OPS].decode()
    # An off-by-a-bit divide_scalar: multiply by 1/scalar, then nudge.
    broken = ops + (
        "\n\ndef _nudged(self, a):\n    return a / self.scalar + 1e-3\n\n"
        "DivScalar.compute = _nudged\n"
    )
    folder = make_submission(
        tmp_path / "nudged", hw1, reference_files=(AUTOGRAD, APPS), extra={OPS: broken.encode()}
    )
    results = hw1_grader.grade(folder)
    forward = next(t for t in results["tests"] if t["name"] == "forward")
    line = next(x for x in forward["output"].splitlines() if "forward_divide_scalar" in x)
    assert "[FAIL]" in line and "differ at index (0, 0)" in line
    assert "expected" in line and "got" in line and "rtol=1e-05" in line
    assert forward["score"] < forward["max_score"]


# name -> (unit whose feedback names the problem, the code appended to the reference
# apps/simple_ml.py, what that feedback must say, units that lose points). nn_epoch's own
# checks use softmax_loss (the reference nn_epoch calls it); its ReLU checks use neither.
CRASHES = {
    "segfault": (
        "nn_epoch_ndl",
        "def nn_epoch(*args, **kwargs):\n    import ctypes\n    ctypes.string_at(0)\n",
        "segmentation fault",
        ("nn_epoch_ndl",),
    ),
    "endless": (
        "softmax_loss_ndl",
        "def softmax_loss(Z, y):\n    while True:\n        pass\n",
        "time limit",
        ("softmax_loss_ndl", "nn_epoch_ndl"),
    ),
    "memory": (
        "nn_epoch_ndl",
        "def nn_epoch(*args, **kwargs):\n    return bytearray(1 << 40)\n",
        "MemoryError",
        ("nn_epoch_ndl",),
    ),
}


def test_a_crash_hang_or_memory_blowup_costs_only_its_unit(hw1, fast_hw1_grader, tmp_path):
    paths = []
    for name, (_, code, _, _) in CRASHES.items():
        apps = hw1.reference[APPS].decode() + "\n\n" + code
        paths.append(
            make_submission(
                tmp_path / name, hw1, reference_files=(OPS, AUTOGRAD), extra={APPS: apps.encode()}
            )
        )
    results = fast_hw1_grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    for (name, (unit, _, message, hit)), result in zip(CRASHES.items(), results):
        by_unit = {t["name"]: t for t in result["tests"]}
        assert message in by_unit[unit]["output"], (name, by_unit[unit]["output"])
        for other, test in by_unit.items():
            if other not in hit:
                assert test["score"] == test["max_score"], (name, other)
            elif other == "nn_epoch_ndl":  # the ReLU checks still pass
                kept = hw1.points[other] * relu_share(hw1)
                assert test["score"] == pytest.approx(kept, abs=1e-3), (name, other)
            else:
                assert test["score"] == 0, (name, other)


def test_a_probe_the_machine_cannot_run_is_reported_not_graded(hw1, tmp_path):
    """A reference answer that is kit.NotGradable (e.g. no GPU here) neither stops the grader
    nor passes nor fails: the case is left out of the unit's share and says why."""
    import dataclasses

    from autograder.authoring.bundle import reference_answers
    from autograder.engine.grading import Grader
    from autograder.engine.probes import load_suite
    from autograder.engine.sandbox import local_sandbox

    module = tmp_path / "probes_with_gpu_case.py"
    module.write_text(
        "from autograder.engine.kit import NotGradable, probe\n\n"
        "@probe('forward')\n"
        "def forward_negate_small():\n"
        "    import needle as ndl\n"
        "    import numpy as np\n"
        "    return ndl.negate(ndl.Tensor(np.arange(4.0, dtype='float32'))).numpy()\n\n"
        "@probe('forward')\n"
        "def forward_on_gpu():\n"
        "    raise NotGradable('needs a CUDA GPU; none here')\n"
    )
    bundle = dataclasses.replace(
        hw1.bundle, points={"forward": 10.0}, suite=load_suite(module), reference={}
    )
    bundle.reference = reference_answers(bundle, hw1.reference, log=lambda message: None)
    folder = make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept)
    with Grader(bundle, local_sandbox()) as grader:
        result = grader.grade(folder)
    forward = result["tests"][0]
    assert forward["score"] == pytest.approx(10.0) and result["max_score"] == 10.0
    assert "[SKIP] forward_on_gpu: not graded here: needs a CUDA GPU" in forward["output"]
