"""The course server under load and faults (``python -m autograder.server.loadtest``,
``make load-test``).

Starts ``autograder serve`` as a subprocess (two local Dask workers, SQLite) on a course of
``--students`` simulated students, who submit ``--submissions`` hw1 zips in all (the
reference solution and the blank release, alternately), each student waiting for the feedback of one
before sending the next, through the JSON API ``make submit`` uses (with an Idempotency-Key,
retried while the server is unreachable). Scenarios (``--scenario``, repeatable; default all):

- ``plain``: nothing goes wrong;
- ``kill-worker``: one grading worker is killed (SIGKILL) once a third are graded;
- ``restart``: the server is stopped (SIGTERM) once half are graded and started again;
- ``kill-and-restart``: both, a worker at a third and the server at two thirds (the short
  form in make test's suite).

Before the clock starts, the instructor submits one reference zip per worker (the workers'
first grading builds their grader); those are not counted.

Each scenario checks, from the database afterwards, that every acknowledged submission is
stored and graded exactly once (one stored result; none lost, none duplicated, and the score
the submission deserves), and reports upload-to-feedback times (p50/p95) as a table and as
JSON (``--json``, default ``build/load-test/results.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

HW = "hw1"
SCENARIOS = ("plain", "kill-worker", "restart")
ALL_SCENARIOS = (*SCENARIOS, "kill-and-restart")  # both faults in one run (the short test)


@dataclass
class Outcome:
    scenario: str
    students: int
    submissions: int
    acknowledged: int = 0
    graded: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_score: int = 0
    failed: int = 0
    resent: int = 0  # sent to the cluster more than once (a restart or a dead worker)
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    wall_s: float = 0.0
    faults: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.acknowledged == self.submissions
            and self.graded == self.submissions
            and not (self.lost or self.duplicated or self.wrong_score or self.failed)
        )


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def kinds_of_submission(homework=None) -> list[tuple[str, bytes, float]]:
    """(kind, zip, the score it deserves): the reference (every point) and the blank
    release (none). ``homework``: hw1's ``authoring.bundle.Homework`` (loaded if None)."""
    if homework is None:
        from autograder.authoring.bundle import Homework

        homework = Homework.load(HW)

    def files(reference: tuple[str, ...]) -> dict[str, bytes]:
        return {
            p: (homework.reference if p in reference else homework.blank)[p]
            for p in homework.accept
        }

    return [
        ("reference", zip_of(files(tuple(homework.accept))), float(homework.max_score)),
        ("blank", zip_of(files(())), 0.0),
    ]


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return round(ordered[index], 2)


