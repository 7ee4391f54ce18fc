"""A batch you can control: a canary run stops a batch whose sandbox is broken before anyone
gets a zero; SIGINT/SIGTERM stop a batch within seconds and keep what finished; the gradebook
is built from every result in the folder; a folder of archives is a folder of submissions."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from autograder.engine import sandbox as sandbox_module
from autograder.engine.grading import Grader, SandboxBroken
from autograder.engine.paths import REPO_ROOT
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1

REFERENCE = ("needle/ops/ops_mathematic.py", "needle/autograd.py", "apps/simple_ml.py")
BROKEN_MESSAGE = "bwrap: Can't find source path /opt/x: Permission denied"
UNUSED_UID = 59999  # the `user` kind kills every process of its uid: one nobody runs as


@pytest.fixture
def public_dir():
    """A scratch folder every user can enter (pytest's tmp_path is 0700: a sandbox running as
    nobody could not run a program from it)."""
    path = Path(tempfile.mkdtemp(prefix="needle-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv") as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


def _grade_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "autograder", "grade", "hw1", *arguments]


# --- the canary ------------------------------------------------------------------------------


def _broken(cls, **attributes):
    """An instance of the sandbox class ``cls`` whose launcher fails the way a broken
    sandbox does: it prints the engine's error and exits non-zero."""

    class Broken(cls):  # type: ignore[misc, valid-type]
        def __init__(self):
            for key, value in attributes.items():
                setattr(self, key, value)

        def command(self, argv, mounts, limits, cwd):
            return ["/bin/sh", "-c", f'echo "{BROKEN_MESSAGE}" >&2; exit 1']

        def preexec(self, limits):
            return None

        def describe(self):
            return f"broken {cls.kind} (test)"

    return Broken()


def _broken_sandboxes():
    from autograder.engine.container import ContainerSandbox

    return {
        "bwrap": _broken(sandbox_module.BwrapSandbox, bwrap="/usr/bin/bwrap"),
        "unshare": _broken(sandbox_module.UnshareSandbox),
        "plain": _broken(sandbox_module.PlainSandbox, reason="test"),
        "user": _broken(sandbox_module.UserSandbox, uid=UNUSED_UID, reason="test"),
        "container": _broken(ContainerSandbox, engine="/bin/false", image="x", image_id="x"),
    }


@pytest.mark.parametrize("kind", ["bwrap", "unshare", "plain", "user", "container"])
def test_a_broken_sandbox_stops_the_batch_before_anyone_is_graded(hw1, kind, tmp_path):
    sandbox = _broken_sandboxes()[kind]
    assert sandbox.kind == kind
    submission = make_submission(tmp_path / "subs" / "alice", hw1, REFERENCE)
    out = tmp_path / "out"
    with Grader(hw1.bundle, sandbox) as grader:
        with pytest.raises(SandboxBroken) as raised:
            grader.grade_batch([submission], out, progress=False)
    assert BROKEN_MESSAGE in str(raised.value)
    assert not (out / "gradebook.csv").exists() and not list(out.glob("*/results.json"))


