"""The course server (``autograder serve``): a FastAPI application.

JSON API (``Authorization: Bearer <token>``; what ``make submit`` uses):

    GET  /api/health                        liveness
    GET  /api/me                            who the token belongs to
    POST /api/homeworks/{hw}/submissions    the zip as the body (201; Idempotency-Key header)
    GET  /api/submissions                   the caller's submissions
    GET  /api/submissions/{id}              one of them, with the feedback it may see
    GET  /api/class/{hw}/gradebook.csv      instructors: the class gradebook
    GET  /api/class/{hw}/canvas.csv         instructors: Canvas's import (grades.csv: plain)
    POST /api/class/{hw}/regrade            instructors: regrade (JSON {"student": id?})
    GET  /api/cluster                       instructors: grading queue and workers

Pages (a cookie session after ``/login`` with a token; forms carry a CSRF token): ``/me``
(the student's submissions and upload form), ``/submissions/{id}``, ``/dashboard`` (the class:
students x homeworks, histograms, pass rates, lateness, downloads, regrades) and
``/dashboard/{hw}/similarity``.

A submission is acknowledged (201) only once its archive is on disk (content-addressed,
fsynced) and its row committed; grading then runs on the cluster (see ``grading``).
"""

from __future__ import annotations

import collections
import io
import json
import math
import threading
import time
import zipfile
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from autograder.course.config import Course
from autograder.server.auth import INSTRUCTOR, STUDENT, User
from autograder.server.config import ServerConfig
from autograder.server.db import DONE, FAILED, QUEUED, UNFINISHED, Database, Submission, utcnow
from autograder.server.grading import ClusterLike, Dispatcher, entry_name
from autograder.server.storage import Storage

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (a sliding window)."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.events: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self.lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """0 when ``key`` may act now, else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            times = self.events[key]
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.limit:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def record(self, key: str) -> None:
        with self.lock:
            self.events[key].append(time.monotonic())


@dataclass
class Server:
    """Everything a request needs."""

    config: ServerConfig
    course: Course
    homeworks: tuple[str, ...]
    instructors: tuple[str, ...]
    db: Database
    storage: Storage
    dispatcher: Dispatcher
    cluster: Any
    limiter: RateLimiter
    pages: Environment
    # submission id -> (who, reason, (student, old score, old result, sha256)) while regrading
    pending_regrades: dict[int, tuple[str, str, tuple]] = field(default_factory=dict)

    @property
    def classes_dir(self) -> Path:
        return Path(self.config.data_dir) / "classes"

    def check_rate(self, user) -> None:
        """HTTP 429 (with Retry-After) when ``user`` has used up the submissions allowed."""
        wait = self.limiter.retry_after(user.id)
        if wait:
            raise HTTPException(
                429,
                f"too many submissions: at most {self.limiter.limit} per "
                f"{self.limiter.window:g} s; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def accept(
        self, user: User, hw: str, filename: str, data: bytes, key: str | None = None
    ) -> tuple[Submission, bool]:
        """Store and commit a submission, then send it to grading: (row, created). A repeated
        ``key`` (Idempotency-Key) returns the submission it made, stored once."""
        if key:
            existing = self.by_key(user.id, key)
            if existing is not None:
                return existing, False
        self.check_rate(user)
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise HTTPException(400, "the upload is not a zip archive (make submit builds one)")
        sha = self.storage.put(data)
        row = Submission(
            student_id=user.id,
            homework=hw,
            sha256=sha,
            filename=safe_filename(filename, hw),
            size=len(data),
            idempotency_key=key,
            submitted_at=utcnow(),
            state=QUEUED,
            generation=0,
            dispatches=0,
            result_writes=0,
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:  # the same key raced in from a retry
            existing = self.by_key(user.id, key or "")
            if existing is None:
                raise
            return existing, False
        self.limiter.record(user.id)
        try:
            self.dispatcher.dispatch(row.id)
        except Exception as error:  # stored and committed: resumed on the next start
            self.dispatcher.log(f"could not send submission {row.id} to grading: {error}")
        return row, True

    def by_key(self, student: str, key: str) -> Submission | None:
        with self.db.session() as session:
            return session.scalars(
                select(Submission).where(
                    Submission.student_id == student, Submission.idempotency_key == key
                )
            ).first()

    def submission_for(self, user: User, submission_id: int) -> Submission:
        """The submission if ``user`` may read it; 404 otherwise (others' submissions are
        indistinguishable from missing ones)."""
        with self.db.session() as session:
            row = session.get(Submission, submission_id)
        if row is None or (not user.instructor and row.student_id != user.id):
            raise HTTPException(404, "no such submission")
        return row

    def submissions_of(self, student: str) -> list[Submission]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Submission)
                    .where(Submission.student_id == student)
                    .order_by(Submission.id.desc())
                ).all()
            )

    def regrade(self, hw: str, student: str | None, who: str, reason: str = "") -> list[int]:
        """Grade again (next generation) the homework's submissions (of one student)."""
        with self.db.session() as session:
            query = select(Submission).where(
                Submission.homework == hw, Submission.state.in_((DONE, FAILED))
            )
            if student:
                query = query.where(Submission.student_id == student)
            rows = session.scalars(query.with_for_update()).all()
            for row in rows:
                row.generation += 1
                row.state = QUEUED
            ids = [row.id for row in rows]
            olds = {
                row.id: (row.student_id, row.score, row.result_json, row.sha256) for row in rows
            }
        self.pending_regrades.update({i: (who, reason, olds[i]) for i in ids})
        for submission_id in ids:
            self.dispatcher.dispatch(submission_id)
        return ids

    def log_regrade(self, submission_id: int, result: dict | None) -> None:
        """The regrade log of the course tools (``_class/regrades.csv``), one line each."""
        from autograder.course.identities import Entry
        from autograder.course.regrade import Change, append_log

        pending = self.pending_regrades.pop(submission_id, None)
        if pending is None or result is None:
            return
        who, reason, (student, old_score, old_json, sha) = pending
        with self.db.session() as session:
            row = session.get(Submission, submission_id)
            assert row is not None
            hw = row.homework
        old_units = {
            t["name"]: t["score"] for t in json.loads(old_json or '{"tests": []}')["tests"]
        }
        new_units = {t["name"]: t["score"] for t in result["tests"]}
        entry = Entry(entry_name(submission_id, student), str(self.storage.path(sha)), [student])
        change = Change(entry, "all units", old_units, new_units, old_score, float(result["score"]))
        append_log(self.classes_dir / hw, change, who, reason or "server regrade")


