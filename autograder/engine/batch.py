"""Batches: grade many submissions, a few at a time, and never lose one.

Every submission gets a ``results.json`` (at worst "could not be graded: <reason>"); a
submission whose stored result carries the same fingerprint is not graded again (resume).

- Before anyone is graded, a canary run checks that the sandbox works
  (``Grader.check_sandbox``); when it does not, the batch stops with the sandbox's own error
  (``SandboxBroken``) and writes nothing: a broken sandbox never becomes a gradebook of zeros.
- SIGINT and SIGTERM stop a batch within seconds (``BatchInterrupted``): the running sandboxes
  are killed, submissions in progress get no result, the gradebook and report are written for
  what finished; a rerun resumes.
- ``gradebook.csv`` and ``report.html`` are built from every ``results.json`` of the homework
  in the output folder, not only this run's (regrading one student keeps the others' rows).
- A folder that holds archives but none of the homework's files is a folder of submissions:
  each archive is graded on its own (``expand_submissions``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from autograder.engine.results import ungradable, write_results

if TYPE_CHECKING:
    from autograder.engine.grading import Grader

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".ipynb")
STOP_WAIT_S = 20.0  # how long a stopped batch waits for its workers to notice


class BatchInterrupted(BaseException):
    """A batch was stopped by a signal; ``exit_status`` is 128 + its number (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_status = 128 + signum


@contextlib.contextmanager
def signals_stop_batch() -> Iterator[list[int]]:
    """While active (main thread only), SIGINT and SIGTERM raise ``BatchInterrupted`` in the
    main thread. Once one arrived, or once the batch appends to the yielded list (it is
    stopping for another reason), further signals are ignored: the stop runs to its end."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        if received:
            return  # already stopping
        received.append(signum)
        raise BatchInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def holds_submission(folder: Path, accept) -> bool:
    """Whether ``folder`` has one of the accepted files at its top (or under one folder)."""
    if any((folder / path).is_file() for path in accept):
        return True
    return any(
        (child / path).is_file()
        for child in folder.iterdir()
        if child.is_dir() and not child.is_symlink()
        for path in accept
    )


def expand_submissions(paths, accept, log=None) -> list[Path]:
    """The submissions named by ``paths``: a folder that holds archives (.zip, .tar.gz,
    .ipynb...) but none of the accepted files is a folder *of* submissions, one per archive;
    anything else is one submission."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            archives = sorted(p for p in path.iterdir() if _is_archive(p) and not p.is_symlink())
            if archives and not holds_submission(path, accept):
                if log is not None:
                    log(f"{path}: {len(archives)} archives, graded one by one")
                expanded.extend(archives)
                continue
        expanded.append(path)
    return expanded


def grade_batch(
    grader: Grader,
    paths: list[str | Path],
    out_dir: Path,
    jobs: int = 1,
    resume: bool = True,
    progress: bool = True,
) -> list[dict]:
    """Grade many submissions, ``jobs`` at a time; every one gets a results.json.

    Raises ``SandboxBroken`` (nothing graded, or the batch stopped when the sandbox broke
    midway) and ``BatchInterrupted`` (SIGINT/SIGTERM); in both cases the gradebook and report
    hold what finished."""
    from autograder.engine.grading import SandboxBroken

    out_dir = Path(out_dir)
    submissions = expand_submissions(paths, grader.bundle.accept, grader.log)
    names = unique_names(submissions)
    results: dict[str, dict] = {}
    todo = []
    for path, name in zip(submissions, names):
        previous = previous_result(grader, path, out_dir / name / "results.json")
        if resume and previous is not None:
            results[name] = previous
        else:
            todo.append((path, name))
    if todo:
        grader.check_sandbox()  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = _progress(len(submissions), len(results), progress)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    futures: dict[concurrent.futures.Future, str] = {}
    stopped: BaseException | None = None
    with signals_stop_batch() as signals:
        try:
            for path, name in todo:
                futures[pool.submit(grader.grade, path, out_dir, name)] = name
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except SandboxBroken:
                    raise
                except Exception as error:  # grade() catches everything; belt and braces
                    results[name] = ungradable(
                        grader,
                        name,
                        f"could not be graded: {type(error).__name__}",
                        time.monotonic(),
                    )
                    write_results(results[name], out_dir, name)
                bar.update(1)
        except (BatchInterrupted, KeyboardInterrupt, SandboxBroken) as error:
            stopped = error
            signals.append(0)  # stopping: a second Ctrl-C does not cut the stop short
            _stop_workers(grader, pool, futures)
            for future, name in futures.items():  # those that finished in the meantime
                if future.done() and not future.cancelled() and future.exception() is None:
                    results[name] = future.result()
        finally:
            pool.shutdown(wait=stopped is None, cancel_futures=True)
            bar.close()
        write_homework_outputs(out_dir, grader.bundle)
    raise_if_stopped(stopped)
    return [results[name] for name in names]


def write_homework_outputs(out_dir: Path, bundle) -> None:
    """The gradebook and report: every result of this homework in the folder, not ours only."""
    from autograder.engine.report import load_results, write_batch_outputs

    everything = load_results(out_dir, homework=bundle.name)
    if everything:
        write_batch_outputs(out_dir, everything, bundle)


def raise_if_stopped(stopped: BaseException | None) -> None:
    """Re-raise what stopped a batch, after its outputs are written (Ctrl-C as SIGINT's
    BatchInterrupted)."""
    if stopped is not None:
        if isinstance(stopped, KeyboardInterrupt):
            raise BatchInterrupted(signal.SIGINT) from None
        raise stopped


def _stop_workers(grader: Grader, pool, futures: dict) -> None:
    """Stop the batch: pending submissions cancelled, running sandboxes killed, and the
    workers given a few seconds to notice (each one's submission gets no result)."""
    grader.stop()
    for future in futures:
        future.cancel()
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        done, running = concurrent.futures.wait(futures, timeout=0.5)
        if not running:
            return
        grader.stop()  # a run that started between the first kill and the flag


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
