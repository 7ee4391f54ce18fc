"""Reading answers that crossed the sandbox boundary, and comparing them with the reference.

This is the trusted side. The answer records a sandboxed run sends may hold anything the
submission chose to send, so they are read as *data only*:

- each answer record (a line of the runner's output, bounded in size and number by the
  sandbox) is parsed with ``json``; every value is then validated against the answer grammar
  of ``runner.py`` (null, bool, int, float, str, list, ``{"$dict": ...}``, ``{"$npy": ...}``);
  anything else makes the case invalid;
- arrays are read with ``np.load(allow_pickle=False)`` from the record's base64 ``.npy``
  bytes; only bool, integer and float dtypes pass.

No object from the sandbox is ever called, unpickled or compared with ``==`` as an object:
comparison happens between parsed plain values (an "always equal" object cannot survive
serialisation), with the type checked before the value.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from typing import Any

import numpy as np

MAX_ARRAY_BYTES = 64 * 1024 * 1024
MAX_CASES = 10_000


class InvalidAnswer(ValueError):
    """The sandbox wrote something that is not a well-formed answer."""


@dataclasses.dataclass(frozen=True)
class NDArrayAnswer:
    """An array answer, parsed."""

    array: np.ndarray


@dataclasses.dataclass(frozen=True)
class ErrorAnswer:
    """The probe raised: ``type`` name, scrub-later ``message``, frames ``(file, line, fn)``."""

    type: str
    message: str
    frames: tuple[tuple[str, int, str], ...]


@dataclasses.dataclass
class UnitAnswers:
    """What one sandboxed run of a unit produced."""

    cases: dict[str, Any]  # case name -> parsed value or ErrorAnswer
    started: bool = False
    finished: bool = False
    problems: list[str] = dataclasses.field(default_factory=list)


# --- parsing -------------------------------------------------------------------------------


def _load_npy(encoded: Any) -> NDArrayAnswer:
    if not isinstance(encoded, str) or len(encoded) > MAX_ARRAY_BYTES * 4 // 3 + 8:
        raise InvalidAnswer("bad array")
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # malformed: not an answer
        raise InvalidAnswer(f"an array is not a valid .npy payload ({error})") from None
    if type(array) is not np.ndarray:
        raise InvalidAnswer("an array answer is not a plain array")
    if array.dtype.kind not in "biuf":
        raise InvalidAnswer(f"an array answer has dtype {array.dtype}")
    return NDArrayAnswer(array)


def parse_value(raw: Any, depth: int = 0) -> Any:
    """Validate one raw JSON value against the answer grammar and return it parsed."""
    if depth > 25:
        raise InvalidAnswer("answer nested too deeply")
    kind = type(raw)
    if raw is None or kind in (bool, str):
        return raw
    if kind is int:
        return raw
    if kind is float:
        return raw
    if kind is list:
        return [parse_value(item, depth + 1) for item in raw]
    if kind is dict:
        if set(raw) == {"$npy"}:
            return _load_npy(raw["$npy"])
        if set(raw) == {"$dict"} and type(raw["$dict"]) is dict:
            return {str(k): parse_value(v, depth + 1) for k, v in raw["$dict"].items()}
    raise InvalidAnswer(f"value of type {kind.__name__} is not an answer")


def _parse_error(raw: Any) -> ErrorAnswer:
    if type(raw) is not dict:
        raise InvalidAnswer("bad error record")
    kind, message, frames = raw.get("type"), raw.get("message", ""), raw.get("frames", [])
    if type(kind) is not str or type(message) is not str or type(frames) is not list:
        raise InvalidAnswer("bad error record")
    parsed = []
    for frame in frames[-30:]:
        if (
            type(frame) is list
            and len(frame) == 3
            and type(frame[0]) is str
            and type(frame[1]) is int
            and type(frame[2]) is str
        ):
            parsed.append((frame[0][:500], frame[1], frame[2][:200]))
    return ErrorAnswer(kind[:200], message[:4000], tuple(parsed))


def read_answers(records: list[bytes], expected_cases: list[str]) -> UnitAnswers:
    """Parse the answer records of one run. Never raises on bad content: problems are
    listed and the affected cases are simply missing."""
    result = UnitAnswers(cases={})
    wanted = set(expected_cases)
    for number, line in enumerate(records[: MAX_CASES + 2]):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            result.problems.append(f"answer record {number + 1} is not JSON")
            continue
        if type(record) is not dict:
            continue
        if record.get("event") == "start":
            result.started = True
            continue
        if record.get("event") == "done":
            result.finished = True
            continue
        case = record.get("case")
        if type(case) is not str or case not in wanted or case in result.cases:
            continue  # unknown or repeated case: the first answer counts
        try:
            if record.get("status") == "ok" and "value" in record:
                result.cases[case] = parse_value(record["value"])
            elif record.get("status") == "error":
                result.cases[case] = _parse_error(record.get("error"))
            else:
                raise InvalidAnswer("record has no status")
        except InvalidAnswer as problem:
            result.cases[case] = ErrorAnswer("InvalidAnswer", str(problem), ())
        except RecursionError:
            result.cases[case] = ErrorAnswer("InvalidAnswer", "answer nested too deeply", ())
    return result


# --- JSON storage of parsed answers (the reference cache) ------------------------------------


def to_storable(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Parsed answer -> JSON-able tree, arrays moved into ``arrays`` (saved as .npz)."""
    if isinstance(value, NDArrayAnswer):
        name = f"a{len(arrays)}"
        arrays[name] = value.array
        return {"$array": name}
    if isinstance(value, ErrorAnswer):
        return {"$error": value.type, "message": value.message}
    if isinstance(value, list):
        return [to_storable(item, arrays) for item in value]
    if isinstance(value, dict):
        return {"$dict": {k: to_storable(v, arrays) for k, v in value.items()}}
    return value


