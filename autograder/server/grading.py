"""Grading the accepted submissions on the cluster, and storing their results exactly once.

Every submission in state ``queued`` or ``grading`` is sent to the grading cluster
(``autograder.cluster.GradingCluster``: one Dask task per submission, retried by Dask when a
worker dies) under a key naming the submission, its regrade generation and the dispatch. A
finished task's results.json goes through one writer thread into the database with
``record_result``, which is idempotent: a result for a generation already stored, or for an
older generation (a regrade started since), changes nothing. On start the server calls
``resume`` and every unfinished submission is sent again (a restart loses nothing). Each
stored result is also written under ``DATA/classes/<hw>/<name>/results.json`` where the
course tools (gradebook, exports, regrade log, similarity) read a class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from autograder.server.db import DONE, FAILED, GRADING, UNFINISHED, Database, Submission, utcnow
from autograder.server.storage import Storage


class ClusterLike(Protocol):
    """What the server uses of ``autograder.cluster.GradingCluster``."""

    def submit(self, key: str, homework: str, archive: bytes, filename: str, /) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Job:
    submission: int
    generation: int
    key: str


def entry_name(submission_id: int, student_id: str) -> str:
    """A submission's folder name in the class layout (``batch.safe_name`` rules)."""
    from autograder.engine.batch import safe_name

    return safe_name(f"{student_id}-{submission_id}")


def record_result(
    db: Database,
    submission_id: int,
    generation: int,
    result: dict | None,
    error: str | None = None,
) -> bool:
    """Store the result (or the failure) of ``generation``'s grading; True when stored, False
    when it changed nothing (already stored, or a regrade made it stale)."""
    with db.session() as session:
        row = session.get(Submission, submission_id, with_for_update=True)
        if row is None or row.generation != generation:
            return False
        if row.state in (DONE, FAILED) and row.result_generation == generation:
            return False
        if result is not None:
            row.result_json = json.dumps(result, allow_nan=False)
            row.score = float(result["score"])
            row.max_score = float(result["max_score"])
            row.state, row.error = DONE, None
        else:
            row.state, row.error = FAILED, (error or "grading failed")[-4000:]
        row.graded_at = utcnow()
        row.result_generation = generation
        row.result_writes += 1
    return True


class Dispatcher:
    """Sends submissions to the cluster and stores what comes back."""

    def __init__(
        self,
        db: Database,
        storage: Storage,
        cluster: ClusterLike,
        classes_dir: Path,
        on_result: Callable[[int, dict | None], None] | None = None,
        log: Callable[[str], None] = print,
    ):
        self.db, self.storage, self.cluster = db, storage, cluster
        self.classes_dir = Path(classes_dir)
        self.on_result = on_result
        self.log = log
        self._done: queue.Queue[tuple[Job, Any] | None] = queue.Queue()
        self._pending: dict[str, Any] = {}  # key -> future (kept alive while it runs)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="results", daemon=True)
        self._writer.start()

    # -- sending ---------------------------------------------------------------------------

    def dispatch(self, submission_id: int) -> str | None:
        """Send one submission (its current generation) to the cluster; returns the key."""
        with self.db.session() as session:
            row = session.get(Submission, submission_id, with_for_update=True)
            if row is None or row.state not in UNFINISHED:
                return None
            row.state = GRADING
            row.dispatches += 1
            job = Job(row.id, row.generation, f"grade-{row.id}-g{row.generation}-d{row.dispatches}")
            homework, sha, filename = row.homework, row.sha256, row.filename
        data = self.storage.read(sha)
        future = self.cluster.submit(job.key, homework, data, filename)
        with self._lock:
            self._pending[job.key] = future
        future.add_done_callback(lambda f, job=job: self._done.put((job, f)))
        return job.key

    def resume(self) -> int:
        """Send every unfinished submission again (after a restart); returns how many."""
        with self.db.session() as session:
            ids = session.scalars(
                select(Submission.id).where(Submission.state.in_(UNFINISHED)).order_by("id")
            ).all()
        for submission_id in ids:
            self.dispatch(submission_id)
        if ids:
            self.log(f"resumed grading of {len(ids)} unfinished submission(s)")
        return len(ids)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- receiving -------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                return
            job, future = item
            try:
                self._store(job, future)
            except Exception:  # a database hiccup must not stop the writer
                self.log(f"could not store the result of {job.key}:\n{traceback.format_exc()}")
            finally:
                with self._lock:
                    self._pending.pop(job.key, None)

    def _store(self, job: Job, future: Any) -> None:
        if self._closing.is_set() or future.cancelled():
            return  # the cluster is going away (shutdown): resume() sends it again
        try:
            result = future.result()
            error = None
            if not isinstance(result, dict) or "score" not in result:
                result, error = None, f"the grader returned no results.json: {result!r:.200}"
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            return
        except Exception as exc:  # the task failed after the cluster's retries
            result, error = None, f"{type(exc).__name__}: {exc}"
        if not record_result(self.db, job.submission, job.generation, result, error):
            return
        if result is not None:
            self.write_class_copy(job.submission, result)
        if self.on_result is not None:
            self.on_result(job.submission, result)

    def write_class_copy(self, submission_id: int, result: dict) -> Path:
        from autograder.engine.results import write_results

        with self.db.session() as session:
            row = session.get(Submission, submission_id)
            assert row is not None
            homework, student = row.homework, row.student_id
        folder = self.classes_dir / homework
        name = entry_name(submission_id, student)
        write_results(result, folder, name)
        return folder / name

    def close(self) -> None:
        self._closing.set()
        self._done.put(None)
        self._writer.join(timeout=10)
