"""Run the lecture notebooks top to bottom, as a lecturer would, and render them to HTML.

Usage, from the repository root::

    python -m lectures.run --out build/lectures          # every lecture
    python -m lectures.run --out build/lectures 03 07    # some, by number or by name

Each notebook runs in a fresh ``python3`` kernel on a temporary copy: the committed file keeps
no outputs, and whatever a notebook writes lands in a scratch folder. The executed copy is
rendered to ``<out>/<name>.html`` (also when it failed, so the error can be read there). A
table of notebook × run time × status is printed at the end; the exit status is 1 when any
notebook failed or showed neither a figure nor a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

LECTURES_DIR = Path(__file__).resolve().parent
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600

# The kernel's environment on top of ours. Lectures are timed single-threaded (comparable
# numbers on a laptop and on a shared CI machine) unless the caller says otherwise, and
# figures must come out inline even where MPLBACKEND=Agg is set for headless scripts.
KERNEL_ENV_DEFAULTS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NEEDLE_NUM_THREADS": "1",
}
KERNEL_ENV_FORCED = {
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silences a debugger warning on every start
}

MISSING_DEPENDENCIES = (
    "running the lectures needs nbformat, nbclient, nbconvert, ipykernel and matplotlib "
    "(the 'notebooks' extra): .venv/bin/pip install nbformat nbclient nbconvert ipykernel "
    "matplotlib && .venv/bin/python -m ipykernel install --sys-prefix --name python3"
)


@dataclass
class LectureRun:
    """What executing one notebook gave.

    Attributes:
        name: the notebook's file name without ``.ipynb``.
        seconds: wall time, kernel start included.
        error: None when every cell ran, else ``"cell N: ErrorType: message"``.
        figures: outputs carrying an ``image/png`` (matplotlib figures).
        tables: outputs carrying ``text/html`` (tables shown with ``IPython.display``).
        notebook: the executed notebook (outputs up to the failing cell on error).
    """

    name: str
    seconds: float
    error: str | None
    figures: int
    tables: int
    notebook: Any

    @property
    def ok(self) -> bool:
        return self.error is None and self.figures + self.tables > 0

    @property
    def status(self) -> str:
        if self.error is not None:
            return "FAILED " + self.error
        if self.figures + self.tables == 0:
            return "FAILED no figure or table among the outputs"
        return "ok"


def lecture_notebooks(selection: Sequence[str] = ()) -> list[Path]:
    """The lecture notebooks ``NN_topic.ipynb`` in order, or those that ``selection`` names.

    Args:
        selection: numbers (``"3"``, ``"03"``), names (``"03_automatic_differentiation"``)
            or file names; empty for every lecture.

    Raises:
        ValueError: when a name matches no notebook.
    """
    notebooks = sorted(LECTURES_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return notebooks
    chosen = []
    for wanted in selection:
        key = Path(wanted).name.removesuffix(".ipynb")
        if key.isdigit():
            key = f"{int(key):02d}"
        matches = [nb for nb in notebooks if nb.stem == key or nb.stem.split("_")[0] == key]
        if not matches:
            known = ", ".join(nb.stem for nb in notebooks)
            raise ValueError(f"no lecture notebook matches {wanted!r} (there are: {known})")
        chosen.extend(nb for nb in matches if nb not in chosen)
    return chosen


def count_displays(notebook) -> tuple[int, int]:
    """``(figures, tables)``: outputs with an ``image/png``, and with ``text/html``."""
    figures = tables = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            figures += "image/png" in data
            tables += "text/html" in data
    return figures, tables


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    for name, value in KERNEL_ENV_DEFAULTS.items():
        env.setdefault(name, value)
    env.update(KERNEL_ENV_FORCED)
    return env


def _describe_failure(exc: BaseException, notebook) -> str:
    """One line: which cell failed and how (nbclient's own message holds the traceback)."""
    failing = None
    for index, cell in enumerate(notebook.cells):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            failing = index
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        message = f"{ename}: {evalue}"
    else:
        lines = str(exc).strip().splitlines()
        message = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
    where = f"cell {failing}: " if failing is not None else ""
    return where + message[:300]


def execute(path: Path, timeout: int = CELL_TIMEOUT_S) -> LectureRun:
    """Run one notebook top to bottom in a fresh kernel, in a scratch copy of it.

    Args:
        path: the notebook.
        timeout: seconds any one cell may take.

    Returns:
        The ``LectureRun``; a failing cell is reported in ``error``, not raised.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        raise RuntimeError(MISSING_DEPENDENCIES) from exc

    with tempfile.TemporaryDirectory(prefix="lecture-") as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        notebook = nbformat.read(copy, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name=KERNEL_NAME,
            resources={"metadata": {"path": scratch}},
        )
        # The kernel's own stderr (start-up chatter, or a crash's last words) goes to a log
        # that is quoted only when the kernel dies.
        kernel_log = Path(scratch) / "kernel.log"
        start = time.perf_counter()
        error = None
        with open(kernel_log, "wb") as log:
            try:
                client.execute(env=_kernel_env(), stderr=log)
            except Exception as exc:  # a failing cell, a dead kernel, a timeout: all reported
                error = _describe_failure(exc, notebook)
                if "DeadKernel" in type(exc).__name__:
                    lines = kernel_log.read_text(errors="replace").strip().splitlines()
                    tail = [line for line in lines if "without encryption" not in line][-3:]
                    error += " | kernel stderr: " + (" / ".join(tail) or "(empty)")
        seconds = time.perf_counter() - start
    figures, tables = count_displays(notebook)
    return LectureRun(path.stem, seconds, error, figures, tables, notebook)


def render_html(notebook, target: Path) -> None:
    """Write ``notebook`` (with its outputs, images embedded) as a standalone HTML page."""
    try:
        from nbconvert import HTMLExporter
    except ImportError as exc:
        raise RuntimeError(MISSING_DEPENDENCIES) from exc
    body, _ = HTMLExporter().from_notebook_node(notebook)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")


def format_table(runs: Sequence[LectureRun]) -> str:
    """The closing table: notebook, run time, figures, tables, status."""
    width = max([len("notebook")] + [len(run.name) for run in runs])
    lines = [f"{'notebook':<{width}}  {'time':>8}  {'figures':>7}  {'tables':>6}  status"]
    for run in runs:
        lines.append(
            f"{run.name:<{width}}  {run.seconds:>7.1f}s  {run.figures:>7}  {run.tables:>6}  "
            f"{run.status}"
        )
    total = sum(run.seconds for run in runs)
    lines.append(f"{'total':<{width}}  {total:>7.1f}s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lectures.run",
        description="Execute lecture notebooks top to bottom and render them to HTML.",
    )
    parser.add_argument("names", nargs="*", help="lecture numbers or names (default: all)")
    parser.add_argument("--out", default="build/lectures", help="folder for the HTML pages")
    parser.add_argument(
        "--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds any one cell may take"
    )
    args = parser.parse_args(argv)

    try:
        notebooks = lecture_notebooks(args.names)
    except ValueError as exc:
        parser.error(str(exc))
    if not notebooks:
        parser.error(f"no lecture notebooks in {LECTURES_DIR}")

    out = Path(args.out)
    runs = []
    for index, path in enumerate(notebooks, start=1):
        print(f"[{index}/{len(notebooks)}] {path.stem} ...", end=" ", flush=True)
        try:
            run = execute(path, timeout=args.timeout)
            render_html(run.notebook, out / f"{path.stem}.html")
        except RuntimeError as exc:  # missing dependencies: nothing else can run either
            print()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{run.seconds:.1f}s {run.status}", flush=True)
        runs.append(run)

    print()
    print(format_table(runs))
    print(f"\nHTML pages in {out}/")
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
