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
import re
from typing import Any

import numpy as np

MAX_ARRAY_BYTES = 64 * 1024 * 1024
MAX_CASES = 10_000
# The grader's own memory: json.loads of a record costs ~50-100 bytes per element, so every
# record is pre-scanned (bytes.count, no parsing) and refused above these budgets.
MAX_RECORD_BYTES = 96 * 1024 * 1024  # a record above any array the answer budget allows
MAX_RECORD_ELEMENTS = 200_000  # JSON values in one record (upper bound: , [ { counted)
MAX_UNIT_ELEMENTS = 1_000_000  # the same, summed over the records of one unit
EXTRA_RECORDS = 4  # records read beyond one per expected case plus start and done
MAX_INT_DIGITS = 40  # an integer answer this long is not an answer (and overflows floats)
MAX_TYPE_CHARS = 120
MAX_MESSAGE_CHARS = 1000
MAX_FRAME_FILE_CHARS = 240
MAX_FRAME_FUNCTION_CHARS = 80
MAX_FRAMES = 30

# ANSI escape sequences (CSI, OSC, two-byte ESC forms) and every other C0/C1 control
# character except newline and tab. DEL included.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # the rest of C0 (\n, \t kept), DEL and C1
)
_UNICODE_CONTROLS = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def safe_text(text: str, limit: int) -> str:
    """Student-derived text made safe to show, ONCE, where it enters the grader: cut to
    ``limit`` characters (cut first, so the work stays bounded), terminal escape sequences,
    control characters (all but newline and tab) and bidi overrides removed."""
    if not isinstance(text, str):
        text = str(text)
    cut = len(text) > limit
    text = text[: limit * 2] if cut else text
    text = _ESCAPES.sub("", text)
    text = _UNICODE_CONTROLS.sub("", text)
    if len(text) > limit or cut:
        text = text[: max(0, limit - 10)] + " [... cut]"
    return text


def safe_name(text: str, limit: int = 160) -> str:
    """A student-chosen name (a file or member name) on one line: safe_text without
    newlines or tabs."""
    return safe_text(text, limit).replace("\n", " ").replace("\t", " ")


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_<>][A-Za-z0-9_<>]*)*")


def safe_type_name(text: str) -> str:
    """An exception type name as sent by the sandbox: a dotted identifier, else a placeholder
    (a class made at run time may have any string for a name)."""
    if len(text) <= MAX_TYPE_CHARS and _IDENTIFIER.fullmatch(text):
        return text
    return "<unnamed exception type>"


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


