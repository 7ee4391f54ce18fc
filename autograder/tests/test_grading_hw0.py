"""hw0 graded end to end, its C++ compiled inside the sandbox: full marks, zero, exactly the
points of the correct file, and a compile error shown as feedback without costing the
Python parts."""

from __future__ import annotations

import pytest

from autograder.authoring.bundle import Homework
from autograder.engine.grading import Grader
from autograder.engine.sandbox import local_sandbox
from autograder.tests.conftest import make_submission

pytestmark = [pytest.mark.hw0, pytest.mark.slow]

PY, CPP = "src/simple_ml.py", "src/simple_ml_ext.cpp"


@pytest.fixture(scope="module")
def hw0():
    return Homework.load("hw0")


def test_hw0_reference_blank_mixed_and_compile_error(hw0, tmp_path):
    cpp_points = hw0.points["softmax_regression_epoch_cpp"]
    broken = hw0.reference[CPP].decode().replace("{", "{ this is not C++;", 1).encode()
    cases = {
        "reference": ((PY, CPP), None, hw0.max_score),
        "blank": ((), None, 0.0),
        "python_only": ((PY,), None, hw0.max_score - cpp_points),
        "cpp_only": ((CPP,), None, cpp_points),
        "broken_cpp": ((PY,), {CPP: broken}, hw0.max_score - cpp_points),
    }
    paths = [
        make_submission(tmp_path / name, hw0, files, extra)
        for name, (files, extra, _) in cases.items()
    ]
    with Grader(hw0.bundle, local_sandbox()) as grader:
        results = grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name, (_, _, expected) in cases.items():
        assert by_name[name]["score"] == pytest.approx(expected), (name, by_name[name]["output"])
    broken_result = by_name["broken_cpp"]
    assert broken_result["extra_data"]["built"] is False
    assert "did not compile" in broken_result["output"]
    assert "simple_ml_ext.cpp" in broken_result["output"]  # the compiler's message, scrubbed
    assert str(tmp_path) not in broken_result["output"]
