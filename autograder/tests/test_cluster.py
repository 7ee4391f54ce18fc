"""Grading on a Dask cluster (``autograder.cluster``): the same results as local grading, a
worker killed mid-task, ``grade --cluster local:2``, and hostile submissions on a worker.

hw1 (the quickest homework to grade: a few seconds a submission, no compilation). The
submissions are made from the releases as in ``conftest``: the reference-filled release
deserves every point, the blank one none.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install -e '.[server]')"
)

from autograder.authoring.bundle import bundles_dir  # noqa: E402
from autograder.cluster import GradingCluster, grade_task  # noqa: E402
from autograder.cluster.batch import (  # noqa: E402
    grade_batch_on_cluster,
    pack_submission,
    parse_cluster,
    task_key,
)
from autograder.cluster.worker import cached_bundle  # noqa: E402
from autograder.engine import cgroups  # noqa: E402
from autograder.engine.grading import Grader, GraderSetupError  # noqa: E402
from autograder.engine.sandbox import local_sandbox  # noqa: E402
from autograder.tests.adversarial.build import build_payload  # noqa: E402
from autograder.tests.conftest import make_submission  # noqa: E402
from autograder.tests.sandbox_helpers import sleeping_daemons  # noqa: E402

pytestmark = pytest.mark.hw1

FAST = {"wall_s": 5.0, "cpu_s": 5}  # hostile submissions: hangs end in seconds
SANDBOX_LAUNCHERS = {"setpriv", "bwrap", "unshare", "sh", "python3", "python"}


@pytest.fixture(scope="module")
def cluster():
    with GradingCluster(n_workers=2) as grading:
        yield grading


@pytest.fixture(scope="module")
def submissions(hw1, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cluster-submissions")
    folders = {
        "reference": make_submission(root / "reference", hw1, tuple(hw1.accept)),
        "blank": make_submission(root / "blank", hw1),
        "autograd_only": make_submission(root / "autograd_only", hw1, ("needle/autograd.py",)),
    }
    junk = root / "junk.zip"
    junk.write_bytes(b"this is not a zip file")
    return {**folders, "junk": junk}


def without_timing(results: dict) -> dict:
    """A results dict without what differs between two gradings of the same submission."""
    results = copy.deepcopy(results)
    results.pop("execution_time", None)
    for field in ("graded_at", "run_id"):
        results["extra_data"].pop(field, None)
    for test in results["tests"]:
        test.get("extra_data", {}).pop("wall_s", None)
    return results


def test_parse_cluster():
    assert parse_cluster("local") == (None, 2)
    assert parse_cluster("local:5") == (None, 5)
    assert parse_cluster("tcp://grader-head:8786") == ("tcp://grader-head:8786", 0)
    for bad in ("local:0", "local:x", "  "):
        with pytest.raises(ValueError):
            parse_cluster(bad)


def test_task_key_is_deterministic():
    one = task_key("hw1", "alice", b"data", {"name": "alice"})
    assert one == task_key("hw1", "alice", b"data", {"name": "alice"})
    assert one.startswith("grade-") and one.endswith("-alice")
    assert one != task_key("hw1", "alice", b"other data", {"name": "alice"})
    assert one != task_key("hw1", "alice", b"data", {"name": "alice", "limits": FAST})


def test_grade_task_in_process_never_raises_for_the_submission(hw1):
    """Bytes that are no archive, and a path as file name: a "could not be graded" result
    (the file is written under its last component, in a private folder)."""
    results = grade_task("hw1", b"\x00garbage", "../../etc/passwd.zip", bundle_key=hw1.bundle.key)
    assert results["score"] == 0.0
    assert results["extra_data"]["gradable"] is False
    assert results["output"].rstrip().endswith("(File is not a zip file)")
    assert results["max_score"] == pytest.approx(hw1.max_score)
    assert not Path("/etc/passwd.zip").exists()


def test_grade_task_bundle_required(hw1):
    """``bundle_required``: a worker without that very bundle refuses (not the submission's
    fault: the task fails, the batch stops) rather than grading with another one."""
    with pytest.raises(GraderSetupError, match="no saved grading bundle"):
        grade_task("hw1", b"", "x.zip", bundle_key="0" * 24, bundle_required=True)
    assert cached_bundle(bundles_dir() / "hw1", hw1.bundle.key).key == hw1.bundle.key


def test_grade_task_units(hw1, submissions):
    """``units``: only those units are graded (a regrade of one unit), the reference's
    points for them."""
    archive, filename = pack_submission(submissions["reference"])
    results = grade_task("hw1", archive, filename, units=["forward"], bundle_key=hw1.bundle.key)
    assert [test["name"] for test in results["tests"]] == ["forward"]
    assert results["score"] == pytest.approx(hw1.points["forward"])


def test_cluster_results_identical_to_local_grading(hw1, cluster, submissions):
    """Each submission graded locally and on a worker (input variant 0 for both): the same
    results.json, timings and run ids aside. The folders travel as .tar.gz archives."""
    names = ["reference", "blank", "autograd_only", "junk"]
    futures = {}
    for name in names:
        archive, filename = pack_submission(submissions[name])
        key = task_key("hw1", name, archive, {"name": name, "variant": 0, "test": "identical"})
        futures[name] = cluster.submit(
            key, "hw1", archive, filename, name=name, variant=0, bundle_key=hw1.bundle.key
        )
    start = time.monotonic()
    remote = {name: future.result(timeout=300) for name, future in futures.items()}
    cluster_s = time.monotonic() - start
    start = time.monotonic()
    with Grader(hw1.bundle, local_sandbox(), variant=0) as grader:
        local = {name: grader.grade(submissions[name], name=name) for name in names}
    local_s = time.monotonic() - start
    print(f"\n{len(names)} submissions: cluster {cluster_s:.1f} s, local {local_s:.1f} s")
    assert remote["reference"]["score"] == pytest.approx(hw1.max_score)
    assert remote["blank"]["score"] == 0.0
    assert 0 < remote["autograd_only"]["score"] < hw1.max_score
    assert remote["junk"]["extra_data"]["gradable"] is False
    for name in names:
        assert without_timing(remote[name]) == without_timing(local[name]), name


def test_grading_cluster_connects_to_a_scheduler_address(hw1, cluster):
    """``GradingCluster(address)``: a client of a scheduler that runs elsewhere (here the
    module's local cluster); closing it leaves that cluster running."""
    address = cluster.client.scheduler_info()["address"]
    assert address.startswith("tcp://127.0.0.1:")
    with GradingCluster(address) as remote:
        assert set(remote.client.scheduler_info()["workers"]) == set(
            cluster.client.scheduler_info()["workers"]
        )
        key = task_key("hw1", "x", b"not an archive", {"test": f"address-{time.time()}"})
        future = remote.submit(key, "hw1", b"not an archive", "x.zip", bundle_key=hw1.bundle.key)
        results = future.result(timeout=300)
    assert results["extra_data"]["gradable"] is False
    assert results["score"] == 0.0 and results["max_score"] == pytest.approx(hw1.max_score)
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: {pid: command name}."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
        names[int(entry)] = name
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(condition, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def run_cgroups_of(pid: int) -> list[Path]:
    found = cgroups.hierarchy()
    if found is None:
        return []
    parents = {found.memory_parent, found.pids_parent} - {None}
    return [
        child
        for parent in parents
        if parent is not None
        for child in parent.glob(f"{cgroups.RUN_PREFIX}{pid}-*")
    ]


def test_worker_killed_mid_task_is_retried_and_graded_once(hw1, cluster, submissions, tmp_path):
    """SIGKILL to the worker process while its sandbox runs the probes, in a batch graded as
    ``grade --cluster`` grades one: Dask runs the task again on another worker, the batch
    has each submission exactly once with its right score (results and gradebook), and
    nothing of the dead worker's sandbox is left (processes, run cgroups)."""
    client = cluster.client
    out = tmp_path / "out"
    paths = [submissions["reference"], submissions["blank"]]
    returned = []
    errors = []

    def grade():
        try:
            with Grader(hw1.bundle, local_sandbox()) as grader:
                returned.extend(grade_batch_on_cluster(cluster, grader, paths, out, progress=False))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    batch = threading.Thread(target=grade)
    batch.start()
    try:

        def running_worker():
            for worker, keys in client.processing().items():
                for key in keys:
                    if str(key).startswith("grade-") and str(key).endswith("-reference"):
                        return worker, key
            return None

        found = wait_for(running_worker, 120)
        assert found, "the task never started"
        worker, target = found
        pid = client.run(os.getpid, workers=[worker])[worker]

        def sandboxed():  # the sandbox is running the probes: the task is mid-way
            below = descendants(pid)
            return below if any(name in ("bwrap", "unshare") for name in below.values()) else {}

        below = wait_for(sandboxed, 120, step=0.02)
        assert below, "the worker never started a sandbox"
        os.kill(pid, signal.SIGKILL)
        batch.join(timeout=300)
    finally:
        batch.join(timeout=1)
    assert not batch.is_alive(), "the batch never finished"
    assert not errors, errors
    names = [results["extra_data"]["submission"] for results in returned]
    assert names == ["reference", "blank"]
    with open(out / "gradebook.csv", newline="") as handle:
        rows = {row["submission"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert rows == {"reference": pytest.approx(hw1.max_score), "blank": 0.0}
    stored = json.loads((out / "reference" / "results.json").read_text())
    assert stored["score"] == pytest.approx(hw1.max_score)
    # The scheduler saw the worker die while it ran the task (and so ran it again).
    # (The futures are released by now; the scheduler's story of the key remains.)
    story = client.run_on_scheduler(
        lambda dask_scheduler, key=target: [list(map(str, e)) for e in dask_scheduler.story(key)]
    )
    assert sum(event[2] == "processing" for event in story) >= 2, story
    # The dead worker's sandbox processes end with it (bubblewrap dies with its parent).
    left = wait_for(lambda: [p for p in below if alive(p)] == [], 15)
    assert left, {p: below[p] for p in below if alive(p)}
    # Its run cgroups are removed by the restarted worker (SandboxSweeper).
    assert wait_for(lambda: run_cgroups_of(pid) == [], 60, step=0.5), run_cgroups_of(pid)
    # And the cluster has its two workers again.
    assert wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 60)


def test_cli_grade_on_local_cluster(hw1, submissions, tmp_path, capsys):
    """``grade HW SUB... --cluster local:2``: the outputs of local grading, and a rerun
    resumes (nothing graded again)."""
    from autograder.cli import main

    out = tmp_path / "out"
    argv = ["grade", "hw1", str(submissions["reference"]), str(submissions["blank"])]
    argv += ["--cluster", "local:2", "--out", str(out)]
    start = time.monotonic()
    assert main(argv) == 0
    print(f"\ncli --cluster local:2, 2 submissions: {time.monotonic() - start:.1f} s")
    printed = capsys.readouterr()
    assert "gradebook" in printed.out
    assert "local Dask cluster: 2 workers" in printed.err
    first = {}
    for name, score in (("reference", hw1.max_score), ("blank", 0.0)):
        results = json.loads((out / name / "results.json").read_text())
        assert results["score"] == pytest.approx(score)
        assert results["extra_data"]["submission"] == name
        assert (out / name / "feedback.txt").is_file()
        first[name] = results["extra_data"]["run_id"]
    with open(out / "gradebook.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert (out / "report.html").is_file()
    # Resume: the stored results carry the same fingerprints. --bundle: the same bundle even
    # if the library changed meanwhile (a rebuilt bundle would rightly grade again).
    key = json.loads((out / "blank" / "results.json").read_text())["extra_data"]["bundle_key"]
    bundle = cached_bundle(bundles_dir() / "hw1", key)
    assert bundle is not None and bundle.root is not None
    assert main([*argv, "--bundle", str(bundle.root)]) == 0
    assert "local Dask cluster" not in capsys.readouterr().err  # nothing to grade: none started
    for name in first:
        results = json.loads((out / name / "results.json").read_text())
        assert results["extra_data"]["run_id"] == first[name]


def test_hostile_submissions_on_a_worker(hw1, cluster, tmp_path):
    """Adversarial hw1 submissions (kill every process in sight, a daemon that escapes its
    group, a memory bomb) graded on workers: each scores 0, no worker dies, no daemon is left,
    and the workers then grade the reference to full marks."""
    client = cluster.client
    before = client.run(os.getpid)
    attacks = ["kill_everything", "escaping_daemon", "memory_bomb"]
    futures = {}
    for attack in attacks:
        archive, filename = pack_submission(build_payload(attack, tmp_path, hw1.blank))
        key = task_key("hw1", attack, archive, {"limits": FAST, "t": time.time()})
        futures[attack] = cluster.submit(
            key, "hw1", archive, filename, name=attack, limits=FAST, bundle_key=hw1.bundle.key
        )
    for attack, future in futures.items():
        results = future.result(timeout=300)
        assert results["score"] == 0.0, (attack, results["output"])
        assert results["extra_data"]["submission"] == attack
    assert client.run(os.getpid) == before  # the same worker processes: none was killed
    assert wait_for(lambda: sleeping_daemons() == [], 10), sleeping_daemons()
    reference = make_submission(tmp_path / "reference", hw1, tuple(hw1.accept))
    archive, filename = pack_submission(reference)
    after = [  # one on each worker
        client.submit(
            grade_task,
            "hw1",
            archive,
            filename,
            bundle_key=hw1.bundle.key,
            workers=[worker],
            pure=False,
        )
        for worker in before
    ]
    for future in after:
        assert future.result(timeout=300)["score"] == pytest.approx(hw1.max_score)


def test_launcher_watch_kills_the_launchers_of_a_dead_worker():
    """``LauncherWatch``: a child of the worker that leads its own session (how the engine
    starts every sandbox) is killed, with its process group, once the worker is gone; a child
    that is no session leader, and the launchers of a live worker, are left alone."""
    import subprocess
    import sys

    from autograder.cluster.plugin import LauncherWatch

    fake_worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "a = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "b = subprocess.Popen(['sleep', '301'])\n"
            "print(a.pid, b.pid, flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake_worker.stdout is not None
    launcher, other = map(int, fake_worker.stdout.readline().split())
    try:
        watch = LauncherWatch()
        assert watch.tick(fake_worker.pid) == []
        assert [pid for pid, _ in watch.launchers] == [launcher]
        assert watch.tick(fake_worker.pid) == [] and alive(launcher)  # worker alive: kept
        fake_worker.kill()
        fake_worker.wait()
        assert watch.tick(None) == [launcher]
        assert wait_for(lambda: not alive(launcher), 5)
        assert alive(other)
        assert watch.launchers == {}
    finally:
        for pid in (launcher, other):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def unshare_works() -> bool:
    from autograder.engine.sandbox import UnshareSandbox, _works

    return _works(UnshareSandbox()) is None


@pytest.mark.slow  # about 40 s: the endless loop is in the last units of hw1
def test_dead_workers_sandbox_killed_without_die_with_parent(hw1, tmp_path, monkeypatch):
    """The ``unshare`` backend does not die with its parent, and without cgroups nothing
    sweeps a run's processes: the nanny's ``SandboxReaper`` kills the sandbox of a worker
    SIGKILLed while it ran an endless loop (not retried here: allowed-failures 0)."""
    import dask

    if not unshare_works():
        pytest.skip("the unshare sandbox does not work here")
    monkeypatch.setenv("NEEDLE_CGROUPS", "off")  # inherited by the worker processes
    archive, filename = pack_submission(build_payload("infinite_loop", tmp_path, hw1.blank))
    slow = {"wall_s": 120.0, "cpu_s": 120}
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with GradingCluster(n_workers=1, sandbox="unshare") as grading:
            client = grading.client
            future = grading.submit(
                f"grade-endless-{time.time()}",
                "hw1",
                archive,
                filename,
                limits=slow,
                bundle_key=hw1.bundle.key,
            )
            (worker,) = client.scheduler_info()["workers"]
            pid = client.run(os.getpid)[worker]

            first_seen = {}  # runner pid -> when it was first seen

            def looping():  # a runner that has been running for 3 s: in the endless loop
                # (a runner that is writing answers would die of SIGPIPE with the worker)
                below = descendants(pid)
                now = time.monotonic()
                for child, name in below.items():
                    if name.startswith("python"):
                        first_seen.setdefault(child, now)
                stuck = [c for c in below if c in first_seen and now - first_seen[c] > 3.0]
                return below if stuck and "unshare" in below.values() else {}

            below = wait_for(looping, 150, step=0.1)
            assert below, "the worker never ran the endless loop in a sandbox"
            os.kill(pid, signal.SIGKILL)
            gone = wait_for(lambda: [p for p in below if alive(p)] == [], 10)
            assert gone, {p: below[p] for p in below if alive(p)}
            assert isinstance(future.exception(timeout=60), distributed.KilledWorker)