def _fake_program(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    os.chmod(path, 0o755)


FAKE_PODMAN = """\
for word in "$@"; do
  case "$word" in
    info) echo '{}'; exit 0;;
    inspect) echo sha256:0123456789abcdef; exit 0;;
    run) echo "Error: crun: creating container: Permission denied (fake engine)" >&2; exit 126;;
  esac
done
exit 0
"""


def _cli_cases():
    cases = [
        ("bwrap", "bwrap", f'echo "{BROKEN_MESSAGE}" >&2; exit 1\n', BROKEN_MESSAGE),
        ("podman", "podman", FAKE_PODMAN, "Permission denied (fake engine)"),
    ]
    if os.geteuid() == 0:  # a root grader starts every local kind with setpriv
        failing = 'echo "setpriv: setresuid failed: Operation not permitted" >&2; exit 1\n'
        for kind in ("unshare", "plain"):
            cases.append((kind, "setpriv", failing, "setresuid failed"))
    return cases


@pytest.mark.parametrize(("kind", "program", "script", "message"), _cli_cases())
def test_grade_command_exits_non_zero_with_the_sandbox_error(
    hw1, kind, program, script, message, public_dir, tmp_path
):
    fake_bin = public_dir / "bin"
    fake_bin.mkdir()
    os.chmod(fake_bin, 0o755)
    _fake_program(fake_bin, program, script)
    submission = make_submission(tmp_path / "subs" / "alice", hw1, REFERENCE)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    finished = subprocess.run(
        _grade_command(str(submission), "--sandbox", kind, "--out", str(out)),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=600,
    )
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert message in finished.stderr, finished.stderr[-3000:]
    if kind != "podman":  # the container backend may refuse a broken engine even sooner
        assert "the sandbox does not work" in finished.stderr
    assert not (out / "gradebook.csv").exists() and not list(out.glob("*/results.json"))


# --- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_a_signal_stops_the_batch_and_keeps_what_finished(hw1, signum, public_dir, tmp_path):
    subs = [
        make_submission(tmp_path / "subs" / f"s{i}", hw1, REFERENCE if i % 2 else ())
        for i in range(5)
    ]
    out = tmp_path / "out"
    temp = public_dir / "tmp"  # the grader's scratch goes here: nothing may be left behind
    temp.mkdir()
    os.chmod(temp, 0o755)
    env = {**os.environ, "TMPDIR": str(temp)}
    process = subprocess.Popen(
        _grade_command(*map(str, subs), "--jobs", "1", "--out", str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 600
        while not list(out.glob("*/results.json")):
            assert process.poll() is None, process.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no submission was graded in 10 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # into the next submission's sandboxes
        assert process.poll() is None, "the batch finished before it could be stopped"
        process.send_signal(signum)
        start = time.monotonic()
        output = process.communicate(timeout=60)[0].decode(errors="replace")
        elapsed = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, output[-3000:]
    assert elapsed < 10, f"the batch took {elapsed:.1f} s to stop"
    finished = sorted(p.parent.name for p in out.glob("*/results.json"))
    assert 1 <= len(finished) < len(subs)
    assert sorted(_rows(out)) == finished and (out / "report.html").is_file()
    assert not list(temp.glob("needle-grader-*")), list(temp.iterdir())
    # nothing of the stopped batch is still running
    survivors = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
    assert survivors.stdout.strip() == "", survivors.stdout

    # A rerun resumes: the finished ones are not graded again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    rerun = subprocess.run(
        _grade_command(*map(str, subs), "--jobs", "2", "--out", str(out)),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=900,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert sorted(_rows(out)) == [f"s{i}" for i in range(5)]


# --- the gradebook is the folder's --------------------------------------------------------------


def test_regrading_one_student_keeps_every_other_row(hw1, hw1_grader, tmp_path):
    alice = make_submission(tmp_path / "subs" / "alice", hw1, REFERENCE)
    bob = make_submission(tmp_path / "subs" / "bob", hw1, ())
    out = tmp_path / "out"
    hw1_grader.grade_batch([alice, bob], out, progress=False)
    assert set(_rows(out)) == {"alice", "bob"}
    results = hw1_grader.grade_batch([bob], out, resume=False, progress=False)
    assert [r["extra_data"]["submission"] for r in results] == ["bob"]
    rows = _rows(out)
    assert set(rows) == {"alice", "bob"}
    assert float(rows["alice"]["score"]) == hw1.max_score and float(rows["bob"]["score"]) == 0
    assert "alice" in (out / "report.html").read_text()


def test_a_folder_of_archives_grades_each_archive(hw1, hw1_grader, tmp_path):
    from autograder.engine.batch import expand_submissions

    folder = tmp_path / "class"
    folder.mkdir()
    for name, files in (("alice", REFERENCE), ("bob", ())):
        source = make_submission(tmp_path / "loose" / name, hw1, files)
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as archive:
            for path in hw1.accept:
                archive.write(source / path, f"hw1/{path}")
    (folder / "notes.txt").write_text("not a submission\n")
    # A folder of loose accepted files stays one submission, even with an archive inside.
    loose = tmp_path / "loose" / "alice"
    shutil.copyfile(folder / "bob.zip", loose / "old-attempt.zip")
    assert expand_submissions([loose], hw1.accept) == [loose]

    out = tmp_path / "out"
    results = hw1_grader.grade_batch([folder], out, progress=False)
    scores = {r["extra_data"]["submission"]: r["score"] for r in results}
    assert scores == {"alice": hw1.max_score, "bob": 0.0}
    assert set(_rows(out)) == {"alice", "bob"}


def test_a_sandbox_that_breaks_midway_stops_the_batch_without_zeros(hw1, tmp_path):
    from autograder.engine.sandbox import local_sandbox

    working = local_sandbox()

    class BreaksAfterCanary(type(working)):  # type: ignore[misc]
        def __init__(self):
            self.__dict__.update(working.__dict__)
            self.runs = 0

        def command(self, argv, mounts, limits, cwd):
            self.runs += 1
            if self.runs > 1:
                return ["/bin/sh", "-c", 'echo "engine died (test)" >&2; exit 125']
            return super().command(argv, mounts, limits, cwd)

    subs = [make_submission(tmp_path / "subs" / n, hw1, REFERENCE) for n in ("alice", "bob")]
    out = tmp_path / "out"
    with Grader(hw1.bundle, BreaksAfterCanary()) as grader:
        with pytest.raises(SandboxBroken) as raised:
            grader.grade_batch(subs, out, progress=False)
    assert "stopped working" in str(raised.value) and "engine died (test)" in str(raised.value)
    assert not list(out.glob("*/results.json")) and not (out / "gradebook.csv").exists()
