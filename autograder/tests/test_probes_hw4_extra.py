"""hw4_extra's hidden probes: sound on the reference, and graded end to end in the local sandbox.

The first tests run the probes in this process on the reference library (answers are plain
data; the attention answers equal a numpy computation of the spec). The last one grades the
reference-filled and blank releases and mixed submissions, whose ``nn_transformer.py`` has some
of its solution regions stubbed: a unit scores exactly when every region it runs is solved.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from autograder.authoring.bundle import Homework
from autograder.authoring.markers import find_regions, stub_line
from autograder.engine.grading import Grader
from autograder.engine.kit import probes_of, randn
from autograder.engine.paths import REPO_ROOT
from autograder.engine.probes import load_suite
from autograder.engine.runner import AnswerWriter
from autograder.engine.sandbox import local_sandbox
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw4_extra

PROBES = REPO_ROOT / "autograder" / "probes" / "hw4_extra.py"
TRANSFORMER = "needle/nn/nn_transformer.py"
MODELS = "apps/models.py"


@pytest.fixture(scope="module")
def suite():
    return load_suite(PROBES)


def run_in_process(function):
    value = function()
    AnswerWriter.__new__(AnswerWriter).encode(value)  # raises on anything but plain data
    return value


def test_units_match_the_toml(suite):
    from autograder.authoring.assignment import load

    assert suite.units == list(load("hw4_extra").points)
    assert all(len(cases) >= 3 for cases in suite.cases.values())


def test_probes_run_on_the_reference(suite):
    import needle as ndl

    if not ndl.cpu().enabled():
        pytest.skip(f"the reference CPU backend is not built here: {ndl.cpu().unavailable_reason}")
    for unit in suite.units:
        for _, function in probes_of(suite.module, unit):
            run_in_process(function)


def test_attention_answers_follow_the_spec(suite):
    """softmax(Q K^T / sqrt(D) + causal mask) V, computed here with numpy in float64."""
    import needle as ndl

    if not ndl.cpu().enabled():
        pytest.skip(f"the reference CPU backend is not built here: {ndl.cpu().unavailable_reason}")
    answer = run_in_process(suite.module.attention_causal_more_keys)
    seed, (batch, heads, queries, keys, dim) = 5121, (1, 3, 3, 8, 4)
    q = randn(batch, heads, queries, dim, seed=seed).astype(np.float64)
    k = randn(batch, heads, keys, dim, seed=seed + 1).astype(np.float64)
    v = randn(batch, heads, keys, dim, seed=seed + 2).astype(np.float64)
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(dim)
    scores[..., np.triu(np.ones((queries, keys), dtype=bool), keys - queries + 1)] = -np.inf
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(answer["probs"], probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(answer["result"], probs @ v, rtol=1e-5, atol=1e-5)


# ---- graded end to end in the sandbox (no compiling: the probes' BUILD is a no-op) -----------


@pytest.fixture(scope="module")
def hw4_extra():
    return Homework.load("hw4_extra")


@pytest.fixture(scope="module")
def hw4_extra_grader(hw4_extra):
    with Grader(hw4_extra.bundle, local_sandbox()) as grader:
        yield grader


def stub_functions(text: str, names: set[str]) -> str:
    """``text`` (Python) with the regions of the functions ``names`` (qualified names such as
    ``Transformer.forward``) replaced by the release's stub."""
    lines = text.splitlines()
    regions = [r for r in find_regions(text, "python", TRANSFORMER) if r.function in names]
    assert {r.function for r in regions} == names, "a function to stub has no region"
    for region in reversed(regions):
        lines[region.begin : region.end - 1] = stub_line(region)
    return "\n".join(lines) + "\n"


def test_reference_blank_and_mixed_submissions_get_exactly_their_points(
    hw4_extra, hw4_extra_grader, tmp_path
):
    points = hw4_extra.points
    reference = hw4_extra.reference[TRANSFORMER].decode()
    layer_and_model = {
        "TransformerLayer.__init__",
        "TransformerLayer.forward",
        "Transformer.__init__",
        "Transformer.forward",
    }
    cases = {
        "reference": ({TRANSFORMER, MODELS}, {}, hw4_extra.max_score),
        "blank": (set(), {}, 0.0),
        "attention_only": (
            {MODELS},
            {TRANSFORMER: stub_functions(reference, layer_and_model).encode()},
            points["attention_activation"] + points["attention_layer"],
        ),
        "all_but_the_model": (
            {MODELS},
            {TRANSFORMER: stub_functions(reference, {"Transformer.forward"}).encode()},
            hw4_extra.max_score - points["transformer_model"],
        ),
        "activation_missing": (
            set(),
            {TRANSFORMER: stub_functions(reference, {"MultiHeadAttention.forward"}).encode()},
            0.0,  # every other unit runs the attention activation
        ),
    }
    paths = [
        make_submission(tmp_path / "subs" / name, hw4_extra, reference_files=files, extra=extra)
        for name, (files, extra, _) in cases.items()
    ]
    results = hw4_extra_grader.grade_batch(paths, tmp_path / "out", jobs=2, progress=False)
    by_name = {r["extra_data"]["submission"]: r for r in results}
    for name, (_, _, expected) in cases.items():
        result = by_name[name]
        assert result["score"] == pytest.approx(expected, abs=1e-3), (
            name,
            {t["name"]: (t["score"], t["output"][:300]) for t in result["tests"]},
        )
    model = next(
        t for t in by_name["all_but_the_model"]["tests"] if t["name"] == "transformer_model"
    )
    assert "NotImplementedError" in model["output"] and TRANSFORMER in model["output"]
