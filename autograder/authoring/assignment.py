"""A homework's description: ``assignments/hwN/assignment.toml`` loaded into a dataclass.

Schema (every key below; optional ones show their default)::

    [assignment]
    name = "hw1"                      # must equal the folder name
    title = "Automatic differentiation"
    tags = ["hw1"]                    # marker tags this homework's student writes (stubbed)
    notebook = "solutions/hw1.ipynb"  # the instructor's master notebook (optional)
    earlier = "filled"                # regions of earlier homeworks: "filled" (given) or
                                      # "stubbed" (with a "bring your hwK solution" note)
                                      # regions of later homeworks are always stubbed

    [release]
    files = [                         # repository paths (folders are copied recursively),
      "library/needle",               # mapped to the student layout: library/needle → needle/,
      "library/apps/simple_ml.py",    # library/apps → apps/, library/src → src/,
      { from = "x/y", to = "z" },     # assignments/hwN/<p> → <p>; or an explicit from/to
    ]
    backend = "np"                    # NEEDLE_BACKEND for the student environment ("np"/"nd"/"")
    public_tests = "assignments/hw1/tests"
    build = "none"                    # "none", "ext" (hw0's pybind11 module) or "cmake" (hw3+)

    [submission]
    accept = ["needle/autograd.py"]   # student-layout paths a submission may contain
    max_file_bytes = 1000000

    [grading]
    probes = "autograder/probes/hw1.py"
    variants = 3                      # seeded input variants with reference answers (>= 1)

    [grading.points]                  # unit → points; unit names: docs/course.md#grading-units
    forward = 10

    [grading.selectors]               # unit → pytest -k expression over the public tests
    forward = "forward"               # (default: the unit name itself)

    [grading.visibility]              # unit → what students see of its results.json row:
    forward = "visible"               # "visible" (default), "after_due_date", "hidden",
                                      # "after_published" (Gradescope's); a course.toml may
                                      # override it (docs/running-a-class.md)

Use :func:`load` (``load("hw1")``) and :func:`homeworks` (all names, in course order).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder.authoring.markers import HOMEWORKS, hw_index

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from autograder.engine.bundle import visibility_problem
from autograder.engine.paths import REPO_ROOT

ASSIGNMENTS_DIR = REPO_ROOT / "assignments"

_EARLIER_POLICIES = ("filled", "stubbed")
_BUILDS = ("none", "ext", "cmake")
# Seeded input variants per homework (docs/grading.md#variants): reference answers for each
# are computed when the grading bundle is built, so the build takes VARIANTS times as long.
DEFAULT_VARIANTS = 3
MAX_VARIANTS = 50


class AssignmentError(ValueError):
    """An ``assignment.toml`` that does not follow the schema; the message names the file."""


@dataclass(frozen=True)
class FileSpec:
    """One released file or folder: ``source`` (repository path) → ``dest`` (student path)."""

    source: str
    dest: str


@dataclass(frozen=True)
class Assignment:
    """Everything the release tool and the grader need to know about one homework."""

    name: str
    title: str
    tags: tuple[str, ...]
    notebook: str | None
    earlier: str
    files: tuple[FileSpec, ...]
    backend: str
    public_tests: str
    build: str
    accept: tuple[str, ...]
    max_file_bytes: int
    probes: str | None
    points: dict[str, float] = field(default_factory=dict)
    selectors: dict[str, str] = field(default_factory=dict)
    visibility: dict[str, str] = field(default_factory=dict)
    variants: int = DEFAULT_VARIANTS
    root: Path = REPO_ROOT
    toml_path: Path = ASSIGNMENTS_DIR

    @property
    def index(self) -> int:
        """Position in course order (hw0 → 0)."""
        return hw_index(self.name)

    @property
    def max_points(self) -> float:
        return float(sum(self.points.values()))

    @property
    def units(self) -> list[str]:
        """Grading units in the order of the toml (= notebook order)."""
        return list(self.points)

    def selector(self, unit: str) -> str:
        """The pytest ``-k`` expression selecting the public tests of ``unit``."""
        return self.selectors.get(unit, unit)

    def stub_notes(self) -> dict[str, str | None]:
        """Marker tag → stub note, for every tag this homework's release stubs.

        This homework's own tags get no note; later homeworks' regions are always stubbed;
        earlier homeworks' regions are stubbed only under ``earlier = "stubbed"``.
        """
        notes: dict[str, str | None] = {}
        for tag in HOMEWORKS:
            if tag in self.tags:
                notes[tag] = None
            elif hw_index(tag) > self.index:
                notes[tag] = f"written in {tag}"
            elif self.earlier == "stubbed":
                notes[tag] = f"bring your {tag} solution"
        return notes


def homeworks() -> list[str]:
    """Names of the homeworks that have an ``assignment.toml``, in course order."""
    return [hw for hw in HOMEWORKS if (ASSIGNMENTS_DIR / hw / "assignment.toml").is_file()]


def student_path(source: str, hw: str) -> str:
    """Where a repository path lands in the student layout of ``hw``'s release."""
    rules = (
        ("library/needle/", "needle/"),
        ("library/apps/", "apps/"),
        ("library/src/", "src/"),
        (f"assignments/{hw}/", ""),
    )
    for prefix, replacement in rules:
        if source.startswith(prefix):
            return replacement + source[len(prefix) :]
        if source == prefix.rstrip("/"):
            return replacement.rstrip("/")
    raise AssignmentError(
        f"no student-layout rule for {source!r}; give it explicitly as {{ from = ..., to = ... }}"
    )


