"""What the sandbox costs: grading time per submission, sandboxed vs not.

    python -m autograder.authoring.bench_overhead [--hw hw1] [--repeat 3] \
        [--sandboxes bwrap,plain,...]

Grades the reference-filled submission of a homework with each sandbox backend, ``--repeat``
times, and prints the best time per submission and per unit run, and the overhead of each
backend relative to running the very same probes in a plain subprocess (``trusted``: no
namespaces, no user switch). Every unit is one process either way, so the difference is what
the isolation itself costs. Timings are best-of-N on a shared machine: compare ratios taken
in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _sandboxes(names: list[str]):
    from autograder.engine.sandbox import (
        BwrapSandbox,
        Sandbox,
        TrustedRunner,
        UnshareSandbox,
        _works,
    )

    made: dict[str, Sandbox] = {"trusted": TrustedRunner()}
    bwrap = shutil.which("bwrap")
    for name in names:
        if name == "bwrap" and bwrap:
            made["bwrap"] = BwrapSandbox(bwrap)
        elif name == "unshare":
            made["unshare"] = UnshareSandbox()
        elif name == "container":
            try:
                from autograder.engine.container import ContainerSandbox

                made["container"] = ContainerSandbox()
            except Exception as error:  # no engine: report and go on
                print(f"container: skipped ({error})")
    namespaces = ("bwrap", "unshare")
    return {n: box for n, box in made.items() if n not in namespaces or _works(box) is None}


def measure(hw: str, repeat: int, names: list[str]) -> dict[str, list[float]]:
    from autograder.authoring.bundle import Homework
    from autograder.engine.grading import Grader
    from autograder.engine.workspace import write_tree

    homework = Homework.load(hw)
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    scratch.chmod(0o755)
    submission = scratch / "reference"
    write_tree({p: homework.reference[p] for p in homework.accept}, submission)
    timings: dict[str, list[float]] = {}
    graders = {}
    try:
        for name, sandbox in _sandboxes(names).items():
            graders[name] = Grader(homework.bundle, sandbox, log=lambda message: None)
            graders[name].grade(submission)  # warm the file cache
            timings[name] = []
        # Interleaved rounds: a shared machine's load drifts; each round sees the same drift.
        for _ in range(repeat):
            for name, grader in graders.items():
                start = time.perf_counter()
                results = grader.grade(submission)
                timings[name].append(time.perf_counter() - start)
                assert results["score"] == homework.max_score, (name, results["output"])
    finally:
        for grader in graders.values():
            grader.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hw", default="hw1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sandboxes", default="bwrap,unshare,container")
    args = parser.parse_args(argv)
    from autograder.authoring.bundle import Homework

    units = len(Homework.load(args.hw).suite.units)
    timings = measure(args.hw, args.repeat, args.sandboxes.split(","))
    base = min(timings["trusted"])
    print(f"\n{args.hw}: reference submission, {units} units (one process each)")
    print(f"best of {args.repeat} interleaved rounds")
    header = ("sandbox", "s/submission", "s/unit", "overhead/submission", "ratio")
    print(f"{header[0]:<10} {header[1]:>13} {header[2]:>8} {header[3]:>21} {header[4]:>6}")
    for name, runs in timings.items():
        best = min(runs)
        print(
            f"{name:<10} {best:>13.2f} {best / units:>8.3f} {best - base:>+19.2f} s "
            f"{best / base:>6.2f}  (median {statistics.median(runs):.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
