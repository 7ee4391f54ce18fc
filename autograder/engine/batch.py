"""Batches: grade many submissions, a few at a time, and never lose one.

Every submission gets a ``results.json`` (at worst "could not be graded: <reason>"); a
submission whose stored result carries the same fingerprint is not graded again (resume).
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.engine.results import ungradable, write_results

if TYPE_CHECKING:
    from autograder.engine.grading import Grader


def grade_batch(
    grader: Grader,
    paths: list[str | Path],
    out_dir: Path,
    jobs: int = 1,
    resume: bool = True,
    progress: bool = True,
) -> list[dict]:
    """Grade many submissions, ``jobs`` at a time; every one gets a results.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = unique_names([Path(p) for p in paths])
    results: dict[str, dict] = {}
    todo = []
    for path, name in zip(paths, names):
        previous = previous_result(grader, Path(path), out_dir / name / "results.json")
        if resume and previous is not None:
            results[name] = previous
        else:
            todo.append((Path(path), name))
    bar = _progress(len(paths), len(results), progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grader.grade, path, out_dir, name): name for path, name in todo}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as error:  # grade() catches everything; belt and braces
                results[name] = ungradable(
                    grader, name, f"could not be graded: {type(error).__name__}", time.monotonic()
                )
                write_results(results[name], out_dir, name)
            bar.update(1)
    bar.close()
    ordered = [results[name] for name in names]
    from autograder.engine.report import write_batch_outputs

    write_batch_outputs(out_dir, ordered, grader.bundle)
    return ordered


def previous_result(grader: Grader, path: Path, results_path: Path) -> dict | None:
    """The stored result of ``path`` when it was graded with the same hashes."""
    if not results_path.is_file():
        return None
    try:
        previous = json.loads(results_path.read_text())
        fingerprint = previous["extra_data"]["fingerprint"]
        submission = grader.load(path)
    except Exception:
        return None
    return previous if fingerprint == grader.fingerprint(submission) else None


def safe_name(name: str) -> str:
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip", ".ipynb"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned[:80] or "submission"


def unique_names(paths: list[Path]) -> list[str]:
    """One output folder per submission: unique without regard to case or Unicode form (a
    case-insensitive file system would merge ``Alice`` and ``alice``), and a generated
    ``-N`` never lands on a name another submission already has (``alice-2.zip``)."""
    import unicodedata

    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        base = name = safe_name(path.name)
        number = 1
        while unicodedata.normalize("NFKC", name).casefold() in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(unicodedata.normalize("NFKC", name).casefold())
        names.append(name)
    return names


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=done, unit="submission", desc="grading", file=sys.stderr)
