"""Run every benchmark module in this folder and print one table (``make bench``).

The interface a benchmark module follows
----------------------------------------
A module ``library/benchmarks/bench_<topic>.py`` defines ``run() -> list[dict]``, one dict per
table row, measured in that call (needle and its reference in the same process and run, best of
N, so a busy machine slows both alike). Keys:

- ``row`` (str): what was measured, e.g. ``"ndarray matmul 1024^3 (1 thread)"``;
- ``needle``, ``reference`` (float): the two measurements, in ``unit``;
- ``unit`` (str): ``"GFLOP/s"``, ``"GB/s"``, ``"ms"``, ...;
- ``ratio`` (float): the module's comparison of the two (needle / reference for throughputs,
  needle time / reference time for ``ms``); ``target`` says which way is good;
- ``target`` (str): ``">= 0.8x numpy"`` or ``"<= 2x PyTorch"`` (a bound on ``ratio``; the text
  after the number names the reference), or ``"report only"``;
- optional ``skipped`` (str): why the row could not be measured here (other keys may then be
  missing), and ``note`` (str): anything the reader should know.

A module may print progress or context to stderr; it must not call ``sys.exit``. It should also
run alone (``python library/benchmarks/bench_<topic>.py``).

Usage::

    python library/benchmarks/bench.py [--only TOPIC ...] [--json FILE]

Exit status 0 even when targets are missed (benchmarks on a shared machine are noisy; the table
says which rows met their target).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_PATTERN = re.compile(r"^\s*(<=|>=)\s*([0-9.]+)\s*x?")
COLUMNS = ("row", "needle", "reference", "unit", "ratio", "target", "met")


def discover(only: list[str] | None = None) -> list[str]:
    """Module names ``bench_*`` next to this file, sorted, filtered by ``--only`` topics."""
    names = sorted(path.stem for path in HERE.glob("bench_*.py"))
    if only:
        names = [name for name in names if any(topic in name for topic in only)]
    return names


def target_met(row: dict) -> str:
    """'yes' / 'NO' when the row's ratio meets / misses its target, '-' without a target."""
    match = TARGET_PATTERN.match(str(row.get("target", "")))
    ratio = row.get("ratio")
    if match is None or not isinstance(ratio, (int, float)):
        return "-"
    bound = float(match.group(2))
    ok = ratio >= bound if match.group(1) == ">=" else ratio <= bound
    return "yes" if ok else "NO"


def run_module(name: str) -> tuple[list[dict], float]:
    """The rows of one module (an error becomes a 'skipped' row) and the seconds it took."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(name)
        rows = list(module.run())
    except Exception as error:  # one broken benchmark must not hide the others' results
        traceback.print_exc(file=sys.stderr)
        rows = [{"row": name, "skipped": f"error: {type(error).__name__}: {error}"}]
    return rows, time.perf_counter() - start


def format_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def format_table(rows: list[dict]) -> str:
    """A plain-text table: one line per row, skipped rows with their reason."""
    cells = []
    for row in rows:
        if "skipped" in row:
            cells.append([row.get("row", "?"), "skipped: " + str(row["skipped"])] + [""] * 5)
            continue
        line = [format_cell(row.get(key)) for key in COLUMNS[:-1]] + [target_met(row)]
        cells.append(line)
    widths = [len(name) for name in COLUMNS]
    for line in cells:
        for i, cell in enumerate(line):
            if not (i == 1 and cell.startswith("skipped")):
                widths[i] = max(widths[i], len(cell))
    header = "  ".join(name.ljust(widths[i]) for i, name in enumerate(COLUMNS))
    out = [header, "-" * len(header)]
    for line in cells:
        if line[1].startswith("skipped"):
            out.append(f"{line[0].ljust(widths[0])}  {line[1]}")
            continue
        out.append(
            "  ".join(
                cell.ljust(widths[i]) if i in (0, 3, 5) else cell.rjust(widths[i])
                for i, cell in enumerate(line)
            )
        )
    return "\n".join(out)


def machine_summary() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = {
        key: os.environ.get(key, "")
        for key in ("NEEDLE_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    settings = ", ".join(f"{key}={value or 'unset'}" for key, value in threads.items())
    return f"{model}, {os.cpu_count()} logical CPUs; {settings}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="run only modules whose name contains these")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    names = discover(args.only)
    if not names:
        print("no benchmark modules matched", file=sys.stderr)
        return 0
    print(f"machine: {machine_summary()}", flush=True)
    all_rows = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows, seconds = run_module(name)
        print(f"  {name}: {len(rows)} rows in {seconds:.1f} s", file=sys.stderr, flush=True)
        all_rows.extend(rows)
    print(format_table(all_rows), flush=True)
    verdicts = [target_met(row) for row in all_rows if "skipped" not in row]
    judged = [v for v in verdicts if v != "-"]
    print(f"\n{judged.count('yes')} of {len(judged)} rows with a target meet it.")
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
