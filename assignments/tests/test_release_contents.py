"""What a student release holds: only the code the student writes, and no earlier solutions.

- hw3's C++ templates hold exactly the course's contract functions (the reference's private
  helpers are ``REFERENCE ONLY`` blocks, left out), and the stubbed files still compile;
- a class release (``earlier = "stubbed"``) contains no line of an earlier homework's solution
  (regions or reference-only helpers); ``--self-study`` does, with a warning;
- the reference-filled release is the reference itself, byte for byte (so the mistake
  catalogues, which edit it, keep applying), and the grading bundle's blank release keeps
  earlier homeworks filled;
- ``make carry`` brings an earlier release's code in (a file of earlier homeworks whole).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from autograder.authoring.assignment import load
from autograder.authoring.markers import (
    HOMEWORKS,
    find_reference_blocks,
    find_regions,
    syntax_for,
)
from autograder.authoring.release import build_release, release_sources, render_release

CPU = "src/ndarray_backend_cpu.cc"
CUDA = "src/ndarray_backend_cuda.cu"

#: The functions of the course's CPU backend that hw3 asks for (the rest is provided).
CPU_CONTRACT = [
    "Compact", "EwiseSetitem", "ScalarSetitem",
    "EwiseMul", "ScalarMul", "EwiseDiv", "ScalarDiv", "EwisePower", "ScalarPower",
    "EwiseMaximum", "ScalarMaximum", "EwiseEq", "ScalarEq", "EwiseGe", "ScalarGe",
    "EwiseLog", "EwiseExp", "EwiseTanh",
    "ReduceMax", "ReduceSum",
    "Matmul", "MatmulTiled",
]  # fmt: skip
#: The CUDA backend's: the kernels and their launchers (argument checks stay provided).
CUDA_CONTRACT = [
    "StridedPosition", "CompactKernel",
    "EwiseSetitemKernel", "LaunchEwiseSetitem", "ScalarSetitemKernel", "LaunchScalarSetitem",
    "EwiseBinaryKernel", "ScalarBinaryKernel", "EwiseUnaryKernel",
    "LaunchEwiseBinary", "LaunchScalarBinary", "LaunchEwiseUnary",
    "MatmulKernel", "LaunchMatmul",
    "ReduceRowsPerThreadKernel", "ReduceSegmentsPerWarpKernel", "LaunchReduce",
]  # fmt: skip

EARLIER = [hw for hw in HOMEWORKS if load(hw).index > 0]


def regions_of(files: dict[str, bytes], path: str):
    return find_regions(files[path].decode(), syntax_for(path), path)


@pytest.fixture(scope="module")
def hw3_release():
    return render_release(load("hw3"))


def test_hw3_cpp_templates_hold_only_the_contract_functions(hw3_release):
    assert [r.function for r in regions_of(hw3_release, CPU)] == CPU_CONTRACT
    assert [r.function for r in regions_of(hw3_release, CUDA)] == CUDA_CONTRACT
    for path in (CPU, CUDA):
        text = hw3_release[path].decode()
        assert "BEGIN REFERENCE ONLY (" not in text and "END REFERENCE ONLY" not in text
    # the reference's helpers are gone, the provided code stays
    cpu = hw3_release[CPU].decode()
    for helper in ("ForEachStridedBlock", "VecExp", "PackA", "MicroKernelAvx2", "SumBlock"):
        assert f" {helper}(" not in cpu, helper
    for provided in ("CheckViewInBounds(", "CheckReduceSizes(", "EwiseMap(", "PYBIND11_MODULE"):
        assert provided in cpu, provided


def test_readme_and_metadata_name_only_the_contract_functions(hw3_release):
    data = json.loads(hw3_release[".assignment.json"])
    own = [r for r in data["regions"] if r["tag"] == "hw3" and r["stubbed"]]
    assert [r["function"] for r in own if r["path"] == CPU] == CPU_CONTRACT
    assert [r["function"] for r in own if r["path"] == CUDA] == CUDA_CONTRACT
    readme = hw3_release["README.md"].decode()
    line = next(line for line in readme.splitlines() if line.startswith(f"- `{CPU}`"))
    assert line.count("`") // 2 - 1 == len(CPU_CONTRACT)


def test_submit_counts_only_the_regions_the_student_writes(tmp_path):
    release = build_release("hw3", tmp_path, archive=False)
    data = json.loads((release / ".assignment.json").read_text())
    expected = sum(
        r["tag"] == "hw3" and r["stubbed"] and r["path"] in data["accept"] for r in data["regions"]
    )
    result = subprocess.run(
        [sys.executable, "submit.py"], cwd=release, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"note: {expected} region(s) of hw3 still hold the release's stub" in result.stdout
    assert expected == len(CPU_CONTRACT) + len(CUDA_CONTRACT) + 4  # + ndarray.py's four


def compile_cpu_backend(source: str, folder: Path) -> subprocess.CompletedProcess:
    """``g++ -fsyntax-only`` on a released CPU backend, with the release's headers."""
    pybind11 = pytest.importorskip("pybind11")
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    (folder / "backend.cc").write_text(source)
    command = [compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-Wno-unknown-pragmas"]
    command += [f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}"]
    return subprocess.run(
        [*command, str(folder / "backend.cc")], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
@pytest.mark.parametrize("hw", ["hw3", "hw4"])
def test_stubbed_cpu_backend_compiles(hw, tmp_path):
    files = render_release(load(hw))
    for name, data in files.items():
        if name.startswith("src/") and name.endswith((".h", ".cuh")):
            (tmp_path / Path(name).name).write_bytes(data)
    result = compile_cpu_backend(files[CPU].decode(), tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]


def earlier_solution_lines(hw: str) -> dict[str, set[str]]:
    """Earlier homework → distinctive lines of its solutions (regions and reference-only
    blocks) in hw's reference-filled release: lines found nowhere else in that release."""
    assignment = load(hw)
    filled = render_release(assignment, fill=True)
    solution: dict[str, set[str]] = {}
    elsewhere: set[str] = set()
    for path, data in filled.items():
        syntax = syntax_for(path)
        if syntax is None or path.startswith("tests/"):
            continue
        lines = data.decode().splitlines()
        inside: set[int] = set()
        spans = [(r.tag, r.begin, r.end) for r in find_regions(data.decode(), syntax, path)]
        spans += [(b.tag, b.begin, b.end) for b in find_reference_blocks(data.decode(), syntax)]
        for tag, begin, end in spans:
            inside |= set(range(begin - 1, end))
            if HOMEWORKS.index(tag) < assignment.index:
                solution.setdefault(tag, set()).update(
                    line.strip() for line in lines[begin : end - 1]
                )
        elsewhere |= {line.strip() for n, line in enumerate(lines) if n not in inside}
    return {
        tag: {
            line
            for line in found - elsewhere
            if len(line) >= 20 and not line.startswith(("#", "//", '"""', "'''", "*"))
        }
        for tag, found in solution.items()
    }


def released_lines(files: dict[str, bytes]) -> set[str]:
    return {
        line.strip()
        for path, data in files.items()
        if syntax_for(path) is not None and not path.startswith("tests/")
        for line in data.decode().splitlines()
    }


@pytest.mark.parametrize("hw", EARLIER)
def test_class_release_contains_no_earlier_solution(hw):
    assignment = load(hw)
    assert assignment.earlier == "stubbed", "class releases stub earlier homeworks"
    solutions = earlier_solution_lines(hw)
    if not solutions:
        pytest.skip(f"no earlier homework's code ships with {hw}")
    assert all(solutions.values()), "the scan found no earlier solution line to look for"
    shipped = released_lines(render_release(assignment))
    for tag, lines in solutions.items():
        leaked = sorted(lines & shipped)
        assert not leaked, f"{hw}'s release contains {tag}'s solution: {leaked[:5]}"
    # The self-study release does contain them (so the scan above can see a leak).
    self_study = released_lines(render_release(assignment, earlier="filled"))
    for tag, lines in solutions.items():
        assert lines <= self_study, tag


def test_self_study_release_warns(tmp_path, capsys):
    build_release("hw2", tmp_path / "class", archive=False)
    assert "reference solutions" not in capsys.readouterr().err
    build_release("hw2", tmp_path / "self", archive=False, earlier="filled")
    assert "contains the reference solutions of hw1" in capsys.readouterr().err
    build_release("hw2", tmp_path / "filled", fill=True)
    assert "reference solutions" not in capsys.readouterr().err


def test_grading_blank_release_keeps_earlier_homeworks_filled():
    blank = render_release(load("hw2"), earlier="filled")
    regions = json.loads(blank[".assignment.json"])["regions"]
    assert {r["tag"] for r in regions if r["stubbed"]} == {"hw2", "hw3", "hw4", "hw4_extra"}
    bundle = Path(__file__).resolve().parents[2] / "autograder" / "authoring" / "bundle.py"
    assert 'render_release(assignment, fill=False, earlier="filled")' in bundle.read_text()


@pytest.mark.parametrize("hw", ["hw3", "hw4"])
def test_filled_release_is_the_reference_byte_for_byte(hw):
    assignment = load(hw)
    filled = render_release(assignment, fill=True)
    for student, source in release_sources(assignment).items():
        assert filled[student] == source.read_bytes(), student


@pytest.mark.parametrize("hw", ["hw3", "hw4"])
def test_mistake_catalogues_still_apply_to_the_filled_release(hw):
    from autograder.authoring.mistakes import apply_mistake, load_catalogue

    assignment = load(hw)
    filled = render_release(assignment, fill=True)
    for mistake in load_catalogue(hw):
        apply_mistake(filled, mistake, assignment.accept)  # raises when a find does not apply


def run_carry(target: Path, source: Path) -> str:
    result = subprocess.run(
        [sys.executable, "carry.py", str(source)],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_carry_brings_hw1_code_into_the_hw2_release(tmp_path):
    hw1 = build_release("hw1", tmp_path / "done", fill=True)
    hw2 = build_release("hw2", tmp_path / "class", archive=False)
    run_carry(hw2, hw1)
    for path in sorted(hw2.rglob("*.py")):
        relative = path.relative_to(hw2).as_posix()
        if relative.startswith("tests/") or syntax_for(relative) is None:
            continue
        for region in find_regions(path.read_text(), "python", relative):
            if region.tag == "hw1":
                body = path.read_text().splitlines()[region.begin : region.end - 1]
                assert not any("NotImplementedError" in line for line in body), region.label
    for relative in load("hw1").accept:
        text = (hw2 / relative).read_text()
        tags = {r.tag for r in find_regions(text, "python", relative)}
        if tags == {"hw1"}:  # a file of hw1 only comes whole
            assert text == (hw1 / relative).read_text(), relative


def test_carry_brings_the_whole_hw3_backend_into_hw4(tmp_path):
    hw3 = build_release("hw3", tmp_path / "done", fill=True)
    hw4 = build_release("hw4", tmp_path / "class", archive=False)
    assert "BEGIN REFERENCE ONLY" not in (hw4 / CPU).read_text()
    output = run_carry(hw4, hw3)
    assert f"{CPU}: the whole file" in output
    # the helpers outside the regions (here the reference's) come along
    assert (hw4 / CPU).read_text() == (hw3 / CPU).read_text()
    assert (hw4 / CUDA).read_text() == (hw3 / CUDA).read_text()