def from_storable(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [from_storable(item, arrays) for item in value]
    if isinstance(value, dict):
        if "$array" in value:
            return NDArrayAnswer(arrays[value["$array"]])
        if "$error" in value:
            return ErrorAnswer(value["$error"], value.get("message", ""), ())
        return {k: from_storable(v, arrays) for k, v in value["$dict"].items()}
    return value


# --- comparison ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-5
    atol: float = 1e-6
    check_dtype: bool = False

    def describe(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


def is_not_gradable(value: Any) -> bool:
    """A reference answer saying the probe cannot run on this machine (kit.NotGradable)."""
    return isinstance(value, ErrorAnswer) and value.type.rsplit(".", 1)[-1] == "NotGradable"


def _kind(value: Any) -> str:
    if isinstance(value, NDArrayAnswer):
        return "array"
    if isinstance(value, ErrorAnswer):
        return "error"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "None"
    return type(value).__name__  # str, list, dict


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.8g}"
    if isinstance(value, np.generic):
        return _fmt(value.item())
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _where(path: str) -> str:
    return f" at {path}" if path else ""


def _as_array(value: Any) -> np.ndarray | None:
    """Numbers and 0-d arrays compare as arrays of shape (): numpy scalars and Python
    numbers are interchangeable for a probe (the course tolerates either for 0-d results)."""
    if isinstance(value, NDArrayAnswer):
        return value.array
    if _kind(value) in ("number", "bool"):
        return np.asarray(value)
    return None


def _compare_arrays(expected: np.ndarray, got: np.ndarray, tol: Tolerance, path: str):
    if expected.shape != got.shape:
        return f"shape{_where(path)}: expected {expected.shape}, got {got.shape}"
    if tol.check_dtype and expected.dtype != got.dtype:
        return f"dtype{_where(path)}: expected {expected.dtype}, got {got.dtype}"
    if expected.dtype.kind == "b" or got.dtype.kind == "b":
        if expected.dtype.kind != got.dtype.kind:
            return f"type{_where(path)}: expected a {expected.dtype} array, got {got.dtype}"
        bad = np.argwhere(expected != got)
        if bad.size:
            index = tuple(int(i) for i in bad[0])
            return (
                f"values{_where(path)} differ at index {index}: expected {expected[index]!r}, "
                f"got {got[index]!r} ({len(bad)} of {expected.size} elements differ)"
            )
        return None
    e = expected.astype(np.float64)
    g = got.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.isclose(g, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    if close.all():
        return None
    bad = np.argwhere(~close)
    index = tuple(int(i) for i in bad[0])
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(g - e)
        worst = np.nanmax(np.where(close, 0.0, error)) if error.size else 0.0
    shape = f" (shape {expected.shape})" if expected.ndim else ""
    at = f" at index {index}" if expected.ndim else ""
    return (
        f"values{_where(path)}{shape} differ{at}: expected {_fmt(float(e[index]))}, got "
        f"{_fmt(float(g[index]))}; {len(bad)} of {expected.size} elements outside tolerance "
        f"({tol.describe()}), largest difference {_fmt(float(worst))}"
    )


def compare(expected: Any, got: Any, tol: Tolerance, path: str = "") -> str | None:
    """None when ``got`` matches ``expected``; else a one-line explanation of the first
    difference (where, expected vs got, shapes, tolerance)."""
    ek, gk = _kind(expected), _kind(got)
    if ek == "error" or gk == "error":
        if ek == gk:
            if expected.type == got.type:
                return None
            return f"expected the error {expected.type}{_where(path)}, got {got.type}"
        if ek == "error":
            return f"expected the error {expected.type}{_where(path)}, got a {gk} value"
        return f"raised {got.type}{_where(path)}"
    e_array, g_array = _as_array(expected), _as_array(got)
    if e_array is not None and g_array is not None:
        if {ek, gk} == {"bool", "number"}:
            return f"type{_where(path)}: expected a {ek}, got a {gk}"
        return _compare_arrays(e_array, g_array, tol, path)
    if ek != gk:
        return f"type{_where(path)}: expected a {ek}, got a {gk}"
    if ek == "None":
        return None
    if ek == "str":
        if expected == got:
            return None
        return f"value{_where(path)}: expected {_fmt(expected)}, got {_fmt(got)}"
    if ek == "list":
        if len(expected) != len(got):
            return f"length{_where(path)}: expected {len(expected)} items, got {len(got)}"
        for index, (e, g) in enumerate(zip(expected, got)):
            problem = compare(e, g, tol, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if ek == "dict":
        if set(expected) != set(got):
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            return f"keys{_where(path)}: missing {missing}, unexpected {extra}"
        for key in expected:
            problem = compare(expected[key], got[key], tol, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    return f"cannot compare a {ek}{_where(path)}"  # unreachable for parsed answers
