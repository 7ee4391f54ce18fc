"""Not gradable here is not a failure: a unit this grader cannot run (a CUDA probe without a
GPU) is left out of max_score and shown as "not graded" in results.json, the gradebook and the
report; it never passes and never counts as a zero in the means."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1

PROBES = """
from autograder.engine.kit import NotGradable, probe

@probe('forward')
def forward_negate():
    import needle as ndl
    import numpy as np
    return ndl.negate(ndl.Tensor(np.arange(4.0, dtype='float32'))).numpy()

@probe('backward')
def backward_on_gpu():
    raise NotGradable('needs a CUDA GPU; none here')

@probe('backward')
def backward_on_gpu_too():
    raise NotGradable('needs a CUDA GPU; none here')
"""


@pytest.fixture(scope="module")
def gpu_less_bundle(hw1, tmp_path_factory):
    from autograder.authoring.bundle import reference_answers
    from autograder.engine.probes import load_suite

    module = tmp_path_factory.mktemp("probes") / "probes_gpu_unit.py"
    module.write_text(PROBES)
    bundle = dataclasses.replace(
        hw1.bundle,
        points={"forward": 10.0, "backward": 30.0},
        suite=load_suite(module),
        reference={},
    )
    bundle.reference = reference_answers(bundle, hw1.reference, log=lambda message: None)
    return bundle


def test_a_unit_that_cannot_run_here_is_left_out_of_max_score(hw1, gpu_less_bundle, tmp_path):
    from autograder.engine.grading import Grader
    from autograder.engine.report import render_html, write_gradebook
    from autograder.engine.sandbox import local_sandbox

    assert gpu_less_bundle.not_gradable_units() == {"backward": "needs a CUDA GPU; none here"}
    reference = make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept)
    blank = make_submission(tmp_path / "blank", hw1)
    with Grader(gpu_less_bundle, local_sandbox()) as grader:
        full = grader.grade(reference, name="reference")
        zero = grader.grade(blank, name="blank")
        broken = grader.grade(tmp_path / "missing.zip", name="broken")  # ungradable
    # The reference scores exactly max_score, which counts only what can run here.
    assert full["score"] == full["max_score"] == 10.0
    assert zero["score"] == 0 and zero["max_score"] == 10.0
    assert broken["max_score"] == 10.0
    backward = {t["name"]: t for t in full["tests"]}["backward"]
    assert backward["max_score"] == 0 and backward["score"] == 0
    assert backward["extra_data"]["not_graded"] == "needs a CUDA GPU; none here"
    assert backward["output"].startswith("Not graded here: needs a CUDA GPU")
    # The gradebook says "not graded"; the report leaves the unit out of rates and means.
    write_gradebook(tmp_path / "gradebook.csv", [full, zero])
    with open(tmp_path / "gradebook.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["backward"] for row in rows] == ["not graded", "not graded"]
    assert [row["forward"] for row in rows] == ["10.0", "0.0"]
    page = render_html([full, zero], "hw1")
    assert "not graded here: needs a CUDA GPU" in page and "n/g" in page


def test_require_gpu_refuses_instead_of_leaving_units_out(gpu_less_bundle):
    from autograder.engine.grading import Grader, GraderSetupError
    from autograder.engine.sandbox import local_sandbox

    with pytest.raises(GraderSetupError, match="backward .needs a CUDA GPU"):
        Grader(gpu_less_bundle, local_sandbox(), require_all_units=True)
