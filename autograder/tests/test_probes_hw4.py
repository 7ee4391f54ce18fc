"""hw4 graded end to end in the local sandbox (full marks, zero, exactly the points of the
correct parts), and hw4's public tests on the two releases.

Submissions are assembled from the blank release and the reference-filled one (see
``conftest.make_submission``). Which units a file feeds is read off the probe module: the
``conv_*`` units have ``op_*`` cases (ops + NDArray files) and ``nn_conv_*`` cases (also
``nn_conv.py``); ``language_model``'s ``embedding_*`` case needs only ``nn_sequence.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.authoring.bundle import Homework
from autograder.engine.grading import Grader
from autograder.engine.sandbox import local_sandbox
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw4

OPS = "needle/ops/ops_mathematic.py"
NDARRAY = "needle/backend_ndarray/ndarray.py"
CONV = "needle/nn/nn_conv.py"
SEQUENCE = "needle/nn/nn_sequence.py"
CIFAR = "needle/data/datasets/cifar10_dataset.py"
PTB = "needle/data/datasets/ptb_dataset.py"
MODELS = "apps/models.py"
SIMPLE_ML = "apps/simple_ml.py"


@pytest.fixture(scope="module")
def hw4() -> Homework:
    return Homework.load("hw4")


@pytest.fixture(scope="module")
def hw4_grader(hw4):
    with Grader(hw4.bundle, local_sandbox()) as grader:
        yield grader


def share(homework, unit, prefix) -> float:
    """The part of ``unit``'s points carried by its cases whose names start with ``prefix``."""
    cases = homework.suite.cases[unit]
    picked = [c for c in cases if c.name.startswith(prefix)]
    assert 0 < len(picked) < len(cases), (unit, prefix)
    return homework.points[unit] * sum(c.weight for c in picked) / sum(c.weight for c in cases)


def test_probe_units_are_the_points_units(hw4):
    assert hw4.suite.units == list(hw4.points), "probe units, in order, are assignment.toml's"
    hw4.check()


def test_reference_blank_and_mixed_submissions_get_exactly_their_points(hw4, hw4_grader, tmp_path):
    points = hw4.points
    conv_ops = share(hw4, "conv_forward", "op_") + share(hw4, "conv_backward", "op_")
    embedding = share(hw4, "language_model", "embedding")
    new_nd_backend = points["new_nd_backend_activations"] + points["new_nd_backend_stack_split"]
    layers = (
        "new_nd_backend_activations",
        "new_nd_backend_stack_split",
        "new_ops",
        "conv_forward",
        "conv_backward",
        "rnn",
        "lstm",
    )
    cases = {
        "reference": ((OPS, NDARRAY, CONV, SEQUENCE, CIFAR, PTB, MODELS, SIMPLE_ML), 100.0),
        "blank": ((), 0.0),
        "data_only": ((CIFAR, PTB), points["cifar10"] + points["ptb"]),
        "ops_only": (
            (OPS, NDARRAY),
            new_nd_backend + points["new_ops"] + conv_ops,
        ),
        "layers": ((OPS, NDARRAY, CONV, SEQUENCE), sum(points[u] for u in layers) + embedding),
        "all_but_apps": ((OPS, NDARRAY, CONV, SEQUENCE, CIFAR, PTB), 100.0 - 20.0 + embedding),
    }
    assert hw4.max_score == 100.0
    paths = [
        make_submission(tmp_path / "subs" / name, hw4, reference_files=files)
        for name, (files, _) in cases.items()
    ]
    results = hw4_grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    scores = {r["extra_data"]["submission"]: r for r in results}
    for name, (_, expected) in cases.items():
        result = scores[name]
        by_unit = {t["name"]: t["score"] for t in result["tests"]}
        assert result["score"] == pytest.approx(expected, abs=1e-3), (name, by_unit)
    reference = scores["reference"]
    assert [t["name"] for t in reference["tests"]] == list(points)
    assert all(t["status"] == "passed" for t in reference["tests"]), reference["tests"]
    # Blank units explain themselves: the student's file and line of the stub.
    blank = {t["name"]: t["output"] for t in scores["blank"]["tests"]}
    assert "NotImplementedError" in blank["conv_forward"]
    assert "needle/ops/ops_mathematic.py, line" in blank["conv_forward"]


