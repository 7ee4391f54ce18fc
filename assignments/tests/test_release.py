"""Acceptance tests of the student releases (autograder.authoring.release) for every homework.

- every assignment.toml loads, and its release renders (accepted files cover the regions);
- releases are byte-identical across runs (files and zip);
- the release with every region filled back passes all its public tests, and the release as
  shipped fails every one of them without crashing pytest;
- ``make submit``'s script packs exactly the accepted files; ``carry.py`` moves solutions
  between releases;
- student notebooks contain none of the solution lines.

Releases are built once per session under ``build/test-assignments/session-PID/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.authoring.assignment import REPO_ROOT, homeworks, load
from autograder.authoring.markers import HOMEWORKS, find_regions, syntax_for
from autograder.authoring.release import build_release, render_release

WORK = REPO_ROOT / "build" / "test-assignments"
CONTENT = [hw for hw in homeworks() if (REPO_ROOT / load(hw).public_tests).is_dir()]
# Homeworks whose release compiles needle's C++ backend with CMake take minutes per build:
# their release round trips run with the slow tests (make test-slow).
CONTENT_PARAMS = [
    pytest.param(hw, marks=pytest.mark.slow) if load(hw).build == "cmake" else hw for hw in CONTENT
]


@pytest.fixture(scope="session")
def workdir():
    folder = WORK / f"session-{os.getpid()}"  # concurrent sessions do not collide
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def releases(workdir):
    """hw → {"shipped": path, "filled": path}, built lazily and once per session."""
    cache: dict[str, dict[str, Path]] = {}

    def get(hw: str) -> dict[str, Path]:
        if hw not in cache:
            cache[hw] = {
                "shipped": build_release(hw, workdir / "shipped"),
                "filled": build_release(hw, workdir / "filled", fill=True),
            }
        return cache[hw]

    return get


def run_public_tests(release: Path, *extra: str) -> subprocess.CompletedProcess:
    """The release's public tests in a fresh interpreter, as ``make check`` runs them."""
    assignment = json.loads((release / ".assignment.json").read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if assignment["backend"]:
        env["NEEDLE_BACKEND"] = assignment["backend"]
    if assignment["build"] != "none":
        build = subprocess.run(
            ["make", "-s", "build", f"PYTHON={sys.executable}"],
            cwd=release,
            capture_output=True,
            text=True,
            env=env,
        )
        assert build.returncode == 0, f"make build failed:\n{build.stdout}\n{build.stderr}"
    command = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:hypothesispytest", *extra]
    return subprocess.run(command, cwd=release, capture_output=True, text=True, env=env)


def summary_counts(output: str) -> dict[str, int]:
    """pytest's final line ("3 failed, 2 passed in 1.0s") as counts."""
    lines = [line for line in output.strip().splitlines() if " in " in line]
    counts = {}
    for number, word in re.findall(
        r"(\d+) (passed|failed|errors?|skipped)", lines[-1] if lines else ""
    ):
        counts[word.rstrip("s") if word.startswith("error") else word] = int(number)
    return counts


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_assignment_toml_loads(hw):
    assignment = load(hw)
    assert assignment.name == hw and assignment.points and assignment.accept
    assert set(assignment.selectors) <= set(assignment.points)


def test_course_weights():
    hw1 = load("hw1").points
    assert hw1 == {
        "forward": 10,
        "backward": 25,
        "topo_sort": 20,
        "compute_gradient": 25,
        "softmax_loss_ndl": 10,
        "nn_epoch_ndl": 10,
    }
    assert list(load("hw4").points) == [
        "new_nd_backend_activations", "new_nd_backend_stack_split", "cifar10", "new_ops",
        "conv_forward", "conv_backward", "resnet9", "rnn", "lstm", "ptb", "language_model",
    ]  # fmt: skip
    assert sum(load("hw4").points.values()) == 100


@pytest.mark.parametrize("hw", HOMEWORKS)
def test_release_renders_and_is_deterministic(hw):
    first = render_release(load(hw))
    second = render_release(load(hw))
    assert first == second, "two renders of the same sources differ"
    assert list(first) == sorted(first)
    text = b"".join(v for k, v in first.items() if syntax_for(k) or k.endswith(".json"))
    assert str(REPO_ROOT).encode() not in text, "a release must not contain absolute paths"


def test_release_files_and_zip_are_byte_identical(tmp_path):
    for run in ("a", "b"):
        build_release("hw1", tmp_path / run)
    tree = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*")
            if p.is_file()}  # fmt: skip
    again = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*")
             if p.is_file()}  # fmt: skip
    assert tree == again
    with zipfile.ZipFile(tmp_path / "a" / "hw1.zip") as archive:
        dates = {info.date_time for info in archive.infolist()}
    assert len(dates) == 1 and min(dates)[0] >= 2024, f"zip entries dated {dates}"


