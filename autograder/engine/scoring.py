"""Scoring: compare a unit's answers with the reference answers, case by case.

A case passes when its answer matches the reference within the probe's tolerance; a unit
scores its points times the weighted share of its passing cases. Nothing else counts: not
the exit status, not what was printed, not how the process ended.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from autograder.engine import answers as answer_io
from autograder.engine.probes import ProbeSuite
from autograder.engine.sandbox import RunResult, SandboxLimits, describe_end


@dataclasses.dataclass
class CaseOutcome:
    name: str
    weight: float
    passed: bool
    explanation: str = ""
    student_text: bool = False  # the explanation quotes text the submission chose
    graded: bool = True  # False: this grader cannot run the case (e.g. no GPU); not counted


@dataclasses.dataclass
class UnitOutcome:
    unit: str
    points: float
    cases: list[CaseOutcome]
    ended: str  # how the sandboxed run ended ("finished", "stopped: CPU time limit ...")
    wall_s: float
    output_tail: str = ""

    @property
    def graded(self) -> bool:
        """False when no case of the unit can be graded here: it is left out of max_score."""
        return any(c.graded for c in self.cases)

    @property
    def max_score(self) -> float:
        return self.points if self.graded else 0.0

    @property
    def not_graded_reason(self) -> str:
        reason = next((c.explanation for c in self.cases if not c.graded), "")
        return reason.removeprefix("not graded here: ")

    @property
    def score(self) -> float:
        total = sum(c.weight for c in self.cases if c.graded)
        passed = sum(c.weight for c in self.cases if c.passed and c.graded)
        return round(self.points * passed / total, 4) if total else 0.0


def score_unit(
    suite: ProbeSuite,
    reference: dict[str, Any],
    points: float,
    unit: str,
    parsed: answer_io.UnitAnswers,
    result: RunResult,
    limits: SandboxLimits,
    explain_error: Callable[[answer_io.ErrorAnswer], str],
) -> UnitOutcome:
    """The outcome of ``unit``: each of its cases against ``reference`` (case -> answer)."""
    ended = describe_end(result, limits)
    cases = []
    for info in suite.cases[unit]:
        expected = reference[info.name]
        got = parsed.cases.get(info.name)
        tolerance = answer_io.Tolerance(info.rtol, info.atol, info.check_dtype)
        if answer_io.is_not_gradable(expected):  # never a pass, and never counted
            reason = f"not graded here: {expected.message[:300]}"
            cases.append(CaseOutcome(info.name, info.weight, False, reason, graded=False))
            continue
        if got is None:
            why = ended
            if ended == "finished":  # status 0, yet the runner did not finish
                why = (
                    "the probe process exited early with status 0 (does the code call "
                    "exit() or sys.exit()?)"
                )
            cases.append(CaseOutcome(info.name, info.weight, False, f"no answer: {why}"))
            continue
        cases.append(_judge(info, expected, got, tolerance, explain_error))
    return UnitOutcome(unit, points, cases, ended, result.wall_s, result.output[-2000:])


def _judge(info, expected: Any, got: Any, tolerance, explain_error) -> CaseOutcome:
    """One case. Whatever the answer holds, this never raises: an answer that cannot be
    compared or explained is an invalid answer for this case, not an internal error."""
    try:
        problem = answer_io.compare(expected, got, tolerance)
        if problem is None:
            return CaseOutcome(info.name, info.weight, True)
        quoted = answer_io.kind_of(got) in ("str", "dict", "list", "error")
        if isinstance(got, answer_io.ErrorAnswer) and not isinstance(
            expected, answer_io.ErrorAnswer
        ):
            problem = explain_error(got)
        return CaseOutcome(info.name, info.weight, False, problem, student_text=quoted)
    except Exception as error:  # noqa: BLE001 - a bad answer must not stop the grading
        kind = type(error).__name__
        return CaseOutcome(info.name, info.weight, False, f"invalid answer ({kind})")
