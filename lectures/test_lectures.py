"""The lecture notebooks run top to bottom without error and show a figure or a table.

Each notebook is executed in a fresh kernel by ``lectures.run.execute`` (the same code as
``make lectures``). The quick lectures run in ``make test``; the others are marked slow and run
in ``make test-slow`` and ``make lectures``.
"""

from __future__ import annotations

import json

import pytest

from lectures.run import count_displays, lecture_notebooks

# Lectures that run in well under a minute each: together they stay within ``make test``'s
# budget for this folder (about a minute on one idle core, under three on a busy one).
FAST_LECTURES = {
    "01_softmax_regression",
    "03_automatic_differentiation",
    "04_nn_library",
    "07_hardware_acceleration",
}

EXPECTED_NUMBERS = [f"{n:02d}" for n in range(1, 12)]


def _lecture_params():
    return [
        pytest.param(
            path,
            id=path.stem,
            marks=[pytest.mark.notebook]
            + ([] if path.stem in FAST_LECTURES else [pytest.mark.slow]),
        )
        for path in lecture_notebooks()
    ]


def test_every_lecture_is_present_once():
    numbers = [path.stem.split("_")[0] for path in lecture_notebooks()]
    assert numbers == EXPECTED_NUMBERS, f"lecture notebooks found: {numbers}"
    assert FAST_LECTURES <= {path.stem for path in lecture_notebooks()}


@pytest.mark.parametrize("path", lecture_notebooks(), ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    markdown_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "markdown"]
    assert code_cells and markdown_cells, "a lecture explains (markdown) and builds (code)"
    for cell in code_cells:
        assert cell["outputs"] == [] and cell["execution_count"] is None, (
            f"{path.name} is committed with outputs; clear them (Kernel > Restart & Clear)"
        )


@pytest.mark.parametrize("path", _lecture_params())
def test_lecture_runs_and_shows_a_figure_or_table(path):
    pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    from lectures.run import execute

    run = execute(path)
    assert run.error is None, f"{path.name} failed after {run.seconds:.0f}s: {run.error}"
    figures, tables = count_displays(run.notebook)
    assert figures + tables >= 1, f"{path.name} shows neither a figure nor a table"
