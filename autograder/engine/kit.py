"""The probe kit: what a hidden probe module imports.

A probe is a small function tagged with the grading unit it belongs to. It builds fixed,
seeded inputs, calls the submission, and *returns an answer*: plain data (numbers, strings,
lists, dicts, numpy arrays, shapes, dtype names). It never asserts and never knows the right
answer: the trusted grader compares what it returns with what the same probe returned on the
reference library.

This module runs on both sides of the trust boundary (inside the sandbox, where it is the only
piece of the autograder package that is visible, and in the grader, which reads the probes'
metadata), so it depends on the standard library and numpy only.

Example::

    from autograder.engine.kit import probe, randn

    @probe("forward", rtol=1e-5)
    def divide_scalar():
        import needle as ndl   # import the submission inside the probe, never at module level

        x = ndl.Tensor(randn(3, 4, seed=11))
        return ndl.divide_scalar(x, 2.5).numpy()
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import numpy as np

PROBE_ATTRIBUTE = "__needle_probe__"


@dataclasses.dataclass(frozen=True)
class ProbeInfo:
    """Metadata of one probe (one graded case).

    Attributes:
        unit: the grading unit, a key of ``[grading.points]`` such as ``"forward"``
            (docs/course.md#grading-units).
        name: the probe function's name; it names the case in feedback.
        rtol, atol: tolerance for numbers and arrays:
            ``|got - expected| <= atol + rtol * |expected|``.
        check_dtype: also require array dtypes to match the reference exactly.
        weight: relative weight of the case inside its unit.
    """

    unit: str
    name: str
    rtol: float = 1e-5
    atol: float = 1e-6
    check_dtype: bool = False
    weight: float = 1.0


def probe(
    unit: str,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    check_dtype: bool = False,
    weight: float = 1.0,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Tag a zero-argument function as a probe of ``unit``."""

    def tag(function: Callable[[], Any]) -> Callable[[], Any]:
        info = ProbeInfo(unit, function.__name__, rtol, atol, check_dtype, weight)
        setattr(function, PROBE_ATTRIBUTE, info)
        return function

    return tag


def probes_of(module: Any, unit: str | None = None) -> list[tuple[ProbeInfo, Callable[[], Any]]]:
    """The probes a module defines (all, or those of one unit), in source order."""
    found = []
    for value in vars(module).values():
        info = getattr(value, PROBE_ATTRIBUTE, None)
        if isinstance(info, ProbeInfo) and (unit is None or info.unit == unit):
            found.append((value.__code__.co_firstlineno, info, value))
    found.sort(key=lambda item: item[0])
    return [(info, function) for _, info, function in found]


# --- seeded inputs -------------------------------------------------------------------------
# Probes seed every input they make, so an answer depends only on the submission and the
# VARIANT. A grading bundle holds reference answers for several variants of the same probes;
# the grader picks one per submission (unpredictably) and tells the runner, which calls
# ``set_variant`` before any probe runs. Every seed a probe passes to the generators below is
# first mixed with the variant (``derive_seed``): variant 0 keeps the seeds as written, so
# its inputs are exactly those of a probe module read on its own; variant 1, 2... draw other
# inputs from the same distributions. Answers leaked or guessed in one run therefore do not
# fit the next one (docs/grading.md#variants).

_variant = 0


def set_variant(variant: int) -> None:
    """Select the input variant for every seeded generator of this process (the runner does)."""
    global _variant
    if type(variant) is not int or variant < 0:
        raise ValueError(f"a variant is a non-negative int, got {variant!r}")
    _variant = variant


def current_variant() -> int:
    return _variant


def derive_seed(seed: int) -> int:
    """The seed actually used for a probe's ``seed=K``: K itself in variant 0, else a 32-bit
    hash of (variant, K) (32 bits so that ``np.random.seed`` accepts it too)."""
    if _variant == 0:
        return seed
    text = f"needle-variant:{_variant}:{int(seed)}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big")


def seed(seed: int) -> None:
    """``np.random.seed`` for the variant: use it instead of ``np.random.seed(K)`` where the
    submission draws from numpy's global generator (module initialisers)."""
    np.random.seed(derive_seed(seed))


def rng(seed: int) -> np.random.Generator:
    """``np.random.default_rng`` for the variant: use it instead of ``default_rng(K)`` for
    inputs a probe draws itself."""
    return np.random.default_rng(derive_seed(seed))


def randn(*shape: int, seed: int, scale: float = 1.0, dtype: str = "float32") -> np.ndarray:
    """Standard normal samples of ``shape`` from ``rng(seed)``."""
    return (rng(seed).standard_normal(shape) * scale).astype(dtype)


def rand(
    *shape: int, seed: int, low: float = 0.0, high: float = 1.0, dtype: str = "float32"
) -> np.ndarray:
    """Uniform samples in ``[low, high)`` of ``shape`` from ``rng(seed)``."""
    return rng(seed).uniform(low, high, shape).astype(dtype)


def randint(*shape: int, seed: int, low: int, high: int, dtype: str = "int64") -> np.ndarray:
    """Integers in ``[low, high)`` of ``shape`` from ``rng(seed)``."""
    return rng(seed).integers(low, high, shape).astype(dtype)


class NotGradable(RuntimeError):
    """Raise it in a probe when *this machine* cannot run the probe (e.g. a CUDA probe without
    a GPU). When the reference raises it, the grader reports the case as not graded here (no
    points, the message as the reason) instead of refusing to grade; it is never a pass.
    (Matched by class name, so a probe module may define its own ``NotGradable``.)"""


def error_name(exception: BaseException) -> str:
    """The name an answer uses for an exception's type: ``ValueError``, ``needle.x.MyError``."""
    kind = type(exception)
    module = getattr(kind, "__module__", "") or ""
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def raises(function: Callable[[], Any]) -> str | None:
    """Call ``function``; the answer is the name of the exception it raised, or None.

    Use it for probes whose right answer is an error (``reshape`` to an impossible shape)."""
    try:
        function()
    except Exception as exception:  # the probe's answer is the kind of failure
        return error_name(exception)
    return None
