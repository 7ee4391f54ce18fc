"""Building grading bundles (``autograder.engine.bundle``): the authoring side's one product
for grading.

``build_bundle(hw)`` renders the homework's blank and reference-filled releases, runs the
hidden probes on the reference (outside any sandbox: it is our own code) once per input
variant (``[grading] variants``, see ``autograder.engine.kit.derive_seed``), and saves the
bundle under ``build/autograder/bundles/HW/KEY/``. KEY hashes every input (probes, kit,
runner, both releases, points, limits, the number of variants, the runtime), so a bundle
is rebuilt exactly when something it was made from changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from autograder.authoring.assignment import Assignment, AssignmentError, load
from autograder.authoring.release import ReleaseError, render_release
from autograder.engine import answers as answer_io
from autograder.engine.bundle import (
    BundleError,
    GradingBundle,
    shown_visibility,
    unit_mismatch,
    visibility_problem,
)
from autograder.engine.grading import (
    GRADER_VERSION,
    RUNNER_PATH,
    GraderSetupError,
    ProbeRunner,
    Scratch,
    effective_limits,
)
from autograder.engine.paths import BUILD_DIR
from autograder.engine.probes import ProbeModuleError, load_suite
from autograder.engine.runtime import ensure_runtime
from autograder.engine.sandbox import SandboxLimits, TrustedRunner, describe_end
from autograder.engine.workspace import build_workspace, tree_digest, write_tree


def bundles_dir(build_dir: Path = BUILD_DIR) -> Path:
    return Path(build_dir) / "autograder" / "bundles"


def build_bundle(
    hw: str,
    assignment: Assignment | None = None,
    build_dir: Path = BUILD_DIR,
    log: Callable[[str], None] = print,
    visibility: dict[str, str] | None = None,
) -> GradingBundle:
    """The grading bundle of ``hw``: loaded from the cache, or built now and saved.

    ``visibility``: per-unit visibilities over those of assignment.toml (a course's
    ``[homeworks.HW.visibility]``). A bundle with some unit not "visible" is the plain
    bundle with the table added, saved in a folder of its own next to it (the reference
    answers are not computed again)."""
    assignment = assignment or _load_assignment(hw)
    bundle = _reference_bundle(hw, assignment, build_dir, log)
    return with_visibility(bundle, {**assignment.visibility, **(visibility or {})}, log)


def with_visibility(
    bundle: GradingBundle, visibility: dict[str, str], log: Callable[[str], None] = print
) -> GradingBundle:
    """``bundle`` (saved, without a visibility table) with ``visibility``: itself when every
    unit is visible, else a copy saved next to it in a folder named after the table."""
    shown = shown_visibility(visibility)
    problem = visibility_problem(bundle.name, bundle.points, shown)
    if problem:
        raise GraderSetupError(problem)
    if not shown:
        return bundle
    assert bundle.root is not None and not bundle.visibility
    tag = hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:12]
    folder = bundle.root.with_name(f"{bundle.root.name}-visibility-{tag}")
    if folder.is_dir():
        try:
            return GradingBundle.load(folder)
        except BundleError as error:
            log(f"rebuilding the grading bundle of {bundle.name} with visibility: {error}")
    shaped = dataclasses.replace(bundle, visibility=shown, key="", root=None)
    shaped.save(folder)
    return shaped


def _load_assignment(hw: str) -> Assignment:
    try:
        return load(hw)
    except AssignmentError as error:
        raise GraderSetupError(str(error)) from None


def _reference_bundle(
    hw: str, assignment: Assignment, build_dir: Path, log: Callable[[str], None]
) -> GradingBundle:
    """The bundle with reference answers and no visibility table (cached by input key)."""
    try:
        if not assignment.probes:
            raise GraderSetupError(f"{hw}: assignment.toml names no [grading] probes")
        probes = assignment.root / assignment.probes
        if not probes.is_file():
            raise GraderSetupError(f"{hw}: no probe module {assignment.probes} yet")
        suite = load_suite(probes)
        blank = render_release(assignment, fill=False, earlier="filled")  # earlier hws: reference
        reference_files = render_release(assignment, fill=True)
    except (AssignmentError, ReleaseError, ProbeModuleError) as error:
        raise GraderSetupError(str(error)) from None
    runtime = ensure_runtime()
    parts = [
        GRADER_VERSION,
        suite.digest,
        hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest(),
        tree_digest(reference_files),
        tree_digest(blank),
        assignment.backend,
        assignment.build,
        json.dumps(
            [dict(assignment.points), list(assignment.accept), assignment.max_file_bytes],
            sort_keys=True,
        ),
        runtime.key,
        f"variants={assignment.variants}",
    ]
    reference_key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
    folder = bundles_dir(build_dir) / assignment.name / reference_key
    if folder.is_dir():
        try:
            return GradingBundle.load(folder)
        except BundleError as error:
            log(f"rebuilding the grading bundle of {assignment.name}: {error}")
            shutil.rmtree(folder, ignore_errors=True)
    bundle = GradingBundle(
        name=assignment.name,
        points={unit: float(p) for unit, p in assignment.points.items()},
        accept=tuple(assignment.accept),
        max_file_bytes=assignment.max_file_bytes,
        backend=assignment.backend,
        build=assignment.build,
        suite=suite,
        blank=blank,
        reference_key=reference_key,
        reference={},
    )
    mismatch = unit_mismatch(bundle.name, bundle.points, suite)
    if mismatch:
        raise GraderSetupError(mismatch)
    log(
        f"computing reference answers for {bundle.name}, {assignment.variants} input "
        "variant(s) (saved in its grading bundle)"
    )
    every = reference_answers_by_variant(bundle, reference_files, log, range(assignment.variants))
    bundle.reference = every[0]
    bundle.variants = every[1:]
    bundle.save(folder)
    return bundle


def reference_answers(
    bundle: GradingBundle, reference_files: dict[str, bytes], log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """The probes' answers on the reference-filled release for variant 0 (the seeds as
    written), unit by unit (trusted run)."""
    return reference_answers_by_variant(bundle, reference_files, log, [0])[0]


def reference_answers_by_variant(
    bundle: GradingBundle,
    reference_files: dict[str, bytes],
    log: Callable[[str], None],
    variants: Iterable[int],
) -> list[dict[str, dict[str, Any]]]:
    """The probes' answers on the reference-filled release, for each of ``variants``, unit by
    unit (trusted run; the reference is built once)."""
    runtime = ensure_runtime()
    scratch = Scratch()
    try:
        workspace = scratch.new("reference") / "work"
        write_tree(reference_files, workspace)
        runner = TrustedRunner()
        limits = SandboxLimits()
        built, build_log = build_workspace(
            workspace,
            runner,
            runtime,
            bundle.build,
            bundle.suite.setting("BUILD"),
            limits,
            scratch.new("build"),
        )
        if not built:
            raise GraderSetupError(f"the reference does not compile:\n{build_log[-3000:]}")
        probes = ProbeRunner(bundle.suite, bundle.backend, runtime, scratch)
        every: list[dict[str, dict[str, Any]]] = []
        problems = []
        for variant in variants:
            reference: dict[str, dict[str, Any]] = {}
            tag = f" (variant {variant})" if variant else ""
            for unit in bundle.suite.units:
                unit_limits = effective_limits(limits, bundle.suite, unit, {})
                parsed, result = probes.run(unit, workspace, runner, unit_limits, variant)
                for info in bundle.suite.cases[unit]:
                    value = parsed.cases.get(info.name)
                    if value is None:
                        problems.append(
                            f"{unit}/{info.name}{tag}: no answer "
                            f"({describe_end(result, unit_limits)})\n" + result.output[-2000:]
                        )
                    elif answer_io.is_not_gradable(value):
                        if not variant:
                            log(f"{unit}/{info.name}: not gradable here: {value.message}")
                    elif isinstance(value, answer_io.ErrorAnswer):
                        where = "".join(f"\n    {f}:{n} in {fn}" for f, n, fn in value.frames[-4:])
                        problems.append(
                            f"{unit}/{info.name}{tag}: {value.type}: {value.message}{where}"
                        )
                reference[unit] = parsed.cases
            every.append(reference)
    finally:
        scratch.close()
    if problems:
        raise GraderSetupError(
            f"{bundle.name}: the reference fails {len(problems)} probe(s); fix the "
            "probes or the reference before grading:\n  " + "\n  ".join(problems[:20])
        )
    return every


class Homework:
    """The authoring view of a homework: its grading bundle and the reference-filled release
    (which never leaves the authoring side). Attributes of the bundle read through."""

    def __init__(self, bundle: GradingBundle, reference: dict[str, bytes]):
        self.bundle = bundle
        self.reference = reference  # student path -> bytes of the reference-filled release

    @classmethod
    def load(cls, hw: str, assignment: Assignment | None = None) -> Homework:
        try:
            assignment = assignment or load(hw)
            reference = render_release(assignment, fill=True)
        except (AssignmentError, ReleaseError) as error:
            raise GraderSetupError(str(error)) from None
        return cls(build_bundle(hw, assignment), reference)

    def __getattr__(self, name: str):
        return getattr(self.bundle, name)
