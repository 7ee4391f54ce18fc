"""``autograder demo`` (``make demo``): the platform tour, offline.

1. release hw1 from the one instructor source (solution regions become stubs);
2. make three submissions from it: the reference (every region filled back), a half-done
   one (the ops written, the autograd engine and the training loop not), and a malicious one
   (the blank release plus code that forges results, patches numpy, hunts for the hidden
   probes and reference answers, and exits "successfully" on import);
3. grade them in the local sandbox, print the score table, and write the HTML report.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

MALICIOUS_PAYLOAD = """

# --- everything below is an attack on the grader ------------------------------------------
import json as _json
import os as _os
import numpy as _np

_np.allclose = lambda *a, **k: True  # "every comparison passes"
for _path in ("/autograder/results/results.json", "/work/results.json", "results.json"):
    try:
        open(_path, "w").write(_json.dumps({"score": 100}))
    except OSError:
        pass
_found = [p for p in ("/work/main/autograder/probes/hw1.py", "/work/main/build/autograder")
          if _os.path.exists(p)]
print("29 passed in 0.01s  -- Score: 100/100")
_os._exit(0)
"""


def _say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def make_submissions(homework, release: Path, dest: Path) -> list[Path]:
    """The three demo submissions, as folders under ``dest``."""
    from autograder.engine.workspace import write_tree

    def files(reference_files=(), extra=None) -> dict[str, bytes]:
        chosen = {
            path: (homework.reference if path in reference_files else homework.blank)[path]
            for path in homework.accept
        }
        chosen.update(extra or {})
        return chosen

    reference = dest / "reference"
    write_tree(files(reference_files=homework.accept), reference)
    half = dest / "half_done"
    write_tree(files(reference_files=("needle/ops/ops_mathematic.py",)), half)
    malicious = dest / "malicious"
    apps = homework.blank["apps/simple_ml.py"].decode() + MALICIOUS_PAYLOAD
    autograd = homework.blank["needle/autograd.py"].decode() + MALICIOUS_PAYLOAD
    write_tree(
        files(extra={"apps/simple_ml.py": apps.encode(), "needle/autograd.py": autograd.encode()}),
        malicious,
    )
    return [reference, half, malicious]


def run_demo(out: Path, jobs: int = 2) -> int:
    from autograder.authoring.bundle import Homework
    from autograder.authoring.release import build_release
    from autograder.cli import print_score_table
    from autograder.engine.grading import Grader, GraderSetupError
    from autograder.engine.sandbox import local_sandbox

    start = time.monotonic()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    _say("1/3 releasing hw1 from the instructor source (solution regions become stubs)")
    release = build_release("hw1", out / "release")
    print(f"    student release: {release}  (+ {release.parent / 'hw1.zip'})")

    _say("2/3 three submissions: the reference, a half-done one, a malicious one")
    try:
        homework = Homework.load("hw1")
    except GraderSetupError as error:
        print(f"autograder demo: {error}", file=sys.stderr)
        return 2
    submissions = make_submissions(homework, release, out / "submissions")
    for path in submissions:
        print(f"    {path}")

    sandbox = local_sandbox()
    _say(f"3/3 grading with the hidden probes in the sandbox: {sandbox.describe()}")
    if not sandbox.isolated:
        print("    WARNING: NOT ISOLATED - install bubblewrap for a real sandbox")
    try:
        with Grader(homework.bundle, sandbox) as grader:
            results = grader.grade_batch(submissions, out / "grades", jobs=jobs)
    except GraderSetupError as error:
        print(f"autograder demo: {error}", file=sys.stderr)
        return 2
    print()
    print_score_table(results)
    malicious = results[-1]
    print("\n    what the malicious submission got, unit by unit:")
    for test in malicious["tests"]:
        first = test["output"].splitlines()[1:2] or [""]
        print(f"      {test['name']}: {test['score']:g}  {first[0].strip()[:90]}")
    report = out / "grades" / "report.html"
    shutil.copyfile(report, out / "report.html")
    print(f"\n    results.json per submission: {out / 'grades'}/<name>/results.json")
    print(f"    gradebook: {out / 'grades' / 'gradebook.csv'}")
    print(f"    report:    {out / 'report.html'}")
    print(f"    ({time.monotonic() - start:.0f} s)")
    return 0