@pytest.mark.parametrize("hw", CONTENT_PARAMS)
def test_filled_release_passes_its_public_tests(hw, releases):
    result = run_public_tests(releases(hw)["filled"], "-x")
    assert result.returncode == 0, f"{hw} filled release fails:\n{result.stdout[-4000:]}"
    assert summary_counts(result.stdout).get("passed", 0) > 0


@pytest.mark.parametrize("hw", CONTENT_PARAMS)
def test_shipped_release_fails_every_public_test_cleanly(hw, releases):
    # Tests of provided code (marked `provided`) pass as shipped; every other one must fail.
    result = run_public_tests(releases(hw)["shipped"], "-m", "not provided")
    counts = summary_counts(result.stdout)
    assert result.returncode == 1, (
        f"pytest must end with 'tests failed' (exit 1), got {result.returncode}:\n"
        f"{result.stdout[-3000:]}{result.stderr[-2000:]}"
    )
    assert counts.get("error", 0) == 0, f"collection/setup errors:\n{result.stdout[-3000:]}"
    assert counts.get("passed", 0) == 0, f"tests pass on the blank release: {counts}"
    assert counts.get("failed", 0) > 0
    assert "public tests per graded part" in result.stdout, "the per-part summary is missing"


@pytest.mark.parametrize("hw", CONTENT_PARAMS)
def test_submit_packs_exactly_the_accepted_files(hw, releases):
    release = releases(hw)["shipped"]
    result = subprocess.run(
        [sys.executable, "submit.py"], cwd=release, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(release / f"{hw}-submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(load(hw).accept)
    assert "still hold the release's stub" in result.stdout
    (release / f"{hw}-submission.zip").unlink()


def test_carry_moves_solved_regions_between_releases(releases, tmp_path):
    shipped, filled = releases("hw1")["shipped"], releases("hw1")["filled"]
    target = tmp_path / "hw1"
    shutil.copytree(shipped, target)
    result = subprocess.run(
        [sys.executable, "carry.py", str(filled)], cwd=target, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for relative in load("hw1").accept:
        assert (target / relative).read_text() == (filled / relative).read_text(), relative


def solution_lines(hw: str) -> set[str]:
    """Distinctive lines of hw's solution regions (library and notebook)."""
    assignment = load(hw)
    lines: set[str] = set()
    files = render_release(assignment, fill=True)
    for path, data in files.items():
        syntax = syntax_for(path)
        if syntax is None or path.startswith("tests/"):
            continue
        text = data.decode()
        for region in find_regions(text, syntax, path):
            if region.tag in assignment.tags:
                body = text.splitlines()[region.begin : region.end - 1]
                lines |= {line.strip() for line in body if len(line.strip()) >= 25}
    return {line for line in lines if not line.startswith(("#", "//", '"""'))}


TRIVIAL_LINE = re.compile(r"^(break|continue|pass|return|else:|try:|finally:|[\])}]+,?)$")


@pytest.mark.parametrize(
    "hw",
    [hw for hw in HOMEWORKS if load(hw).notebook and (REPO_ROOT / load(hw).notebook).is_file()],
)
def test_student_notebook_has_no_solution_lines(hw):
    import nbformat

    assignment = load(hw)
    files = render_release(assignment)
    student = nbformat.reads(files[f"{hw}.ipynb"].decode(), as_version=4)
    master = nbformat.read(str(REPO_ROOT / assignment.notebook), as_version=4)
    notebook_solution = set()
    for cell in master.cells:
        if cell.cell_type == "code" and "BEGIN YOUR SOLUTION" in cell.source:
            for region in find_regions(cell.source, "python", "cell"):
                body = cell.source.splitlines()[region.begin : region.end - 1]
                notebook_solution |= {line.strip() for line in body if line.strip()}
    # Bare statements (``break``, ``else:``, a closing bracket) say nothing about a solution.
    notebook_solution = {line for line in notebook_solution if not TRIVIAL_LINE.match(line)}
    student_lines = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    leaked = (notebook_solution | solution_lines(hw)) & student_lines
    leaked = {line for line in leaked if line not in ("raise NotImplementedError()",)}
    assert not leaked, f"solution lines in the student notebook: {sorted(leaked)[:5]}"
    assert all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in student.cells
        if cell.cell_type == "code"
    ), "student notebook cells must have no outputs"