def load(hw: str, root: Path | None = None) -> Assignment:
    """Read and validate ``assignments/<hw>/assignment.toml``.

    Args:
        hw: homework name, e.g. ``"hw1"``.
        root: repository root (default: the one this package lives in).

    Raises:
        AssignmentError: unknown homework, missing file, or a schema violation.
    """
    root = Path(root) if root is not None else REPO_ROOT
    if hw not in HOMEWORKS:
        raise AssignmentError(f"unknown homework {hw!r}; known: {', '.join(HOMEWORKS)}")
    path = root / "assignments" / hw / "assignment.toml"
    if not path.is_file():
        raise AssignmentError(f"{path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise AssignmentError(f"{path}: {error}") from None

    def section(name: str) -> dict:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise AssignmentError(f"{path}: [{name}] must be a table")
        return value

    def need(table: dict, key: str, kind: type, where: str):
        if key not in table:
            raise AssignmentError(f"{path}: [{where}] needs {key!r}")
        value = table[key]
        if not isinstance(value, kind):
            raise AssignmentError(f"{path}: [{where}] {key} must be a {kind.__name__}")
        return value

    head, release, submission, grading = (
        section(n) for n in ("assignment", "release", "submission", "grading")
    )
    name = need(head, "name", str, "assignment")
    if name != hw:
        raise AssignmentError(f"{path}: name = {name!r} but the folder is {hw!r}")
    tags = tuple(need(head, "tags", list, "assignment"))
    for tag in tags:
        if tag not in HOMEWORKS:
            raise AssignmentError(f"{path}: unknown tag {tag!r} in [assignment] tags")
    earlier = head.get("earlier", "filled")
    if earlier not in _EARLIER_POLICIES:
        raise AssignmentError(f"{path}: earlier must be one of {_EARLIER_POLICIES}")

    files = []
    for entry in need(release, "files", list, "release"):
        if isinstance(entry, str):
            files.append(FileSpec(entry.rstrip("/"), student_path(entry.rstrip("/"), hw)))
        elif isinstance(entry, dict) and set(entry) == {"from", "to"}:
            files.append(FileSpec(entry["from"].rstrip("/"), entry["to"].rstrip("/")))
        else:
            raise AssignmentError(f"{path}: [release] files entries are paths or {{from, to}}")
    build = release.get("build", "none")
    if build not in _BUILDS:
        raise AssignmentError(f"{path}: [release] build must be one of {_BUILDS}")
    backend = release.get("backend", "")
    if backend not in ("", "np", "nd"):
        raise AssignmentError(f"{path}: [release] backend must be 'np', 'nd' or ''")

    points = grading.get("points", {})
    selectors = grading.get("selectors", {})
    for unit in selectors:
        if unit not in points:
            raise AssignmentError(f"{path}: selector for unknown unit {unit!r}")
    for unit, value in points.items():
        if not isinstance(value, (int, float)) or value < 0:
            raise AssignmentError(f"{path}: points of {unit!r} must be a non-negative number")

    visibility = grading.get("visibility", {})
    problem = (
        visibility_problem(name, points, visibility)
        if isinstance(visibility, dict)
        else ("[grading.visibility] must be a table")
    )
    if problem:
        raise AssignmentError(f"{path}: {problem}")

    variants = grading.get("variants", DEFAULT_VARIANTS)
    if type(variants) is not int or not 1 <= variants <= MAX_VARIANTS:
        raise AssignmentError(f"{path}: [grading] variants must be an integer 1..{MAX_VARIANTS}")

    accept = tuple(need(submission, "accept", list, "submission"))
    for item in accept:
        if item.startswith("/") or ".." in Path(item).parts:
            raise AssignmentError(f"{path}: accept entries are relative paths, got {item!r}")

    return Assignment(
        name=name,
        title=need(head, "title", str, "assignment"),
        tags=tags,
        notebook=head.get("notebook"),
        earlier=earlier,
        files=tuple(files),
        backend=backend,
        public_tests=release.get("public_tests", f"assignments/{hw}/tests"),
        build=build,
        accept=accept,
        max_file_bytes=int(submission.get("max_file_bytes", 1_000_000)),
        probes=grading.get("probes"),
        points={k: float(v) for k, v in points.items()},
        selectors=dict(selectors),
        visibility=dict(visibility),
        variants=variants,
        root=root,
        toml_path=path,
    )
