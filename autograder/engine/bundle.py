"""The grading bundle: everything grading one homework needs, in one folder with a content key.

The authoring side builds it (``autograder.authoring.bundle``: the release, then a trusted run
of the probes on the reference-filled release); the engine only loads it. Local grading,
``check``, coverage and the Gradescope export all use the same bundle, so a grade cannot
depend on where it was computed::

    BUNDLE/
      bundle.json            name, points, accepted files, limits, build kind, backend,
                             reference key, a sha256 per file and the content key
      probes/HW.py           the hidden probe module
      blank/...              the student release as shipped (a submission is overlaid on it)
      reference/answers.json the reference answers, one set per input variant
                             ({"variants": [...]}; arrays in reference/arrays.npz)

The content key hashes every field and file; ``GradingBundle.load`` recomputes it and refuses
a bundle whose files do not match (a partial copy, an edited probe, stale answers).

Visibility (docs/running-a-class.md#feedback-visibility): what students see of each unit's row on
Gradescope, one of ``VISIBILITIES`` (Gradescope's own words); ``[grading.visibility]`` in
assignment.toml, or a course's override, sets it. Units not named are ``"visible"``, and a
bundle whose units are all visible stores no visibility at all (its manifest, content key and
results are those of a bundle made before visibility existed).

Variants (docs/grading.md#variants): the probes' seeded inputs come in ``variant_count``
variants (``kit.derive_seed``; ``[grading] variants`` in assignment.toml, default 3), and the
bundle holds the reference answers of each, so the grader can grade a submission on any of
them. Variant 0 is the probes' inputs as written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from autograder.engine import answers as answer_io
from autograder.engine.probes import ProbeSuite, load_suite
from autograder.engine.workspace import read_tree, write_tree

BUNDLE_FORMAT = 3  # 3: reference answers per input variant
MANIFEST = "bundle.json"
# Gradescope's test visibilities: shown at once, after the due date, never, or once grades are
# published. "visible" is the default and is never stored.
VISIBILITIES = ("visible", "after_due_date", "hidden", "after_published")


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or altered; the message says which."""