class ServerProcess:
    """``autograder serve`` in a subprocess (its own process group)."""

    def __init__(
        self,
        course: Path,
        data: Path,
        port: int,
        workers: int,
        log: Path,
        cluster: str | None = None,
    ):
        self.command = [
            sys.executable,
            "-m",
            "autograder",
            "serve",
            "--course",
            str(course),
            "--data",
            str(data),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--rate-limit",
            "100000",
            "--homework",
            HW,
            "--quiet",
            *(["--cluster", cluster] if cluster else []),
        ]
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> None:
        import httpx

        handle = open(self.log, "a")
        self.process = subprocess.Popen(
            self.command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server did not start in {timeout} s; see {self.log}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_scenario(
    scenario: str,
    students: int,
    submissions: int,
    work: Path,
    workers: int = 2,
    port: int | None = None,
    kinds: list[tuple[str, bytes, float]] | None = None,
    say=print,
    own_cluster: bool = False,
) -> Outcome:
    """One scenario. The two workers are a ``LocalCluster`` this process starts and the
    server connects to (so a server restart keeps the workers warm), or with
    ``own_cluster`` the server's own in-process one (restarted with it)."""
    import httpx

    from autograder.server.cli import issue
    from autograder.server.config import ServerConfig
    from autograder.server.db import Database, Submission

    work.mkdir(parents=True, exist_ok=True)
    roster = "id,name\n" + "".join(f"u{i:03d},Student {i}\n" for i in range(students))
    (work / "roster.csv").write_text(roster)
    course = work / "course.toml"
    course.write_text(
        '[course]\nname = "load test"\nroster = "roster.csv"\n\n'
        '[server]\ninstructors = ["prof"]\n\n[homeworks.hw1]\n'
    )
    data = work / "data"
    config = ServerConfig(course_path=course, data_dir=data, homeworks=(HW,))
    tokens = {user: token for user, _, token in issue(config, work / "tokens.csv")}
    kinds = kinds or kinds_of_submission()
    port = port or _free_port()
    cluster = None
    if not own_cluster:
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_port=0,
        )
    address = None if cluster is None else cluster.scheduler_address
    server = ServerProcess(course, data, port, workers, work / "server.log", address)
    outcome = Outcome(scenario, students, submissions)
    # who submits what: submission i is student i % students's, of kind i % len(kinds)
    plan: dict[str, list[int]] = {f"u{i:03d}": [] for i in range(students)}
    for number in range(submissions):
        plan[f"u{number % students:03d}"].append(number)
    acknowledged: dict[int, int] = {}  # submission number -> server id
    expected: dict[int, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    done_count = [0]

    def student(user: str, numbers: list[int]) -> None:
        headers = {"Authorization": f"Bearer {tokens[user]}", "Content-Type": "application/zip"}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for number in numbers:
                kind, archive, score = kinds[number % len(kinds)]
                key = uuid.uuid4().hex
                start = time.monotonic()
                while True:  # upload until acknowledged (the same key: stored once)
                    try:
                        answer = client.post(
                            f"/api/homeworks/{HW}/submissions",
                            content=archive,
                            headers={
                                **headers,
                                "Idempotency-Key": key,
                                "X-Filename": f"{kind}.zip",
                            },
                        )
                        if answer.status_code in (200, 201):
                            break
                        say(f"  {user}: upload answered {answer.status_code} {answer.text[:200]}")
                    except httpx.HTTPError:
                        pass
                    time.sleep(1.0)
                submission_id = answer.json()["id"]
                with lock:
                    acknowledged[number] = submission_id
                    expected[submission_id] = score
                while True:  # poll until the feedback is there
                    try:
                        seen = client.get(f"/api/submissions/{submission_id}", headers=headers)
                        if seen.status_code == 200 and seen.json()["state"] in ("done", "failed"):
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(1.0)
                with lock:
                    latencies.append(time.monotonic() - start)
                    done_count[0] += 1

    def progress() -> int:
        with lock:
            return done_count[0]

    say(f"[{scenario}] {students} students, {submissions} submissions, {workers} workers")
    server.start()
    warm_up(server.url, tokens["prof"], kinds[0][1], workers)
    begin = time.monotonic()
    threads = [
        threading.Thread(target=student, args=(user, numbers), daemon=True)
        for user, numbers in plan.items()
        if numbers
    ]
    for thread in threads:
        thread.start()
    try:
        if scenario in ("kill-worker", "kill-and-restart"):
            _wait(lambda: progress() >= max(1, submissions // 3), threads)
            outcome.faults.append(kill_a_worker(server.url, tokens["prof"], say))
        if scenario in ("restart", "kill-and-restart"):
            share = 2 / 3 if scenario == "kill-and-restart" else 1 / 2
            _wait(lambda: progress() >= max(1, int(submissions * share)), threads)
            say(f"  restarting the server after {progress()} feedbacks")
            server.stop()
            server.start()
            outcome.faults.append(f"server restarted after {progress()} of {submissions}")
        for thread in threads:
            thread.join()
    finally:
        server.stop()
        if cluster is not None:
            cluster.close()
    outcome.wall_s = round(time.monotonic() - begin, 1)
    db = Database(config.database_url)
    try:
        with db.session() as session:
            every = session.query(Submission).all()
            rows = {row.id: row for row in every if row.student_id != "prof"}
    finally:
        db.close()
    outcome.acknowledged = len(acknowledged)
    outcome.lost = sum(1 for sid in acknowledged.values() if sid not in rows)
    outcome.graded = sum(1 for row in rows.values() if row.state == "done")
    outcome.failed = sum(1 for row in rows.values() if row.state == "failed")
    outcome.duplicated = sum(1 for row in rows.values() if row.result_writes > 1)
    outcome.duplicated += len(rows) - len(set(acknowledged.values()))  # stored twice
    outcome.wrong_score = sum(
        1
        for sid, score in expected.items()
        if sid in rows and rows[sid].state == "done" and abs((rows[sid].score or 0) - score) > 1e-6
    )
    outcome.resent = sum(1 for row in rows.values() if row.dispatches > 1)
    outcome.p50_s = percentile(latencies, 0.5)
    outcome.p95_s = percentile(latencies, 0.95)
    outcome.max_s = round(max(latencies), 2) if latencies else None
    return outcome


def warm_up(url: str, token: str, archive: bytes, workers: int) -> None:
    """One submission per worker, graded before the measured run."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/zip"}
    with httpx.Client(base_url=url, timeout=60) as client:
        ids = [
            client.post(f"/api/homeworks/{HW}/submissions", content=archive, headers=headers)
            .raise_for_status()
            .json()["id"]
            for _ in range(workers)
        ]
        for submission_id in ids:
            while client.get(f"/api/submissions/{submission_id}", headers=headers).json()[
                "state"
            ] not in ("done", "failed"):
                time.sleep(0.5)


def kill_a_worker(url: str, token: str, say) -> str:
    import httpx

    status = httpx.get(
        f"{url}/api/cluster", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).json()
    pids = [w["pid"] for w in status["workers"].values() if isinstance(w, dict) and w.get("pid")]
    if not pids:
        raise RuntimeError(f"no worker to kill: {status}")
    os.kill(pids[0], signal.SIGKILL)
    say(f"  killed grading worker pid {pids[0]} (queue: {status['queue']})")
    return f"killed worker pid {pids[0]}"


def _wait(condition, threads: list[threading.Thread]) -> None:
    while not condition():
        if not any(t.is_alive() for t in threads):
            return
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table(outcomes: list[Outcome]) -> str:
    head = (
        f"{'scenario':<12} {'subs':>5} {'acked':>5} {'graded':>6} {'lost':>4} {'dup':>4} "
        f"{'wrong':>5} {'failed':>6} {'resent':>6} {'p50 s':>7} {'p95 s':>7} {'wall s':>7}"
    )
    lines = [head, "-" * len(head)]
    for o in outcomes:
        lines.append(
            f"{o.scenario:<12} {o.submissions:>5} {o.acknowledged:>5} {o.graded:>6} "
            f"{o.lost:>4} {o.duplicated:>4} {o.wrong_score:>5} {o.failed:>6} {o.resent:>6} "
            f"{o.p50_s or 0:>7.1f} {o.p95_s or 0:>7.1f} {o.wall_s:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.server.loadtest", description=__doc__
    )
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scenario", action="append", choices=ALL_SCENARIOS)
    parser.add_argument("--work", default="build/load-test", help="course, data, logs")
    parser.add_argument("--json", default=None, help="default: WORK/results.json")
    parser.add_argument(
        "--own-cluster",
        action="store_true",
        help="the server starts its own workers (restarted with it) instead of connecting to "
        "a local cluster this process starts",
    )
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    kinds = kinds_of_submission()
    outcomes = []
    for scenario in args.scenario or SCENARIOS:
        folder = work / scenario
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        outcome = run_scenario(
            scenario,
            args.students,
            args.submissions,
            folder,
            args.workers,
            kinds=kinds,
            own_cluster=args.own_cluster,
        )
        print(table([outcome]), flush=True)
        outcomes.append(outcome)
    print()
    print(table(outcomes))
    target = Path(args.json) if args.json else work / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([{**asdict(o), "ok": o.ok} for o in outcomes], indent=1) + "\n")
    print(f"\nJSON: {target}")
    bad = [o.scenario for o in outcomes if not o.ok]
    if bad:
        print(
            f"FAILED: {', '.join(bad)}: a submission lost, duplicated or misgraded", file=sys.stderr
        )
        return 1
    mean = statistics.fmean([o.wall_s for o in outcomes])
    print(f"every submission graded exactly once ({mean:.0f} s per scenario)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