def _check_npy_header(data: bytes) -> None:
    """The array a .npy header declares must fit in the bytes that follow it (np.load would
    otherwise allocate what the header claims before finding the data short)."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if len(shape) > 32 or any(type(n) is not int or n < 0 for n in shape):
        raise InvalidAnswer("an array has a bad shape")
    count = 1
    for n in shape:
        count *= n
    if count * max(dtype.itemsize, 1) > len(data) or count > MAX_ARRAY_BYTES:
        raise InvalidAnswer("an array declares more data than it holds")


def _load_npy(encoded: Any) -> NDArrayAnswer:
    if not isinstance(encoded, str) or len(encoded) > MAX_ARRAY_BYTES * 4 // 3 + 8:
        raise InvalidAnswer("bad array")
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
        _check_npy_header(data)
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
    if raw is None or kind is bool:
        return raw
    if kind is str:
        return safe_text(raw, MAX_STRING_CHARS)
    if kind is int:
        # float(10**400) overflows, and no probe answers with a number that long.
        if abs(raw) >= 1 << 63:
            raise InvalidAnswer("an integer answer is out of range")
        return raw
    if kind is float:
        return raw
    if kind is list:
        return [parse_value(item, depth + 1) for item in raw]
    if kind is dict:
        if set(raw) == {"$npy"}:
            return _load_npy(raw["$npy"])
        if set(raw) == {"$dict"} and type(raw["$dict"]) is dict:
            return {
                safe_name(str(k), 200): parse_value(v, depth + 1) for k, v in raw["$dict"].items()
            }
    raise InvalidAnswer(f"value of type {kind.__name__} is not an answer")


MAX_STRING_CHARS = 10_000


def _parse_error(raw: Any) -> ErrorAnswer:
    if type(raw) is not dict:
        raise InvalidAnswer("bad error record")
    kind, message, frames = raw.get("type"), raw.get("message", ""), raw.get("frames", [])
    if type(kind) is not str or type(message) is not str or type(frames) is not list:
        raise InvalidAnswer("bad error record")
    parsed = []
    for frame in frames[-MAX_FRAMES:]:
        if (
            type(frame) is list
            and len(frame) == 3
            and type(frame[0]) is str
            and type(frame[1]) is int
            and type(frame[2]) is str
            and 0 <= frame[1] < 10_000_000
        ):
            parsed.append(
                (
                    safe_name(frame[0], MAX_FRAME_FILE_CHARS),
                    frame[1],
                    safe_name(frame[2], MAX_FRAME_FUNCTION_CHARS),
                )
            )
    return ErrorAnswer(safe_type_name(kind), safe_text(message, MAX_MESSAGE_CHARS), tuple(parsed))


def element_bound(line: bytes) -> int:
    """An upper bound on the JSON values in ``line``, without parsing it: every value
    after the first is preceded by a comma or opens a container (commas and brackets inside
    strings only make the bound looser). Arrays travel as base64 strings, which hold none."""
    return line.count(b",") + line.count(b"[") + line.count(b"{") + 1


def read_answers(records: list[bytes], expected_cases: list[str]) -> UnitAnswers:
    """Parse the answer records of one run. Never raises on bad content: problems are
    listed and the affected cases are simply missing (or answered "invalid answer").

    The grader's memory is bounded whatever the records hold: at most one record per
    expected case plus a few is read, each is pre-scanned for its size and element count
    before ``json.loads``, and the elements of all records of the unit share one budget."""
    result = UnitAnswers(cases={})
    wanted = set(expected_cases)
    most = min(MAX_CASES, len(wanted)) + 2 + EXTRA_RECORDS
    if len(records) > most:
        result.problems.append(f"{len(records)} answer records; only the first {most} were read")
    budget = MAX_UNIT_ELEMENTS
    for number, line in enumerate(records[:most]):
        case_hint = _case_of(line, wanted)
        elements = element_bound(line)
        if len(line) > MAX_RECORD_BYTES or elements > min(MAX_RECORD_ELEMENTS, budget):
            result.problems.append(f"answer record {number + 1} is too large")
            if case_hint is not None and case_hint not in result.cases:
                result.cases[case_hint] = ErrorAnswer(
                    "InvalidAnswer", "the answer is too large to be read", ()
                )
            continue
        budget -= elements
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
            message = safe_text(str(problem), 300)
            result.cases[case] = ErrorAnswer("InvalidAnswer", message, ())
        except (RecursionError, MemoryError, OverflowError, ValueError):
            result.cases[case] = ErrorAnswer("InvalidAnswer", "the answer cannot be read", ())
    return result


def _case_of(line: bytes, wanted: set[str]) -> str | None:
    """The case a record names, found without parsing it (for records too large to parse)."""
    head = line[:400]
    for case in wanted:
        if b'"case": "' + case.encode() + b'"' in head:
            return case
    return None


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


def kind_of(value: Any) -> str:
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
    if kind_of(value) in ("number", "bool"):
        try:
            array = np.asarray(value)
        except (OverflowError, ValueError, TypeError):
            return np.asarray(np.nan)
        return array if array.dtype.kind in "biuf" else np.asarray(np.nan)  # 10**400: object
    return None


def _compare_arrays(expected: np.ndarray, got: np.ndarray, tol: Tolerance, path: str):
    # Feedback policy (docs/feedback-policy.md): shapes, dtypes, the index of the first
    # difference, how many elements differ and the tolerance; never an expected value, nor
    # anything computed from one (a difference, a boolean that is simply "not expected").
    if expected.shape != got.shape:
        return f"shape{_where(path)}: expected {expected.shape}, got {got.shape}"
    if tol.check_dtype and expected.dtype != got.dtype:
        return f"dtype{_where(path)}: expected {expected.dtype}, got {got.dtype}"
    if expected.dtype.kind == "b" or got.dtype.kind == "b":
        if expected.dtype.kind != got.dtype.kind:
            return f"type{_where(path)}: expected a {expected.dtype} array, got {got.dtype}"
        bad = np.argwhere(expected != got)
        if len(bad):  # (not .size: argwhere of a 0-d array has shape (n, 0))
            index = tuple(int(i) for i in bad[0])
            at = f" at index {index}" if expected.ndim else ""
            return (
                f"values{_where(path)} differ{at} ({len(bad)} of {expected.size} elements "
                "differ from the expected values)"
            )
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        e = expected.astype(np.float64)
        g = got.astype(np.float64)
        close = np.isclose(g, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    if close.all():
        return None
    bad = np.argwhere(~close)
    index = tuple(int(i) for i in bad[0])
    shape = f" (shape {expected.shape})" if expected.ndim else ""
    at = f" at index {index}" if expected.ndim else ""
    return (
        f"values{_where(path)}{shape} differ{at}: got {_fmt(float(g[index]))}, which is "
        f"outside tolerance of the expected value ({tol.describe()}); {len(bad)} of "
        f"{expected.size} elements outside tolerance"
    )


def compare(expected: Any, got: Any, tol: Tolerance, path: str = "") -> str | None:
    """None when ``got`` matches ``expected``; else a one-line explanation of the first
    difference (where, shapes, tolerance, the student's own value) that never shows an
    expected value (docs/feedback-policy.md)."""
    ek, gk = kind_of(expected), kind_of(got)
    if ek == "error" or gk == "error":
        if ek == gk:
            if expected.type == got.type:
                return None
            return f"raised {got.type}{_where(path)}, which is not the expected error"
        if ek == "error":
            return f"expected an error to be raised{_where(path)}, got a {gk} value"
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
        return f"value{_where(path)}: got {_fmt(got)}, which is not the expected string"
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
            missing = len(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))[:5]
            return f"keys{_where(path)}: {missing} expected keys missing, unexpected {extra}"
        for key in expected:
            problem = compare(expected[key], got[key], tol, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    return f"cannot compare a {ek}{_where(path)}"  # unreachable for parsed answers
