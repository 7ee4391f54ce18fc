"""Answers that cross the sandbox boundary: strict parsing, type-checked comparison, and
explanations a student can act on. No sandbox needed: records are built by hand."""

from __future__ import annotations

import base64
import io
import json
import pickle

import numpy as np
import pytest

from autograder.engine.answers import (
    ErrorAnswer,
    NDArrayAnswer,
    Tolerance,
    compare,
    from_storable,
    read_answers,
    to_storable,
)
from autograder.engine.runner import AnswerWriter

TOL = Tolerance(rtol=1e-5, atol=1e-6)


def npy(array) -> dict:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return {"$npy": base64.b64encode(buffer.getvalue()).decode()}


def record(case, value=None, error=None) -> bytes:
    if error is not None:
        return json.dumps({"case": case, "status": "error", "error": error}).encode()
    return json.dumps({"case": case, "status": "ok", "value": value}).encode()


def test_runner_encoding_round_trips_through_the_trusted_parser():
    writer = AnswerWriter.__new__(AnswerWriter)  # encode() needs no channel
    value = {
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "scalar": np.float64(2.5),
        "shape": (2, 3),
        "flag": True,
        "name": "float32",
        "none": None,
    }
    parsed = read_answers([record("c", writer.encode(value))], ["c"]).cases["c"]
    assert isinstance(parsed["array"], NDArrayAnswer)
    np.testing.assert_array_equal(parsed["array"].array, value["array"])
    assert parsed["array"].array.dtype == np.float32
    assert parsed["scalar"].array.shape == () and parsed["scalar"].array == 2.5
    assert parsed["shape"] == [2, 3] and parsed["flag"] is True and parsed["none"] is None


def test_runner_refuses_objects_it_cannot_turn_into_plain_data():
    writer = AnswerWriter.__new__(AnswerWriter)

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    for bad in (AlwaysEqual(), np.array([AlwaysEqual()], dtype=object), {1: 2}, b"bytes"):
        with pytest.raises(TypeError):
            writer.encode(bad)


@pytest.mark.parametrize(
    "raw",
    [
        {"$array": "a0.npy"},  # the old file reference form: not an answer
        {"$npy": "not base64!"},
        {"$npy": base64.b64encode(pickle.dumps([1, 2])).decode()},
        {"$dict": [1, 2]},
        {"$npy": "AAAA", "extra": 1},
        {"__class__": "os.system"},
    ],
)
def test_malformed_values_become_invalid_answers(raw):
    parsed = read_answers([record("c", raw)], ["c"]).cases["c"]
    assert isinstance(parsed, ErrorAnswer) and parsed.type == "InvalidAnswer"


def test_pickled_or_object_arrays_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raw = {"$npy": base64.b64encode(buffer.getvalue()).decode()}
    parsed = read_answers([record("c", raw)], ["c"]).cases["c"]
    assert isinstance(parsed, ErrorAnswer)


def test_unknown_repeated_and_garbage_records_are_ignored():
    records = [
        b"not json",
        b"[1, 2]",
        record("unknown_case", 1.0),
        record("c", 1.0),
        record("c", 2.0),  # a second answer to the same case does not replace the first
        json.dumps({"event": "done"}).encode(),
    ]
    answers = read_answers(records, ["c", "d"])
    assert answers.cases == {"c": 1.0}
    assert answers.finished and answers.problems


def test_errors_keep_type_message_and_frames():
    error = {"type": "ValueError", "message": "bad shape", "frames": [["/work/a.py", 3, "f"]]}
    parsed = read_answers([record("c", error=error)], ["c"]).cases["c"]
    assert parsed == ErrorAnswer("ValueError", "bad shape", (("/work/a.py", 3, "f"),))


def test_array_comparison_checks_shape_then_values_within_tolerance():
    expected = NDArrayAnswer(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    assert compare(expected, NDArrayAnswer(expected.array + 1e-7), TOL) is None
    assert "shape" in compare(expected, NDArrayAnswer(expected.array.T.reshape(4)), TOL)
    wrong = expected.array.copy()
    wrong[1, 0] = 3.5
    message = compare(expected, NDArrayAnswer(wrong), TOL)
    assert "index (1, 0)" in message and "got 3.5" in message
    assert "1 of 4 elements" in message and "rtol=1e-05" in message
    # Feedback policy: the expected value (3) is never shown, nor the difference from it.
    assert "3.0" not in message.replace("3.5", "") and "0.5" not in message
    assert " 3 " not in message and "expected 3" not in message
    nan = expected.array.copy()
    nan[0, 0] = np.nan
    assert compare(expected, NDArrayAnswer(nan), TOL) is not None


def test_type_is_checked_before_value():
    assert compare(1.0, "1.0", TOL) is not None
    assert compare([1.0, 2.0], {"0": 1.0, "1": 2.0}, TOL) is not None
    assert compare(True, 1, TOL) is not None
    assert compare(None, 0.0, TOL) is not None
    assert compare(["a", "b"], ["a", "b", "c"], TOL) is not None
    # Numbers and 0-d arrays are interchangeable (numpy scalars vs Python floats).
    assert compare(NDArrayAnswer(np.array(2.0)), 2.0, TOL) is None
    assert compare(2.0, NDArrayAnswer(np.array([2.0])), TOL) is not None  # shape (1,) != ()


def test_dtype_is_compared_only_when_the_probe_asks():
    expected = NDArrayAnswer(np.ones(3, dtype=np.float32))
    got = NDArrayAnswer(np.ones(3, dtype=np.float64))
    assert compare(expected, got, TOL) is None
    assert "dtype" in compare(expected, got, Tolerance(check_dtype=True))


def test_error_answers_match_by_type_name():
    expected = ErrorAnswer("ValueError", "", ())
    assert compare(expected, ErrorAnswer("ValueError", "other text", ()), TOL) is None
    message = compare(expected, ErrorAnswer("TypeError", "", ()), TOL)
    assert "raised TypeError" in message and "ValueError" not in message
    assert "raised TypeError" in compare(1.0, ErrorAnswer("TypeError", "", ()), TOL)


def test_reference_storage_round_trip():
    arrays: dict = {}
    value = [NDArrayAnswer(np.arange(3.0)), {"k": "v"}, 1.5, None, ErrorAnswer("E", "m", ())]
    stored = json.loads(json.dumps(to_storable(value, arrays)))
    back = from_storable(stored, arrays)
    np.testing.assert_array_equal(back[0].array, np.arange(3.0))
    assert back[1:] == [{"k": "v"}, 1.5, None, ErrorAnswer("E", "m", ())]


def test_not_gradable_reference_answers_are_recognised_by_class_name():
    from autograder.engine.answers import is_not_gradable

    assert is_not_gradable(ErrorAnswer("hidden_probes.NotGradable", "needs a CUDA GPU", ()))
    assert is_not_gradable(ErrorAnswer("autograder.engine.kit.NotGradable", "", ()))
    assert not is_not_gradable(ErrorAnswer("RuntimeError", "needs a CUDA GPU", ()))
    assert not is_not_gradable(1.0)


def test_a_wrong_boolean_answer_fails_also_when_it_is_a_0d_value():
    """np.argwhere of a 0-d array has shape (n, 0): its .size is 0 even when values differ,
    so a probe answering True/False once passed whatever the submission answered."""
    assert compare(True, False, TOL) is not None
    assert compare(False, True, TOL) is not None
    assert compare(NDArrayAnswer(np.asarray(True)), NDArrayAnswer(np.asarray(False)), TOL)
    assert compare(True, True, TOL) is None
    assert compare([True, False], [True, True], TOL) is not None
