"""Every solution notebook runs top to bottom (nbclient) on the reference library, and every
student notebook of a release runs top to bottom with its stubs in place.

Run from ``solutions/`` as an instructor would, so each notebook imports the repository's
library. The time each one takes is printed and written to ``build/notebook-times.json``.
"""

from __future__ import annotations

import json
import time

import pytest

from autograder.authoring.assignment import REPO_ROOT, homeworks, load

NOTEBOOKS = [
    hw for hw in homeworks() if load(hw).notebook and (REPO_ROOT / load(hw).notebook).is_file()
]
TIMES = REPO_ROOT / "build" / "notebook-times.json"

# Runs of a minute or more each (hw4's models train; hw0's and hw3's releases compile their
# C++ first): ``make test-slow`` runs them, ``make test`` the rest, to stay within its budget.
SLOW_SOLUTIONS = {"hw4", "hw4_extra"}
SLOW_RELEASES = {"hw0", "hw3", "hw4_extra"}


def _params(slow: set[str]) -> list:
    return [pytest.param(hw, marks=pytest.mark.slow) if hw in slow else hw for hw in NOTEBOOKS]


def _execute(nbclient, notebook, folder) -> list:
    """Run ``notebook`` top to bottom in a fresh kernel started in ``folder`` (raises
    CellExecutionError at the first cell that fails); the error outputs left in it."""
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


@pytest.mark.notebook
@pytest.mark.parametrize("hw", _params(SLOW_SOLUTIONS))
def test_solution_notebook_executes(hw, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("NEEDLE_BACKEND", raising=False)  # each notebook picks its own
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = REPO_ROOT / load(hw).notebook
    notebook = nbformat.read(str(path), as_version=4)
    start = time.perf_counter()
    errors = _execute(nbclient, notebook, path.parent)
    seconds = time.perf_counter() - start
    print(f"{path.relative_to(REPO_ROOT)} ran in {seconds:.1f}s")
    times = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    times[hw] = round(seconds, 1)
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
    assert not errors, f"{hw}: cells raised {[e['ename'] for e in errors]}"
    failed_checks = [
        output["text"]
        for cell in notebook.cells
        if cell.cell_type == "code" and "check(" in cell.source
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and " failed" in output.get("text", "")
    ]
    assert not failed_checks, f"{hw}: a check() cell reports failures:\n{failed_checks[0]}"


@pytest.mark.notebook
@pytest.mark.parametrize("hw", _params(SLOW_RELEASES))
def test_release_notebook_runs_all_with_stubs(hw, tmp_path, monkeypatch):
    """The student notebook, as shipped (every region stubbed), runs top to bottom: a cell
    that calls unwritten code prints a hint, check() cells report failures; nothing raises."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from autograder.authoring.release import build_release

    monkeypatch.delenv("NEEDLE_BACKEND", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    release = build_release(hw, tmp_path, archive=False)
    notebook = nbformat.read(str(release / f"{hw}.ipynb"), as_version=4)
    errors = _execute(nbclient, notebook, release)
    assert not errors, f"{hw}: cells raised {[e['ename'] for e in errors]}"
    reports = [
        "".join(o.get("text", "") for o in cell.get("outputs", []))
        for cell in notebook.cells
        if cell.cell_type == "code" and "check(" in cell.source
    ]
    assert any("public tests per graded part" in text for text in reports), reports[:1]
