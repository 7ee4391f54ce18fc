"""The student's check loop in a release folder (check_helpers.py, the release conftest).

- ``make check`` rebuilds the C++ when a source is newer than the module, so it tests the code
  on disk (hw3: a kernel changed after a build is what the next check sees);
- a kernel that segfaults fails its own tests ("crashed (signal 11, SIGSEGV)"), and the other
  results and the per-part summary still print;
- a C++ file that does not compile is reported once, at the top, and the Python parts are
  still checked (hw0);
- the first failure is printed whole (its assertion and the student's line), in ``make check``
  and in the notebook's ``check()`` cell (run through nbclient).

The hw3 round trip compiles needle's CPU backend three times (minutes): it is marked slow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.authoring.assignment import REPO_ROOT
from autograder.authoring.release import build_release

WORK = REPO_ROOT / "build" / "test-check-loop"
NOT_COMPILED = "your C++ did not compile (see above); the C++ parts are reported as failing"


@pytest.fixture(scope="module")
def workdir():
    folder = WORK / f"session-{os.getpid()}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def make_check(release: Path, selector: str = "") -> subprocess.CompletedProcess:
    command = ["make", "-s", "check", f"PYTHON={sys.executable}"]
    command += [f"K={selector}"] if selector else []
    env = dict(os.environ, OMP_NUM_THREADS="1", NEEDLE_NUM_THREADS="1", PY_COLORS="0")
    env.pop("NEEDLE_BACKEND", None)
    result = subprocess.run(command, cwd=release, capture_output=True, text=True, env=env)
    result.stdout += result.stderr
    return result


def part_line(output: str, unit: str) -> str:
    return next((line for line in output.splitlines() if line.strip().startswith(unit + " ")), "")


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (once) and make the file newer than any module built from it."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new))
    later = time.time() + 2
    os.utime(path, (later, later))


GE_LINE = "EwiseZip(a, b, out, [](scalar_t x, scalar_t y) { return x >= y ? 1.0f : 0.0f; });"


@pytest.mark.slow
def test_hw3_check_rebuilds_changed_kernels_and_survives_a_segfault(workdir):
    release = build_release("hw3", workdir, fill=True)
    selector = "elementwise_array_array and cpu"
    first = make_check(release, selector)
    assert first.returncode == 0, first.stdout[-4000:]
    assert "compiling the C++" in first.stdout
    assert "-- " not in first.stdout, "CMake's configure output must stay quiet"
    assert re.search(r"ndarray_cpu_ops_ge\s+\d+/\d+\s+passed\s+ok", first.stdout), first.stdout

    # A mistake in a kernel after the build: the next check compiles it and sees it.
    kernel = release / "src" / "ndarray_backend_cpu.cc"
    edit(kernel, GE_LINE, GE_LINE.replace("x >= y", "x > y"))
    second = make_check(release, selector)
    assert second.returncode != 0, second.stdout[-4000:]  # make says 2 for any failure
    assert "changed after" in second.stdout and "compiling the C++" in second.stdout
    assert "first failure: tests/test_hw3_ndarray.py::test_elementwise_array_array" in second.stdout
    assert "greater_equal" in second.stdout and "Mismatched elements" in second.stdout
    assert "FAILING" in part_line(second.stdout, "ndarray_cpu_ops_ge")
    assert " ok" in part_line(second.stdout, "ndarray_cpu_ops_mul_div")

    # A kernel that dereferences a null pointer costs its own tests, not the run.
    crash = "  if (a.size > 0) *static_cast<volatile float*>(nullptr) = 1.0f;\n  "
    edit(kernel, GE_LINE.replace("x >= y", "x > y"), crash + GE_LINE)
    third = make_check(release, selector)
    assert third.returncode != 0, third.stdout[-4000:]
    assert "crashed (signal 11, SIGSEGV)" in third.stdout, third.stdout[-4000:]
    assert "public tests per graded part" in third.stdout
    assert "FAILING" in part_line(third.stdout, "ndarray_cpu_ops_ge")
    for unit in ("ndarray_cpu_ops_mul_div", "ndarray_cpu_ops_maximum", "ndarray_cpu_ops_eq"):
        assert " ok" in part_line(third.stdout, unit), third.stdout[-3000:]
    assert re.search(r"\d+ failed, \d+ passed", third.stdout)


@pytest.mark.slow
def test_hw0_broken_cpp_still_checks_the_python_parts(workdir):
    release = build_release("hw0", workdir / "broken", fill=True)
    cpp = release / "src" / "simple_ml_ext.cpp"
    text = cpp.read_text()
    marker = "// BEGIN YOUR SOLUTION (hw0)\n"
    cpp.write_text(text.replace(marker, marker + "  int broken = ;\n", 1))
    result = make_check(release)
    assert result.returncode != 0
    output = result.stdout
    assert "error: expected primary-expression" in output, output[-3000:]
    assert output.count(NOT_COMPILED) == 1
    assert output.index("error:") < output.index(NOT_COMPILED) < output.index("per graded part")
    for unit in ("add", "parse_mnist", "softmax_loss", "softmax_regression_epoch", "nn_epoch"):
        assert re.search(rf"^\s+{unit}\s+\d+/\d+\s+passed\s+ok", output, re.M), output[-3000:]
    assert "FAILING" in part_line(output, "softmax_regression_epoch_cpp")
    assert not list((release / "src").glob("simple_ml_ext*.so")), "no stale module may remain"


def run_check_cell(release: Path, selector: str) -> str:
    """The release notebook's setup cell, then ``check(selector)``, through nbclient; the text
    the student sees under the check cell."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    student = nbformat.read(str(release / f"{release.name}.ipynb"), as_version=4)
    setup = next(cell for cell in student.cells if cell.cell_type == "code")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(setup.source),
        nbformat.v4.new_code_cell(f"check({selector!r})"),
    ]
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(release)}}
    )
    client.execute()
    outputs = notebook.cells[1].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


@pytest.mark.notebook
def test_notebook_check_shows_the_first_failure_whole(workdir, monkeypatch):
    monkeypatch.delenv("NEEDLE_BACKEND", raising=False)
    release = build_release("hw1", workdir / "nb", fill=True)
    ops = release / "needle" / "ops" / "ops_mathematic.py"
    edit(
        ops,
        "out_grad * b if a.requires_grad else deferred(EWiseMul(), out_grad, b),",
        "out_grad * a if a.requires_grad else deferred(EWiseMul(), out_grad, b),",
    )
    text = run_check_cell(release, "compute_gradient")
    print(text)
    assert "\x1b[" not in text, "no terminal colour codes in a notebook"
    assert "first failure: tests/test_hw1_autograd.py::" in text
    # A wrong value raises nowhere in the student's code: the test's own assertion is shown whole.
    assert "Mismatched elements" in text and "gradient of input" in text
    assert re.search(r"^E\s+", text, re.M), "the assertion message is shown"
    assert text.index("first failure") < text.index("per graded part")
    assert re.search(r"compute_gradient\s+\d+/\d+\s+passed\s+FAILING", text)
