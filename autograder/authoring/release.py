"""Generate a homework's student release from the one instructor source.

``python -m autograder release HW|all [--out DIR] [--fill] [--self-study]`` (and
``make release``) writes ``DIR/hwN/``:

- ``hwN.ipynb``: the student notebook, generated from ``solutions/hwN.ipynb`` with its solution
  regions stubbed and every output cleared;
- the library files the homework needs in the student layout (``needle/``, ``apps/``, ``src/``)
  with this homework's regions stubbed, earlier homeworks' regions filled or stubbed as
  ``assignment.toml`` says, and later homeworks' regions always stubbed;
- ``tests/``: the public tests; ``conftest.py``: makes ``make check`` test *these* files and
  prints a summary per graded part;
- ``README.md``, ``Makefile`` (``make check``, ``make submit``), ``submit.py``,
  ``check_helpers.py`` (what ``make check``/``make build`` and the notebook's ``check()`` run:
  rebuild stale C++, run the tests, report), ``requirements.txt`` (PyTorch only when the
  public tests use it), and for C++ homeworks the build files;
- ``.assignment.json``: the homework's units, selectors and accepted files, for the tools.

``DIR/hwN.zip`` holds the same tree. Releases are deterministic: the same sources give
byte-identical output (sorted listings, zip timestamps from the sources' commit date, no
absolute paths).
``build_release(hw, out, fill=True)`` instead fills every region back from the reference: a
"perfect student" workspace, used by the tests and the mutation-coverage tool.

Earlier homeworks: a class release stubs their regions (``earlier = "stubbed"`` in
``assignment.toml``, the default of every homework) and students bring their own code with
``make carry FROM=../hwK``; ``--self-study`` (or ``earlier = "filled"``) gives them filled, and
the tool warns that such a release publishes those homeworks' solutions. The grading bundle's
blank release always has them filled (``render_release(..., earlier="filled")``): a hw2
submission is graded on hw2's own regions, whatever the student's hw1 was.
``REFERENCE ONLY`` blocks (the reference's private helpers, see ``markers.py``) are left out
wherever their homework's regions are stubbed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autograder.authoring.assignment import Assignment, homeworks, load
from autograder.authoring.markers import (
    HOMEWORKS,
    MarkerError,
    Region,
    find_regions,
    stub_text,
    syntax_for,
)
from autograder.engine.paths import REPO_ROOT

TEMPLATES = REPO_ROOT / "assignments" / "templates"

#: Never released: caches, build products, editor/OS droppings.
_SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".DS_Store", "build"}
_SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".o", ".a", ".dylib", ".pyd", ".egg-info"}
#: The zip entries' timestamp when the sources' commit date is unknown (not a git checkout).
_ZIP_TIME = (2025, 1, 1, 0, 0, 0)


class ReleaseError(RuntimeError):
    """The release cannot be built; the message says which file and why."""


@dataclass(frozen=True)
class ReleasedRegion:
    """A region as it appears in a release: student path, tag, function, stubbed or not."""

    path: str
    tag: str
    function: str | None
    line: int
    stubbed: bool

    @property
    def label(self) -> str:
        return f"{self.path}:{self.function or f'line {self.line}'}"


# ---------------------------------------------------------------------------------------------
# Collecting the files of a release
# ---------------------------------------------------------------------------------------------


def _skipped(path: Path) -> bool:
    return (
        any(part in _SKIP_NAMES for part in path.parts)
        or path.suffix in _SKIP_SUFFIXES
        or any(part.endswith(".egg-info") for part in path.parts)
    )


def release_sources(assignment: Assignment) -> dict[str, Path]:
    """Student path → repository file, for every library/hw-local file of the release."""
    root = assignment.root
    files: dict[str, Path] = {}
    for spec in assignment.files:
        source = root / spec.source
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                relative = path.relative_to(source)
                if path.is_file() and not _skipped(relative):
                    files[_join(spec.dest, relative.as_posix())] = path
        elif source.is_file():
            files[spec.dest] = source
        else:
            raise ReleaseError(f"{assignment.toml_path}: [release] files: {spec.source} not found")
    tests = root / assignment.public_tests
    if tests.is_dir():
        for path in sorted(tests.rglob("*")):
            relative = path.relative_to(tests)
            if path.is_file() and not _skipped(relative):
                files["tests/" + relative.as_posix()] = path
    return dict(sorted(files.items()))


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}/{rest}" if prefix else rest


def render_file(
    text: str, student_path: str, notes: dict[str, str | None]
) -> tuple[str, list[Region]]:
    """Stub one source file's regions (tags in ``notes``); returns (text, all regions)."""
    syntax = syntax_for(student_path)
    if syntax is None:
        return text, []
    try:
        return stub_text(text, syntax, notes, student_path)
    except MarkerError as error:
        raise ReleaseError(str(error)) from None