@dataclasses.dataclass
class GradingBundle:
    """One homework, ready to grade: points, accepted files, probes, blank release, answers."""

    name: str
    points: dict[str, float]
    accept: tuple[str, ...]
    max_file_bytes: int
    backend: str
    build: str  # "none", "ext" (one pybind11 module per src/*.cpp) or "cmake"
    suite: ProbeSuite
    blank: dict[str, bytes]  # student path -> bytes of the release as shipped
    reference_key: str  # what the reference answers were computed from
    reference: dict[str, dict[str, Any]]  # variant 0: unit -> case -> answer
    variants: list[dict[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    # ^ the answers of variants 1, 2, ... (same units and cases as ``reference``)
    visibility: dict[str, str] = dataclasses.field(default_factory=dict)
    # ^ unit -> one of VISIBILITIES, for units that are not "visible"
    key: str = ""  # the content key (set by save/load)
    root: Path | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Replacing variant 0's answers (a bundle re-made for another probe module) leaves the
        # other variants' answers without their probes: drop them.
        if name == "reference" and "variants" in self.__dict__:
            object.__setattr__(self, "variants", [])
        object.__setattr__(self, name, value)

    @property
    def variant_count(self) -> int:
        return 1 + len(self.variants)

    def answers(self, variant: int) -> dict[str, dict[str, Any]]:
        """The reference answers of ``variant`` (0 .. variant_count - 1): unit -> case -> answer."""
        if not 0 <= variant < self.variant_count:
            raise ValueError(f"{self.name}: no variant {variant} (0..{self.variant_count - 1})")
        return self.reference if variant == 0 else self.variants[variant - 1]

    def visibility_of(self, unit: str) -> str:
        """Gradescope's visibility of ``unit``'s row in results.json."""
        return self.visibility.get(unit, "visible")

    @property
    def max_score(self) -> float:
        return float(sum(self.points.values()))

    def not_gradable_units(self) -> dict[str, str]:
        """Units none of whose cases this bundle's reference could run (e.g. CUDA without a
        GPU), with the reason: they are left out of ``max_score``."""
        found = {}
        for unit in self.points:
            answers = list(self.reference.get(unit, {}).values())
            if answers and all(answer_io.is_not_gradable(a) for a in answers):
                found[unit] = answers[0].message[:300]
        return found

    @property
    def gradable_max_score(self) -> float:
        skipped = self.not_gradable_units()
        return float(sum(p for unit, p in self.points.items() if unit not in skipped))

    def check(self) -> None:
        """Every unit with points has probes and every probed unit has points."""
        mismatch = unit_mismatch(self.name, self.points, self.suite)
        if mismatch:
            raise BundleError(mismatch)
        problem = visibility_problem(self.name, self.points, self.visibility)
        if problem:
            raise BundleError(problem)
        unanswered = [u for u in self.points if u not in self.reference]
        if unanswered:
            raise BundleError(f"{self.name}: no reference answers for {unanswered}")
        shape = {unit: sorted(cases) for unit, cases in self.reference.items()}
        for number, answers in enumerate(self.variants, start=1):
            if {unit: sorted(cases) for unit, cases in answers.items()} != shape:
                raise BundleError(
                    f"{self.name}: the reference answers of variant {number} are not for the "
                    "same cases as variant 0's"
                )

    # -- on disk ----------------------------------------------------------------------------

    def _meta(self) -> dict:
        meta = {
            "format": BUNDLE_FORMAT,
            "name": self.name,
            "points": [[unit, points] for unit, points in self.points.items()],  # in order
            "accept": list(self.accept),
            "max_file_bytes": self.max_file_bytes,
            "backend": self.backend,
            "build": self.build,
            "reference_key": self.reference_key,
            "probes_sha256": self.suite.digest,
            "variants": self.variant_count,
        }
        if self.visibility:  # absent when every unit is visible: older keys stay valid
            meta["visibility"] = dict(sorted(self.visibility.items()))
        return meta

    def files(self) -> dict[str, bytes]:
        """The bundle's files (besides the manifest), by path inside the bundle."""
        arrays: dict[str, np.ndarray] = {}
        stored = {
            "variants": [
                {
                    unit: {case: answer_io.to_storable(v, arrays) for case, v in cases.items()}
                    for unit, cases in self.answers(variant).items()
                }
                for variant in range(self.variant_count)
            ]
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: names -> arrays
        files = {f"probes/{self.name}.py": self.suite.source.encode("utf-8")}
        files.update({f"blank/{path}": data for path, data in self.blank.items()})
        files["reference/answers.json"] = json.dumps(stored, sort_keys=True).encode()
        files["reference/arrays.npz"] = buffer.getvalue()
        return files

    def save(self, folder: Path) -> Path:
        """Write the bundle to ``folder`` (replaced atomically); returns the folder."""
        folder = Path(folder)
        files = self.files()
        meta = self._meta()
        meta["files"] = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
        meta["key"] = content_key(meta)
        staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{id(self)}")
        shutil.rmtree(staging, ignore_errors=True)
        write_tree(files, staging)
        (staging / MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.chmod(staging / MANIFEST, 0o644)
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
        self.key, self.root = meta["key"], folder
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GradingBundle:
        """The bundle in ``folder``, after checking every file against its manifest."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as error:
            raise BundleError(f"{folder}: no readable {MANIFEST} ({error})") from None
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{folder}: bundle format {meta.get('format')!r} is not supported")
        if content_key(meta) != meta.get("key"):
            raise BundleError(f"{folder}: the manifest does not match its content key")
        files = read_tree(folder)
        files.pop(MANIFEST, None)
        listed = meta["files"]
        if set(files) != set(listed):
            odd = sorted(set(files) ^ set(listed))[:5]
            raise BundleError(f"{folder}: files differ from the manifest: {odd}")
        for path, data in files.items():
            if hashlib.sha256(data).hexdigest() != listed[path]:
                raise BundleError(f"{folder}: {path} was changed after the bundle was built")
        stored = json.loads(files["reference/answers.json"])
        with np.load(io.BytesIO(files["reference/arrays.npz"]), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        every = [
            {
                unit: {case: answer_io.from_storable(v, arrays) for case, v in cases.items()}
                for unit, cases in answers.items()
            }
            for answers in stored["variants"]
        ]
        if not every or len(every) != meta.get("variants"):
            raise BundleError(f"{folder}: the reference answers do not hold every variant")
        blank = {p[len("blank/") :]: d for p, d in files.items() if p.startswith("blank/")}
        bundle = cls(
            name=meta["name"],
            points={unit: float(points) for unit, points in meta["points"]},
            accept=tuple(meta["accept"]),
            max_file_bytes=int(meta["max_file_bytes"]),
            backend=meta["backend"],
            build=meta["build"],
            suite=load_suite(folder / "probes" / f"{meta['name']}.py"),
            blank=blank,
            reference_key=meta["reference_key"],
            reference=every[0],
            variants=every[1:],
            visibility=dict(meta.get("visibility", {})),
            key=meta["key"],
            root=folder,
        )
        if bundle.suite.digest != meta["probes_sha256"]:
            raise BundleError(
                f"{folder}: the probe kit of this engine differs from the one the bundle was "
                "built with; rebuild the bundle"
            )
        bundle.check()
        return bundle


def unit_mismatch(name: str, points: dict[str, float], suite: ProbeSuite) -> str | None:
    """What is wrong when the graded units and the probed units differ (None: nothing)."""
    missing = [u for u in points if u not in suite.units]
    extra = [u for u in suite.units if u not in points]
    if not (missing or extra):
        return None
    return (
        f"{name}: units with points but no probes: {missing or 'none'}; "
        f"probes of units without points: {extra or 'none'}"
    )


def visibility_problem(name: str, points: dict, visibility: dict) -> str | None:
    """What is wrong with a unit -> visibility table (None: nothing)."""
    unknown = sorted(set(visibility) - set(points))
    if unknown:
        return f"{name}: visibility of units that are not graded: {unknown}"
    odd = {u: v for u, v in visibility.items() if v not in VISIBILITIES}
    if odd:
        return f"{name}: visibility must be one of {', '.join(VISIBILITIES)}; got {odd}"
    return None


def shown_visibility(visibility: dict[str, str]) -> dict[str, str]:
    """The table a bundle stores: units that are not "visible", in a stable order."""
    return {unit: v for unit, v in sorted(visibility.items()) if v != "visible"}


def content_key(meta: dict) -> str:
    """The hash of a manifest's fields and file hashes (everything but the key itself)."""
    fields = {name: value for name, value in meta.items() if name != "key"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]
