"""Grading from a checkout that other users cannot enter (a clone in ``mktemp -d``: 0700; an
Ubuntu home: 0750), as root (the sandbox runs as nobody, who must still reach the runtime
and the scratch) and as an ordinary user (rootless user namespaces).

The checkout is the engine alone (``autograder/`` without authoring) with hw1's grading
bundle next to it, graded with ``--bundle`` exactly as a course checkout would be; its build
folder (``REPO_ROOT/build``) is inside the private folder. The grader runs on the staged
runtime's interpreter (the engine needs the standard library and numpy only): the
development venv's interpreter lives under /root, which an ordinary user cannot enter."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from autograder.engine.paths import PACKAGE_DIR
from autograder.engine.runtime import ensure_runtime, shared_runtime_dir
from autograder.tests.conftest import make_submission

pytestmark = [
    pytest.mark.hw1,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: chmod 0700 checkouts as root and useradd"
    ),
]

REFERENCE = ("needle/ops/ops_mathematic.py", "needle/autograd.py", "apps/simple_ml.py")


def _private_checkout(hw1, owner: int) -> Path:
    """``<0700 folder>/c``: the engine, hw1's bundle and a reference submission, owned by
    ``owner``."""
    private = Path(tempfile.mkdtemp(prefix="needle-private-"))
    assert os.stat(private).st_mode & 0o777 == 0o700
    checkout = private / "c"
    package = checkout / "autograder"
    package.mkdir(parents=True)
    for name in ("__init__.py", "__main__.py", "cli.py"):
        shutil.copyfile(PACKAGE_DIR / name, package / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PACKAGE_DIR / "engine", package / "engine", ignore=ignore)
    assert hw1.bundle.root is not None
    shutil.copytree(hw1.bundle.root, checkout / "bundle", ignore=ignore)
    make_submission(checkout / "subs" / "alice", hw1, REFERENCE)
    for directory, _, files in os.walk(private):
        os.chown(directory, owner, owner)
        for name in files:
            os.chown(os.path.join(directory, name), owner, owner)
    return checkout


def _grade(checkout: Path, user: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    runtime = ensure_runtime()
    command = [*user, runtime.python(), "-B", "-m", "autograder", "grade", "hw1"]
    command += ["subs/alice", "--bundle", "bundle", "--out", "out", "--sandbox", "bwrap"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{checkout}:{runtime.site}",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)


def _assert_full_marks(checkout: Path, finished: subprocess.CompletedProcess, hw1) -> dict:
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-4000:]
    results = json.loads((checkout / "out" / "alice" / "results.json").read_text())
    assert results["score"] == hw1.max_score, results["output"]
    assert results["extra_data"]["sandbox"]["isolated"]
    return results


def test_root_grades_from_a_checkout_under_a_0700_folder(hw1):
    checkout = _private_checkout(hw1, 0)
    try:
        finished = _grade(checkout, [], {"HOME": "/root"})
        results = _assert_full_marks(checkout, finished, hw1)
        assert "host uid" in results["extra_data"]["sandbox"]["description"]
        # The runtime the sandbox mounted is not under the private folder, but in the
        # per-user folder that everyone can traverse and only root can write.
        shared = shared_runtime_dir()
        info = os.lstat(shared)
        assert info.st_uid == 0 and info.st_mode & 0o777 == 0o755
        assert not any((checkout / "build" / "autograder" / "runtime").glob("*/runtime.json"))
    finally:
        shutil.rmtree(checkout.parent, ignore_errors=True)


@pytest.fixture
def throwaway_user():
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("useradd or setpriv (util-linux) not installed")
    name = f"ngt{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_an_ordinary_user_grades_from_a_checkout_under_a_0700_folder(hw1, throwaway_user):
    uid, gid = throwaway_user.pw_uid, throwaway_user.pw_gid
    checkout = _private_checkout(hw1, uid)
    os.chown(checkout.parent, uid, gid)
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]
    try:
        finished = _grade(checkout, as_user, {"HOME": str(checkout.parent)})
        results = _assert_full_marks(checkout, finished, hw1)
        assert "the grader's user" in results["extra_data"]["sandbox"]["description"]
        # An ordinary user's sandbox is that user: the runtime stays in the private checkout.
        staged = list((checkout / "build" / "autograder" / "runtime").glob("*/runtime.json"))
        assert staged and all(p.stat().st_uid == uid for p in staged)
    finally:
        shutil.rmtree(checkout.parent, ignore_errors=True)


@pytest.mark.parametrize("attack", ["someone_elses", "writable_by_others", "symlink"])
def test_a_pre_created_runtime_folder_is_never_trusted(attack, tmp_path):
    """A local user may create ``/var/tmp/needle-runtime-0`` before root does (to plant an
    interpreter the sandbox would run, or to point it elsewhere): it is not used."""
    parent = Path(tempfile.mkdtemp(prefix="needle-vartmp-"))
    try:
        os.chmod(parent, 0o1777)  # like /var/tmp: world-writable and sticky
        planted = parent / f"needle-runtime-{os.geteuid()}"
        if attack == "symlink":
            target = tmp_path / "elsewhere"
            target.mkdir()
            planted.symlink_to(target)
        else:
            planted.mkdir()
            if attack == "someone_elses":
                os.chown(planted, 65534, 65534)
                os.chmod(planted, 0o755)
            else:
                os.chmod(planted, 0o777)
        chosen = shared_runtime_dir([parent])
        assert chosen != planted and chosen.parent == parent
        info = os.lstat(chosen)
        assert info.st_uid == os.geteuid() and info.st_mode & 0o7777 == 0o755
        # Without an attacker, the folder is made once and reused.
        shutil.rmtree(chosen)
        if planted.is_symlink():
            planted.unlink()
        else:
            planted.rmdir()
        assert shared_runtime_dir([parent]) == planted == shared_runtime_dir([parent])
    finally:
        shutil.rmtree(parent, ignore_errors=True)
