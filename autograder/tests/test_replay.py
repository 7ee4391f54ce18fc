"""Replay resistance (docs/grading.md#variants): every submission is graded on one of several
seeded variants of the hidden inputs, chosen unpredictably, so expected values leaked or
guessed in one run do not earn points in the next.

The attack it answers: a student who learned the expected answers of ``softmax_loss_ndl``
(0 -> 6.67 -> 10/10 in three submissions) hard-codes them instead of writing softmax.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from autograder.engine import kit
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1

UNIT = "softmax_loss_ndl"


def test_variant_zero_keeps_the_seeds_as_written_and_others_change_them():
    try:
        kit.set_variant(0)
        zero = kit.randn(3, seed=11)
        assert np.array_equal(zero, np.random.default_rng(11).standard_normal(3).astype("f4"))
        kit.seed(5)
        assert np.random.random() == np.random.RandomState(5).random_sample()
        seen = [zero]
        for variant in (1, 2, 3):
            kit.set_variant(variant)
            assert kit.derive_seed(11) != 11
            assert kit.derive_seed(11) == kit.derive_seed(11)  # deterministic per variant
            assert 0 <= kit.derive_seed(11) < 2**32  # np.random.seed accepts it
            other = kit.randn(3, seed=11)
            assert not any(np.array_equal(other, earlier) for earlier in seen)
            seen.append(other)
            kit.seed(5)  # no error: a 32-bit seed
        with pytest.raises(ValueError):
            kit.set_variant(-1)
    finally:
        kit.set_variant(0)


def test_the_bundle_holds_reference_answers_for_every_variant(hw1):
    bundle = hw1.bundle
    assert bundle.variant_count == 3  # [grading] variants, default 3
    answers = [bundle.answers(v)[UNIT] for v in range(bundle.variant_count)]
    assert all(set(a) == set(answers[0]) for a in answers)
    # The inputs differ, so do the answers (this case's logits are random in every variant).
    values = [float(a["softmax_loss_single_example"].array) for a in answers]
    assert len(set(values)) == len(values)
    with pytest.raises(ValueError):
        bundle.answers(bundle.variant_count)


def _flat_numbers(value) -> list[float]:
    from autograder.engine.answers import NDArrayAnswer

    if isinstance(value, NDArrayAnswer):
        return [float(x) for x in value.array.reshape(-1)]
    if isinstance(value, list):
        return [x for item in value for x in _flat_numbers(item)]
    raise AssertionError(f"unexpected answer {value!r}")


def hard_coder(folder, hw1):
    """The blank release, with a ``softmax_loss`` that returns, call after call, the variant-0
    expected values of the unit's probes (read from the bundle: the best a replay can do)."""
    answers = hw1.bundle.answers(0)[UNIT]
    values = [x for case in hw1.bundle.suite.cases[UNIT] for x in _flat_numbers(answers[case.name])]
    payload = (
        "\n\n_LEAKED = " + repr(values) + "\n_CALLS = []\n\n\n"
        "def softmax_loss(Z, y_one_hot):\n"
        "    import numpy\n"
        "    value = _LEAKED[len(_CALLS) % len(_LEAKED)]\n"
        "    _CALLS.append(1)\n"
        "    return ndl.Tensor(numpy.array(value, dtype='float32'))\n"
    )
    source = hw1.blank["apps/simple_ml.py"].decode() + payload
    return make_submission(folder, hw1, extra={"apps/simple_ml.py": source.encode()})


def _unit(results: dict, unit: str) -> dict:
    return next(t for t in results["tests"] if t["name"] == unit)


def test_hard_coded_variant_zero_answers_score_only_on_variant_zero(hw1, tmp_path):
    from autograder.engine.grading import Grader
    from autograder.engine.sandbox import local_sandbox

    submission = hard_coder(tmp_path / "hard_coder", hw1)
    scores = {}
    for variant in range(hw1.bundle.variant_count):
        with Grader(hw1.bundle, local_sandbox(), variant=variant) as grader:
            results = grader.grade(submission, name="hard_coder")
        assert results["extra_data"]["variant"] == {"number": variant, "of": 3}
        scores[variant] = _unit(results, UNIT)["score"]
    points = hw1.bundle.points[UNIT]
    assert scores[0] == pytest.approx(points), scores  # the replay works on its own variant...
    assert scores[1] < points and scores[2] < points, scores  # ...and nowhere else


def test_the_reference_scores_full_on_every_variant(hw1, tmp_path):
    from autograder.engine.grading import Grader
    from autograder.engine.sandbox import local_sandbox

    reference = make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept)
    for variant in range(hw1.bundle.variant_count):
        with Grader(hw1.bundle, local_sandbox(), variant=variant) as grader:
            results = grader.grade(reference, name="reference")
        assert results["score"] == hw1.max_score, (variant, results["output"])
        assert results["extra_data"]["variant"]["number"] == variant


def test_the_same_submission_graded_twice_can_get_different_variants_and_resume_keeps_it(
    hw1, hw1_grader, tmp_path
):
    from autograder.engine.batch import grade_batch

    assert hw1_grader.variant is None  # chosen per submission
    draws = {hw1_grader.choose_variant() for _ in range(300)}
    assert draws == {0, 1, 2}  # (1 - (2/3)^300 ... : never flaky in practice)
    blank = make_submission(tmp_path / "blank", hw1)
    seen = []
    for _ in range(12):  # P(12 gradings on one variant) = 3 * 3^-12
        results = hw1_grader.grade(blank, name="blank")
        seen.append(results["extra_data"]["variant"]["number"])
        if len(set(seen)) > 1:
            break
    assert len(set(seen)) > 1, seen
    # Never shown to the student: not in the output, not in feedback.txt.
    out = tmp_path / "out"
    first = grade_batch(hw1_grader, [blank], out, progress=False)[0]
    feedback = (out / "blank" / "feedback.txt").read_text()
    assert "variant" not in feedback and "variant" not in first["output"]
    assert all("variant" not in test["output"] for test in first["tests"])
    # A resumed result is the stored one, with the variant it was graded on.
    again = grade_batch(hw1_grader, [blank], out, progress=False)[0]
    assert again["extra_data"]["run_id"] == first["extra_data"]["run_id"]
    assert again["extra_data"]["variant"] == first["extra_data"]["variant"]
    stored = json.loads((out / "blank" / "results.json").read_text())
    assert stored["extra_data"]["variant"] == first["extra_data"]["variant"]