# ---------------------------------------------------------------------------------------------
# The notebook
# ---------------------------------------------------------------------------------------------


def student_notebook(notebook_path: Path, notes: dict[str, str | None], label: str) -> str:
    """The student version of a solution notebook, as JSON text.

    Code cells have their solution regions stubbed, Markdown cells their answer regions
    replaced; every output, execution count and volatile metadata entry is dropped.
    """
    import nbformat

    notebook = nbformat.read(str(notebook_path), as_version=4)
    notebook = copy.deepcopy(notebook)
    for index, cell in enumerate(notebook.cells):
        syntax = {"code": "python", "markdown": "markdown"}.get(cell.cell_type)
        where = f"{label}[cell {index}]"
        if syntax is not None and "BEGIN YOUR SOLUTION" in cell.source:
            try:
                source, _ = stub_text(cell.source, syntax, notes, where)
            except MarkerError as error:
                raise ReleaseError(str(error)) from None
            cell.source = source
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata = {
            k: v
            for k, v in cell.metadata.items()
            if k not in ("execution", "collapsed", "scrolled")
        }
        if "id" not in cell:
            cell["id"] = f"cell-{index}"
    notebook.metadata = {
        k: v for k, v in notebook.metadata.items() if k in ("kernelspec", "language_info")
    }
    if "language_info" in notebook.metadata:
        notebook.metadata["language_info"] = {"name": "python"}
    return nbformat.writes(notebook) + "\n"


def notebook_regions(notebook_path: Path, label: str) -> list[Region]:
    """The solution regions of a notebook's cells (sources are ``label[cell i]``)."""
    import nbformat

    notebook = nbformat.read(str(notebook_path), as_version=4)
    regions: list[Region] = []
    for index, cell in enumerate(notebook.cells):
        syntax = {"code": "python", "markdown": "markdown"}.get(cell.cell_type)
        if syntax is not None and "BEGIN YOUR SOLUTION" in cell.source:
            regions += find_regions(cell.source, syntax, f"{label}[cell {index}]")
    return regions


# ---------------------------------------------------------------------------------------------
# Templates: README, Makefile, conftest, submit script, build files
# ---------------------------------------------------------------------------------------------


