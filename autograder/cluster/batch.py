"""``autograder grade HW SUB... --cluster ADDRESS``: a batch graded one task per submission on a
Dask cluster, with the outputs of local grading (``engine.batch.grade_batch``).

The submitter keeps the parts of a batch that touch its own files: the submissions are read
here (a folder is sent as a ``.tar.gz`` of it), resume compares the stored results'
fingerprints with this grader's, and each ``results.json``, ``feedback.txt``, the
``gradebook.csv`` and ``report.html`` are written here by the engine's own functions. The
workers only grade (``worker.grade_task``).

- A task whose worker died is run again by Dask on another worker; each submission is
  written once, from the one result its future gives.
- A task that keeps killing its workers (``KilledWorker``) or fails after its retries gets a
  "could not be graded" result that says so (the details are in ``extra_data``).
- A worker whose sandbox does not work (``SandboxBroken``), or that cannot build the
  homework's grader (``GraderSetupError``), stops the batch as locally; so do SIGINT and
  SIGTERM (``BatchInterrupted``): the tasks not finished are cancelled (a task already
  running on a worker finishes there, its result unused), the gradebook and report hold what
  finished, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator

from autograder.cluster.client import GradingCluster, GradingItem
from autograder.engine.batch import (
    BatchInterrupted,
    expand_submissions,
    previous_result,
    raise_if_stopped,
    signals_stop_batch,
    unique_names,
    write_homework_outputs,
)
from autograder.engine.results import ungradable, write_results

if TYPE_CHECKING:
    from autograder.engine.grading import Grader

LOCAL = "local"


def parse_cluster(spec: str) -> tuple[str | None, int]:
    """``--cluster``: ``local`` / ``local:N`` (an in-process cluster of N workers, default 2)
    -> (None, N); anything else is a scheduler address -> (address, 0)."""
    if spec == LOCAL:
        return None, 2
    if spec.startswith(LOCAL + ":"):
        count = spec[len(LOCAL) + 1 :]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--cluster {spec}: give local:N with N a number of workers >= 1")
        return None, int(count)
    if not spec.strip():
        raise ValueError("--cluster: give local, local:N or a scheduler address")
    return spec, 0


class _Idle:
    """Stands in for a cluster when every submission was resumed."""

    def grade_many(self, items, progress=True, on_error=None) -> Generator[Any, None, None]:
        yield from ()


def pack_submission(path: Path) -> tuple[bytes, str]:
    """The bytes that travel to a worker and the file name they are graded under: a file as it
    is; a folder as a ``.tar.gz`` of its contents (links and special files go in as what they
    are, for the worker's reader to refuse, as local grading refuses them in a folder)."""
    if path.is_dir() and not path.is_symlink():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
            for child in sorted(path.iterdir()):
                tar.add(child, arcname=child.name, recursive=True)
        return buffer.getvalue(), f"{path.name}.tar.gz"
    return path.read_bytes(), path.name


def task_key(homework: str, name: str, archive: bytes, options: dict[str, Any]) -> str:
    """``grade-<hash>-<name>``: the same submission graded the same way has the same key."""
    digest = hashlib.sha256()
    digest.update(json.dumps([homework, options], sort_keys=True, default=str).encode() + b"\0")
    digest.update(archive)
    return f"grade-{digest.hexdigest()[:24]}-{name}"


def grade_batch_on_cluster(
    cluster: GradingCluster | Callable[[], GradingCluster],
    grader: Grader,
    paths: list[str | Path],
    out_dir: Path,
    resume: bool = True,
    progress: bool = True,
    limits: dict[str, Any] | None = None,
    bundle_required: bool = False,
) -> list[dict]:
    """Grade ``paths`` on ``cluster``; every submission gets a results.json, as with
    ``engine.batch.grade_batch``. ``cluster``: a ``GradingCluster``, or a function that makes
    one (called only when something is left to grade; closed at the end). ``grader``: this
    machine's grader of the homework (its bundle, which the workers use when they have it,
    its fingerprints for resume, its "could not be graded" results), made with the sandbox
    kind and ``limits`` (overrides) the workers use. ``bundle_required`` (``--bundle``): a
    worker that does not have that very bundle refuses to grade (the batch stops) instead
    of building its own.

    Raises ``SandboxBroken``/``GraderSetupError`` (a worker cannot grade) and
    ``BatchInterrupted`` (SIGINT/SIGTERM); in every case the gradebook and report hold what
    finished."""
    from autograder.engine.grading import GraderSetupError

    out_dir = Path(out_dir)
    homework = grader.bundle.name
    submissions = expand_submissions(paths, grader.bundle.accept, grader.log)
    names = unique_names(submissions)
    results: dict[str, dict] = {}
    items: list[GradingItem] = []
    for path, name in zip(submissions, names):
        previous = previous_result(grader, path, out_dir / name / "results.json")
        if resume and previous is not None:
            results[name] = previous
            continue
        try:
            archive, filename = pack_submission(path)
        except OSError as error:  # unreadable here: the worker reports it as ungradable
            archive, filename = b"", f"unreadable-{type(error).__name__}"
        options: dict[str, Any] = {"name": name, "bundle_key": grader.bundle.key}
        if limits:
            options["limits"] = dict(limits)
        if bundle_required:
            options["bundle_required"] = True
        key = task_key(homework, name, archive, {**options, "sandbox": grader.sandbox.kind})
        items.append(GradingItem(key, homework, archive, filename, options, tag=name))
    out_dir.mkdir(parents=True, exist_ok=True)

    def failed(item: GradingItem, error: BaseException) -> dict:
        if isinstance(error, GraderSetupError):  # SandboxBroken too: no zero for anyone
            raise error
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        why = type(error).__name__
        if why == "KilledWorker":
            reason = "could not be graded: its grading worker died each time it was graded"
        else:
            reason = f"could not be graded: the grading worker failed ({why})"
        result = ungradable(grader, item.tag, reason, time.monotonic())
        result["extra_data"]["grader_error"] = detail[-4000:]
        return result

    stopped: BaseException | None = None
    warned: set[str] = set()
    owned: GradingCluster | None = None
    active: GradingCluster | _Idle
    if isinstance(cluster, GradingCluster):
        active = cluster
    elif items:
        active = owned = cluster()
    else:
        active = _Idle()  # everything resumed: no cluster is started
    with signals_stop_batch() as signals, owned or contextlib.nullcontext():
        graded = active.grade_many(items, progress=progress, on_error=failed)
        try:
            for item, result in graded:
                worker_key = result.get("extra_data", {}).get("bundle_key")
                if worker_key and worker_key != grader.bundle.key and worker_key not in warned:
                    warned.add(worker_key)  # the homework changed here or there: no resume
                    grader.log(
                        f"note: a worker graded {homework} with bundle {worker_key}, this "
                        f"machine has {grader.bundle.key}"
                    )
                results[item.tag] = write_results(result, out_dir, item.tag)
        except (BatchInterrupted, KeyboardInterrupt, GraderSetupError) as error:
            stopped = error
            signals.append(0)  # stopping: a second Ctrl-C does not cut the stop short
        finally:
            graded.close()  # cancels the tasks not finished
            write_homework_outputs(out_dir, grader.bundle)
    raise_if_stopped(stopped)
    return [results[name] for name in names]