def safe_filename(name: str, hw: str) -> str:
    base = Path(name or "").name
    cleaned = "".join(c for c in base if c.isalnum() or c in "._-")[:100]
    return cleaned if cleaned.endswith(".zip") else f"{hw}-submission.zip"


def default_cluster(config: ServerConfig) -> ClusterLike:
    from autograder.cluster import GradingCluster  # the cluster engineer's module

    return GradingCluster(
        address=config.cluster_address,
        n_workers=config.workers,
        sandbox=config.sandbox,
        retries=config.retries,
    )


def create_app(
    config: ServerConfig,
    cluster_factory: Callable[[ServerConfig], ClusterLike] | None = None,
    log: Callable[[str], None] = print,
) -> FastAPI:
    """The application; the database is migrated, the cluster started and unfinished grading
    resumed when it starts (its lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server = await run_in_threadpool(start_server, config, cluster_factory, log)
        app.state.server = server
        try:
            yield
        finally:
            await run_in_threadpool(stop_server, server)

    app = FastAPI(title="needle course server", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    from autograder.server import routes

    routes.install(app)
    return app


def start_server(
    config: ServerConfig,
    cluster_factory: Callable[[ServerConfig], ClusterLike] | None,
    log: Callable[[str], None],
) -> Server:
    course, homeworks, instructors = config.load()
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url)
    db.migrate()
    storage = Storage(data_dir)
    cluster = (cluster_factory or default_cluster)(config)
    pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    server_box: dict[str, Server] = {}

    def on_result(submission_id: int, result: dict | None) -> None:
        server_box["server"].log_regrade(submission_id, result)

    dispatcher = Dispatcher(db, storage, cluster, data_dir / "classes", on_result, log)
    server = Server(
        config,
        course,
        homeworks,
        instructors,
        db,
        storage,
        dispatcher,
        cluster,
        RateLimiter(config.rate_limit, config.rate_window_s),
        pages,
    )
    server_box["server"] = server
    dispatcher.resume()
    return server


def stop_server(server: Server) -> None:
    server.dispatcher.close()
    try:
        server.cluster.close()
    finally:
        server.db.close()


def queue_counts(server: Server) -> dict[str, int]:
    with server.db.session() as session:
        counts = dict(
            session.execute(select(Submission.state, func.count()).group_by(Submission.state)).all()
        )
    return {state: int(counts.get(state, 0)) for state in (*UNFINISHED, DONE, FAILED)}


def people(server: Server) -> list[tuple[str, str]]:
    """(id, role) of everyone who gets a token: the roster's students and the instructors."""
    found = [(s.id, STUDENT) for s in server.course.students]
    return found + [(i, INSTRUCTOR) for i in server.instructors]