def _render_template(name: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text and "}}" in text[text.index("{{") :]:
        start = text.index("{{")
        raise ReleaseError(f"{TEMPLATES / name}: unknown placeholder {text[start : start + 30]!r}")
    if name.endswith(".md.in"):
        text = re.sub(r"\n{3,}", "\n\n", text)  # an empty paragraph placeholder
    return text


def _template_values(assignment: Assignment, regions: list[ReleasedRegion]) -> dict[str, str]:
    own = [r for r in regions if r.tag in assignment.tags and r.stubbed]
    by_file: dict[str, list[str]] = {}
    for region in own:
        by_file.setdefault(region.path, []).append(region.function or f"line {region.line}")
    todo = "\n".join(
        f"- `{path}`: " + ", ".join(f"`{name}`" for name in names)
        for path, names in sorted(by_file.items())
    )
    earlier = [
        tag
        for tag in HOMEWORKS[: assignment.index]
        if assignment.earlier == "stubbed" and any(r.tag == tag for r in regions)
    ]
    if earlier:
        carry = (
            "This release leaves the regions of earlier homeworks ("
            + ", ".join(earlier)
            + ") empty: bring your own solutions. `make carry FROM=../hwK` copies the body of "
            "every region you solved in an earlier release folder into the same region here "
            "(and a file that holds only earlier homeworks' code whole, with your helpers); "
            "carry from your latest folder, which holds the homeworks before it once you "
            "carried them there. Grading scores only "
            + assignment.name
            + "'s parts, and the files you do not submit are graded with the reference's code "
            "for the earlier homeworks."
        )
    elif any(HOMEWORKS.index(r.tag) < assignment.index for r in regions):
        carry = (
            "Code from earlier homeworks that this one builds on is provided, so you can start "
            "right away."
        )
    else:
        carry = ""
    units = "\n".join(
        f'| `{unit}` | {assignment.points[unit]:g} | `make check K="{assignment.selector(unit)}"` |'
        for unit in assignment.units
    )
    backend = assignment.backend or "nd"
    first = assignment.selector(assignment.units[0]) if assignment.units else "NAME"
    if assignment.build == "none":
        check_intro = (
            "run the tests in a fresh process, so they always test your code as it is on disk."
        )
    else:
        check_intro = (
            "first compile the C++ when a source changed since the last build (if it does not "
            "compile, you see the compiler's errors, the C++ parts are reported as failing and "
            "the Python parts are still checked), then run the tests in a fresh process, so "
            "they always test your code as it is on disk."
        )
    return {
        "first_selector": first,
        "first_pad": " " * max(1, 36 - len(f'make check K="{first}"')),
        "check_intro": check_intro,
        "torch": "torch\n" if _tests_use_torch(assignment) else "",
        "name": assignment.name,
        "title": assignment.title,
        "todo": todo or "- (see the notebook)",
        "carry": carry,
        "units": units,
        "backend": backend,
        "accept": "\n".join(f"- `{item}`" for item in assignment.accept),
        "build": assignment.build,
        "max_points": f"{assignment.max_points:g}",
        "build_rules": (TEMPLATES / f"build-{assignment.build}.mk").read_text().strip("\n"),
    }


def _tests_use_torch(assignment: Assignment) -> bool:
    """Do the public tests import PyTorch (so requirements.txt must list it)?"""
    tests = assignment.root / assignment.public_tests
    uses = re.compile(r"^\s*(import torch|from torch\b)|importorskip\(\s*[\"']torch", re.M)
    return tests.is_dir() and any(
        uses.search(path.read_text(encoding="utf-8", errors="replace"))
        for path in sorted(tests.rglob("*.py"))
    )


def _release_metadata(
    assignment: Assignment, regions: list[ReleasedRegion], fill: bool, server: str | None = None
) -> str:
    data: dict = {
        "name": assignment.name,
        "homeworks": list(HOMEWORKS),
        "title": assignment.title,
        "backend": assignment.backend,
        "build": assignment.build,
        "filled": fill,
        "units": [
            {"name": u, "points": assignment.points[u], "selector": assignment.selector(u)}
            for u in assignment.units
        ],
        "accept": list(assignment.accept),
        "max_file_bytes": assignment.max_file_bytes,
        "regions": [
            {"path": r.path, "tag": r.tag, "function": r.function, "stubbed": r.stubbed}
            for r in regions
        ],
    }
    if server:  # the course server `make submit` uploads to (autograder serve)
        data["server"] = server.rstrip("/")
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def render_release(
    assignment: Assignment,
    *,
    fill: bool = False,
    earlier: str | None = None,
    server: str | None = None,
) -> dict[str, bytes]:
    """Every file of a release, student path → contents (nothing is written).

    Args:
        assignment: the homework.
        fill: fill every region from the reference (a perfect-student workspace).
        earlier: ``"filled"`` or ``"stubbed"`` overrides the ``earlier`` policy of
            ``assignment.toml`` (the grading bundle's blank release uses ``"filled"``).
        server: the course server's URL (``autograder serve``), written to
            ``.assignment.json`` for ``make submit`` to upload to.
    """
    if earlier is not None:
        if earlier not in ("filled", "stubbed"):
            raise ReleaseError(f"earlier must be 'filled' or 'stubbed', not {earlier!r}")
        assignment = dataclasses.replace(assignment, earlier=earlier)
    notes = {} if fill else assignment.stub_notes()
    output: dict[str, bytes] = {}
    regions: list[ReleasedRegion] = []
    for student, source in release_sources(assignment).items():
        if syntax_for(student) is None:
            output[student] = source.read_bytes()
            continue
        text, found = render_file(source.read_text(encoding="utf-8"), student, notes)
        output[student] = text.encode("utf-8")
        regions += [
            ReleasedRegion(student, r.tag, r.function, r.begin, r.tag in notes) for r in found
        ]

    notebook = assignment.root / assignment.notebook if assignment.notebook else None
    if notebook is not None and not notebook.is_file():
        print(f"warning: {assignment.name}: no notebook {assignment.notebook} yet", file=sys.stderr)
    elif notebook is not None:
        name = f"{assignment.name}.ipynb"
        output[name] = student_notebook(notebook, notes, name).encode("utf-8")
        regions += [
            ReleasedRegion(name, r.tag, r.function, r.begin, r.tag in notes)
            for r in notebook_regions(notebook, name)
        ]

    values = _template_values(assignment, regions)
    templates = {
        "README.md": "README.md.in",
        "Makefile": "Makefile.in",
        "requirements.txt": f"requirements-{assignment.build}.txt.in",
        "conftest.py": "release_conftest.py",
        "submit.py": "submit.py",
        "carry.py": "carry.py",
        "check_helpers.py": "check_helpers.py",
    }
    if assignment.build == "cmake":
        templates["CMakeLists.txt"] = "CMakeLists.txt.in"
    for student, template in templates.items():
        if template.endswith(".in"):
            output[student] = _render_template(template, values).encode("utf-8")
        else:
            output[student] = (TEMPLATES / template).read_bytes()
    metadata = _release_metadata(assignment, regions, fill, server)
    output[".assignment.json"] = metadata.encode("utf-8")
    _check_accept(assignment, output, regions)
    return dict(sorted(output.items()))


def _check_accept(
    assignment: Assignment, output: dict[str, bytes], regions: list[ReleasedRegion]
) -> None:
    """Every file with a region of this homework is accepted, and exists.

    (Regions of earlier homeworks, even when stubbed, need not be: grading fills them from the
    reference, see the module docstring.)
    """

    def student_writes(region: ReleasedRegion) -> bool:
        return region.tag in assignment.tags

    missing = sorted(
        {
            r.path
            for r in regions
            if r.stubbed
            and student_writes(r)
            and not r.path.endswith(".ipynb")
            and r.path not in assignment.accept
        }
    )
    if missing:
        raise ReleaseError(
            f"{assignment.toml_path}: [submission] accept lacks files the student must edit: "
            + ", ".join(missing)
        )
    absent = [path for path in assignment.accept if path not in output]
    if absent:
        print(
            f"warning: {assignment.name}: accepted files not in the release: {', '.join(absent)}",
            file=sys.stderr,
        )


def zip_time() -> tuple[int, int, int, int, int, int]:
    """The release archive's entry timestamp: ``SOURCE_DATE_EPOCH`` if set, else the date of the
    sources' last commit, else a fixed date, so a release is reproducible and its files do not
    show as dated 1980 once unpacked."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not epoch.isdigit():
        try:
            epoch = subprocess.run(
                ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            epoch = ""
    if not epoch.isdigit():
        return _ZIP_TIME
    stamp = time.gmtime(int(epoch))
    return (max(stamp.tm_year, 1980), stamp.tm_mon, stamp.tm_mday, stamp.tm_hour,
            stamp.tm_min, stamp.tm_sec - stamp.tm_sec % 2)  # fmt: skip


def write_zip(files: dict[str, bytes], path: Path, prefix: str = "") -> None:
    """A deterministic zip: sorted entries, the sources' timestamp, fixed permissions."""
    date_time = zip_time()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(prefix + name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, so the permissions above are honoured
            archive.writestr(info, files[name])


def published_earlier_solutions(assignment: Assignment, files: dict[str, bytes]) -> list[str]:
    """The earlier homeworks whose filled regions (their solutions) a release contains."""
    data = json.loads(files[".assignment.json"])
    filled = {
        r["tag"] for r in data["regions"] if not r["stubbed"] and r["tag"] not in assignment.tags
    }
    return [tag for tag in HOMEWORKS[: assignment.index] if tag in filled]


def build_release(
    hw: str,
    out_dir: str | Path,
    *,
    fill: bool = False,
    archive: bool = True,
    earlier: str | None = None,
    server: str | None = None,
) -> Path:
    """Write the release of ``hw`` to ``out_dir/hw`` (replacing it) and return that folder.

    Args:
        hw: homework name, e.g. ``"hw1"``.
        out_dir: parent folder of the release.
        fill: fill every region back from the reference (a perfect-student workspace).
        archive: also write ``out_dir/hw.zip`` (skipped for ``fill=True``).
        earlier: override of the toml's ``earlier`` policy (``"filled"``: a self-study release).
        server: the course server's URL, for ``make submit`` to upload to.

    A student release (not ``fill``) that contains earlier homeworks' solutions is written with
    a warning on stderr.
    """
    assignment = load(hw)
    files = render_release(assignment, fill=fill, earlier=earlier, server=server)
    published = [] if fill else published_earlier_solutions(assignment, files)
    if published:
        print(
            f"warning: {hw}: this release contains the reference solutions of "
            f'{", ".join(published)} (earlier = "filled" / --self-study); do not hand it to '
            'a class that still has to write them (a class release: earlier = "stubbed" and '
            "make carry)",
            file=sys.stderr,
        )
    out_dir = Path(out_dir)
    target = out_dir / hw
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name, data in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
    if archive and not fill:
        write_zip(files, out_dir / f"{hw}.zip", prefix=f"{hw}/")
    return target


def released_regions(hw: str, *, fill: bool = False) -> list[ReleasedRegion]:
    """The regions of a release (from its ``.assignment.json``), without writing anything."""
    files = render_release(load(hw), fill=fill)
    data = json.loads(files[".assignment.json"])
    return [
        ReleasedRegion(r["path"], r["tag"], r["function"], 0, r["stubbed"]) for r in data["regions"]
    ]


def main(argv: list[str] | None = None) -> int:
    """``autograder release HW|all [--out DIR] [--fill] [--self-study]``."""
    parser = argparse.ArgumentParser(
        prog="autograder release",
        description="Write the student release of a homework (or all) from the instructor source.",
    )
    parser.add_argument("hw", help="homework name (hw0 … hw4_extra) or 'all'")
    parser.add_argument(
        "--out", default="build/release", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--fill", action="store_true", help="fill every region from the reference (testing aid)"
    )
    parser.add_argument(
        "--self-study",
        action="store_true",
        help="give earlier homeworks' regions filled (publishes their solutions; a class release "
        "stubs them and students bring their own code with make carry)",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="the course server (autograder serve) that make submit uploads the zip to",
    )
    args = parser.parse_args(argv)
    names = homeworks() if args.hw == "all" else [args.hw]
    if args.hw != "all" and args.hw not in HOMEWORKS:
        parser.error(f"unknown homework {args.hw!r}; known: {', '.join(HOMEWORKS)} or all")
    status = 0
    for hw in names:
        try:
            target = build_release(
                hw,
                args.out,
                fill=args.fill,
                earlier="filled" if args.self_study else None,
                server=args.server,
            )
        except (ReleaseError, OSError, ValueError) as error:
            print(f"error: {hw}: {error}", file=sys.stderr)
            status = 1
            continue
        regions = json.loads((target / ".assignment.json").read_text())["regions"]
        stubbed = sum(r["stubbed"] for r in regions)
        count = sum(1 for p in target.rglob("*") if p.is_file())
        print(f"{hw}: {target} ({count} files, {stubbed} of {len(regions)} regions stubbed)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
