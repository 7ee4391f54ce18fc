"""Helpers of the course server's tests: a course on disk, zips, a fake grading cluster (for
the API tests; the end-to-end tests use the real ``autograder.cluster.GradingCluster``), and
polling."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import io
import threading
import time
import zipfile
from pathlib import Path

ROSTER = "id,name,email\ns1,Ada Student,ada@example.edu\ns2,Bob <b>Student</b>,bob@example.edu\n"


def write_course(folder: Path, hw: str = "hw1", due: dt.datetime | None = None, extra="") -> Path:
    """A course of two students (s1, s2) and one instructor (prof) with ``hw`` due at
    ``due`` (default: in a week)."""
    folder.mkdir(parents=True, exist_ok=True)
    due = due or dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)
    (folder / "roster.csv").write_text(ROSTER)
    (folder / "course.toml").write_text(
        '[course]\nname = "Test course"\nroster = "roster.csv"\n\n'
        '[server]\ninstructors = ["prof"]\n\n'
        f"[homeworks.{hw}]\ndue = {due.isoformat()}\nlate_penalty = 10\n{extra}"
    )
    return folder / "course.toml"


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def fake_result(homework: str, archive: bytes, filename: str) -> dict:
    """What the fake grader gives: unit "first" (visible, 6 points) and "second" (shown after
    the due date, 4 points) get full marks when the zip's answer.txt names them; the unit's
    output repeats the file's first line (student-controlled text)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        text = opened.read("answer.txt").decode() if "answer.txt" in opened.namelist() else ""
    first_line = text.splitlines()[0] if text else ""
    tests = []
    for unit, points, visibility in (("first", 6.0, "visible"), ("second", 4.0, "after_due_date")):
        score = points if unit in text else 0.0
        tests.append(
            {
                "name": unit,
                "score": score,
                "max_score": points,
                "output": f"{unit}: you wrote {first_line}",
                "visibility": visibility,
            }
        )
    return {
        "score": sum(t["score"] for t in tests),
        "max_score": 10.0,
        "tests": tests,
        "output": "",
        "extra_data": {"homework": homework, "submission": filename},
    }


class FakeCluster:
    """``GradingCluster``'s interface on a thread pool. ``hold``: tasks wait until
    ``release()`` (or are cancelled by ``close()``, as a cluster going away does)."""

    def __init__(self, hold: bool = False, fail: bool = False):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.fail = fail
        self.keys: list[str] = []
        self.client = None
        self.closed = False

    def _run(self, homework, archive, filename):
        while not self.gate.wait(0.05):
            if self.closed:
                raise concurrent.futures.CancelledError()
        if self.fail:
            raise RuntimeError("the worker died three times")
        return fake_result(homework, archive, filename)

    def submit(self, key, homework, archive_bytes, filename):
        self.keys.append(key)
        return self.pool.submit(self._run, homework, archive_bytes, filename)

    def release(self):
        self.gate.set()

    def close(self):
        self.closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)


def wait_for(check, timeout: float = 30.0, every: float = 0.05):
    """Call ``check`` until it returns something true; return that (fail on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(every)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """The application served by uvicorn on 127.0.0.1 in a thread (a real HTTP server, for
    ``make submit`` and the browser)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


POSTGRES_BIN = [Path("/usr/local/bin"), Path("/usr/lib/postgresql/15/bin"), Path("/usr/bin")]


def postgres_tools() -> dict[str, Path] | None:
    """initdb, pg_ctl and postgres from one folder, or None."""
    import shutil

    folders = [*POSTGRES_BIN]
    found = shutil.which("pg_ctl")
    if found:
        folders.insert(0, Path(found).parent)
    for folder in folders:
        tools = {name: folder / name for name in ("initdb", "pg_ctl", "postgres")}
        if all(path.is_file() for path in tools.values()):
            return tools
    return None


class PostgresServer:
    """A throwaway PostgreSQL server on a Unix socket in a temporary folder (trust auth).
    PostgreSQL refuses to run as root, so as root it runs as ``nobody`` (setpriv)."""

    def __init__(self, tools: dict[str, Path]):
        import os
        import tempfile

        self.tools = tools
        self.root = Path(tempfile.mkdtemp(prefix="needle-pg-"))
        self.root.chmod(0o755)
        self.data, self.socket, self.logs = (self.root / n for n in ("data", "sock", "logs"))
        self.prefix: list[str] = []
        for folder in (self.data, self.socket, self.logs):
            folder.mkdir()
            if os.getuid() == 0:
                os.chown(folder, 65534, 65534)
        if os.getuid() == 0:
            self.prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        self.databases = 0

    def _run(self, *argv: str) -> None:
        import subprocess

        subprocess.run([*self.prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        self._run(
            str(self.tools["initdb"]),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        options = f"-k {self.socket} -c listen_addresses='' -c fsync=off"
        self._run(
            str(self.tools["pg_ctl"]),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.logs / "postgres.log"),
            "-w",
            "start",
        )
        return self

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        self.databases += 1
        name = f"needle_test_{self.databases}"
        with psycopg.connect(
            host=str(self.socket), user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@/{name}?host={self.socket}"

    def stop(self) -> None:
        import shutil

        try:
            self._run(
                str(self.tools["pg_ctl"]), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