def test_a_wrong_conv_gradient_loses_only_conv_backward_points(hw4, hw4_grader, tmp_path):
    ops = hw4.reference[OPS].decode()
    # A wrong weight gradient of the right shape (only the values can tell).
    broken = ops + (
        "\n\n_right_gradient = Conv.gradient\n\n"
        "def _scaled_gradient(self, out_grad, node):\n"
        "    grad_x, grad_w = _right_gradient(self, out_grad, node)\n"
        "    return grad_x, grad_w * 2\n\n"
        "Conv.gradient = _scaled_gradient\n"
    )
    files = (NDARRAY, CONV, SEQUENCE, CIFAR, PTB, MODELS, SIMPLE_ML)
    folder = make_submission(
        tmp_path / "scaled", hw4, reference_files=files, extra={OPS: broken.encode()}
    )
    results = hw4_grader.grade(folder)
    by_unit = {t["name"]: t for t in results["tests"]}
    assert by_unit["conv_backward"]["score"] == 0.0, by_unit["conv_backward"]["output"]
    assert "differ at index" in by_unit["conv_backward"]["output"]
    lost = hw4.points["conv_backward"]
    # ResNet9's gradient and training probes go through the conv gradient too.
    resnet9_lost = hw4.points["resnet9"] - by_unit["resnet9"]["score"]
    assert resnet9_lost > 0
    assert results["score"] == pytest.approx(hw4.max_score - lost - resnet9_lost, abs=1e-3)
    for unit in (
        "new_nd_backend_activations",
        "new_nd_backend_stack_split",
        "new_ops",
        "conv_forward",
        "rnn",
        "lstm",
        "ptb",
        "cifar10",
    ):
        assert by_unit[unit]["score"] == by_unit[unit]["max_score"], unit


# ---------------------------------------------------------------------------------------------
# hw4's public tests on the releases (compiles the C++ backend: slow)


def _cmake_build(folder: Path) -> None:
    """Build the release's CPU backend in place (CUDA off: no GPU is needed for the check)."""
    python = sys.executable
    pybind11_dir = subprocess.run(
        [python, "-m", "pybind11", "--cmakedir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    configure = ["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"]
    configure += [f"-DPython_EXECUTABLE={python}", f"-Dpybind11_DIR={pybind11_dir}"]
    configure += ["-DCMAKE_CUDA_COMPILER="]
    subprocess.run(configure, cwd=folder, check=True, capture_output=True)
    subprocess.run(
        ["cmake", "--build", "build", "--target", "ndarray_backend_cpu", "-j", "2"],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def _run_public_tests(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEEDLE_BACKEND": "nd", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-rf"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.mark.slow
def test_public_tests_pass_on_the_filled_release_and_fail_on_the_blank_one(hw4, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is needed to build the release's C++ backend")
    from autograder.authoring.release import build_release

    filled = build_release("hw4", tmp_path / "filled", fill=True)
    blank = build_release("hw4", tmp_path / "blank", archive=False)
    _cmake_build(filled)
    for library in (filled / "needle" / "backend_ndarray").glob("ndarray_backend_cpu*"):
        shutil.copy(library, blank / "needle" / "backend_ndarray" / library.name)

    passed = _run_public_tests(filled)
    assert passed.returncode == 0, passed.stdout[-5000:]
    assert " passed" in passed.stdout and "failed" not in passed.stdout.splitlines()[-1]

    failed = _run_public_tests(blank)
    assert failed.returncode == 1, (
        "the shipped release must fail its tests (exit 1), not crash\n" + failed.stdout[-3000:]
    )
    summary = failed.stdout[failed.stdout.index("public tests per graded part") :]
    for unit in hw4.points:
        line = next(x for x in summary.splitlines() if x.strip().startswith(unit + " "))
        assert "FAILING" in line, f"unit {unit} has no failing public test when blank: {line}"
