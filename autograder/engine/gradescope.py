"""Gradescope: ``autograder export HW --gradescope`` and the program the export runs there.

The export is a zip with ``setup.sh`` and ``run_autograder`` at its root (Gradescope's
contract, docs/grading.md#gradescope-directory-contract) and, next to them:

- ``autograder/engine/``: the grading engine package, whole (``autograder.authoring`` builds
  the export and stays home);
- ``bundle/``: the homework's grading bundle (``autograder.engine.bundle``): points,
  accepted files, probes, the blank release and the reference answers; the reference code
  itself is not shipped.

Local grading and this program load the same bundle with the same engine, so they give the
same results for the same submission.

Gradescope runs student code in the same container as the grader, as root. The export keeps
the trust boundary anyway:

- ``setup.sh`` installs numpy and pybind11 into a virtual environment ``/autograder/venv``
  (not the system Python: PEP 668), creates a user ``student`` and makes
  ``/autograder/source`` (probes, answers, grader) readable by root only;
- ``run_autograder`` (root) grades with the strongest sandbox that works (bubblewrap,
  unshare, or a separate process as ``student`` with resource limits); every probe group is a
  separate process of that user, which can read the workspace and the running probe only;
- while student code runs, ``/autograder/results`` is root-only (0700) and the provisional
  results.json (0600) holds no nonce; the per-run nonce stays in the grader's memory;
- with the ``student`` fallback, the network is denied to that user by an owner-match
  firewall rule where the container allows (``NetworkGuard``; ``extra_data.gradescope``
  says whether it was), and after grading every process of ``student`` is killed until
  /proc shows none (``kill_everything_of``: ``kill(-1)`` as that user, then root passes);
- only then is ``/autograder/results/results.json`` written from the grader's memory, with
  the nonce in ``extra_data``: a file forged by a process that outlived its run is
  overwritten, and a stale or forged file is recognisable.

The ``student`` fallback does not isolate the rest of the (world-readable) file system nor
``/tmp``; see autograder/README.md#gradescope.
A submission uploaded as one archive or notebook is graded from that file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from autograder.engine.bundle import GradingBundle

BUNDLE_FOLDER = "bundle"  # the grading bundle, inside the export


# --- what runs on Gradescope ------------------------------------------------------------------


def load_exported(source: Path) -> GradingBundle:
    """The grading bundle of an unpacked export at ``source``."""
    return GradingBundle.load(source / BUNDLE_FOLDER)


def _write_results(path: Path, results: dict, mode: int = 0o644) -> None:
    partial = path.with_name(f".results-{secrets.token_hex(4)}.json")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(results, indent=1, allow_nan=False))
    os.chmod(partial, mode)
    partial.replace(path)


def _private_folder(folder: Path) -> None:
    """``folder`` exists, is a real folder, owned by root (when we are root), mode 0700:
    nothing of the sandbox user can list, read or write in it while the grader runs."""
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(folder, 0, 0)
    os.chmod(folder, 0o700)


def choose_sandbox():
    """bubblewrap or unshare when they work; else a separate process as the dedicated user."""
    from autograder.engine.sandbox import UserSandbox, local_sandbox, sandbox_host_uid

    if os.environ.get("NEEDLE_SANDBOX") == "user":  # force the fallback (tests, debugging)
        return UserSandbox(sandbox_host_uid())
    sandbox = local_sandbox()
    if sandbox.isolated:
        return sandbox
    if os.geteuid() == 0 and "NEEDLE_SANDBOX_UID" in os.environ:
        return UserSandbox(sandbox_host_uid())
    return sandbox  # NOT ISOLATED: every report says so


# --- the sandbox user: its processes, its network ----------------------------------------------


def processes_of(uid: int, zombies: bool = False) -> list[int]:
    """The ids of the processes whose real, effective or saved uid is ``uid``: the live ones
    (zombies too when ``zombies``: dead, but not yet reaped by their parent)."""
    from autograder.engine.sandbox import process_table

    return [
        pid
        for pid, uids, state in process_table()
        if str(uid) in uids[:3] and (zombies or state != "Z")
    ]


def kill_everything_of(uid: int, timeout_s: float = 20.0, quiet_rounds: int = 3) -> dict:
    """Kill every process of ``uid`` and make sure none is left. Each round sends
    ``kill(-1, SIGKILL)`` *as that user* (the kernel signals all of the user's processes in
    one pass, during which none can fork, and a process with SIGKILL pending forks no more;
    a /proc scan alone can miss a process that forks and exits faster than the scan), then
    SIGKILLs from root whatever /proc shows. Done after ``quiet_rounds`` rounds in a row in
    which /proc showed none alive, or after ``timeout_s``. Returns what happened, for
    ``extra_data``."""
    import signal
    import time

    from autograder.engine.sandbox import kill_processes_of

    if uid in (0, os.getuid()):
        raise ValueError("refusing to kill the grader's own user")
    as_user = os.geteuid() == 0
    start = time.monotonic()
    rounds = quiet = 0
    left: list[int] = []
    while quiet < quiet_rounds and time.monotonic() - start <= timeout_s:
        rounds += 1
        if as_user:
            _kill_all_as(uid)
        kill_processes_of(uid)
        left = processes_of(uid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        quiet = 0 if left else quiet + 1
        if quiet < quiet_rounds:
            time.sleep(0.01 if rounds < 20 else 0.2)
    return {
        "rounds": rounds,
        "left": len(processes_of(uid)),
        "as_user": as_user,
        "seconds": round(time.monotonic() - start, 2),
    }


def _kill_all_as(uid: int) -> None:
    """``kill(-1, SIGKILL)`` from a forked child that became ``uid`` (no exec: nothing to
    find on disk, and no process limit of that user to hit)."""
    import signal

    try:
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # the child: system calls only, then out
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # every process of uid but this one
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def become_subreaper() -> bool:
    """Make this process the child subreaper (Linux): processes of its sandboxes that
    daemonise are re-parented to it, not to PID 1 (which, in a container, may never reap
    them), so ``reap_zombies_of`` can clear them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_zombies_of(uid: int, timeout_s: float = 3.0) -> int:
    """Reap the dead processes of ``uid`` that are (or, as their parents die, become) this
    process's children, for at most ``timeout_s``; returns how many."""
    import time

    reaped = 0
    deadline = time.monotonic() + timeout_s
    while True:
        ours = 0
        for pid in processes_of(uid, zombies=True):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
                ours += 1
            except ChildProcessError:
                pass
        if not ours or time.monotonic() > deadline:
            return reaped
        time.sleep(0.05)


NFT_TABLE = "needle_grader"


class NetworkGuard:
    """Denies the network to the sandbox user with an owner-match firewall rule (iptables and
    ip6tables, else nftables) when the container has the tools and CAP_NET_ADMIN, and says
    plainly when it could not (``status``). ``remove`` takes the rules out again."""

    def __init__(self, uid: int):
        self.uid = uid
        self.undo: list[list[str]] = []
        self.status = "not denied"

    def _run(self, argv: list[str]) -> tuple[bool, str]:
        import subprocess

        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError) as error:
            return False, f"{type(error).__name__}: {error}"
        return done.returncode == 0, (done.stderr or done.stdout).strip()[-200:]

    def deny(self) -> str:
        if os.geteuid() != 0:
            self.status = "not denied: the grader is not root"
            return self.status
        problems, families = [], []
        for tool, family in (("iptables", "IPv4"), ("ip6tables", "IPv6")):
            exe = shutil.which(tool)
            if exe is None:
                problems.append(f"no {tool}")
                continue
            rule = ["OUTPUT", "-m", "owner", "--uid-owner", str(self.uid), "-j", "REJECT"]
            ok, why = self._run([exe, "-w", "-I", *rule])
            if ok:
                self.undo.append([exe, "-w", "-D", *rule])
                families.append(family)
            else:
                problems.append(f"{tool}: {why}")
        if not families and (nft := shutil.which("nft")):
            chain = "{ type filter hook output priority 0 ; policy accept ; }"
            steps = [
                ["add", "table", "inet", NFT_TABLE],
                ["add", "chain", "inet", NFT_TABLE, "output", chain],
                ["add", "rule", "inet", NFT_TABLE, "output", "meta", "skuid", str(self.uid)]
                + ["reject"],
            ]
            ok, why = True, ""
            for step in steps:
                ok, why = self._run([nft, *step])
                if step is steps[0] and ok:
                    self.undo.append([nft, "delete", "table", "inet", NFT_TABLE])
                if not ok:
                    break
            if ok:
                families = ["IPv4", "IPv6"]
            else:
                problems.append(f"nft: {why}")
                self.remove()
        if families:
            self.status = f"denied ({' and '.join(families)}, owner-match firewall rule)"
            if len(families) == 1:
                self.status += f"; not {'IPv6' if families == ['IPv4'] else 'IPv4'}: "
                self.status += "; ".join(problems)
        else:
            self.status = "not denied: " + ("; ".join(problems) or "no firewall tool")
        return self.status

    def remove(self) -> None:
        for argv in reversed(self.undo):
            self._run(argv)
        self.undo = []


# --- the program ---------------------------------------------------------------------------


def main() -> int:
    """Grade ``/autograder/submission`` into ``/autograder/results/results.json``."""
    root = Path(os.environ.get("GRADESCOPE_ROOT", "/autograder"))
    source = Path(os.environ.get("NEEDLE_EXPORT_SOURCE", root / "source"))
    results_dir = root / "results"
    results_path = results_dir / "results.json"
    # The nonce lives in this process's memory only, until the final write: no file, no
    # environment variable, no argument a process of the sandbox user could read.
    nonce = secrets.token_hex(16)
    # While student code runs, the results folder is root-only (0700) and the provisional
    # file 0600: nothing of the sandbox user can read, list, replace or forge it.
    _private_folder(results_dir)
    # A valid results.json exists from the first second: a grader crash still scores 0.
    provisional_extra: dict[str, Any] = {"finished": False}
    provisional: dict[str, Any] = {
        "score": 0.0,
        "output": "Grading did not finish; please resubmit or contact your instructor.",
        "tests": [],
        "extra_data": provisional_extra,
    }
    _write_results(results_path, provisional, mode=0o600)
    uid = None
    if os.geteuid() == 0 and "NEEDLE_SANDBOX_UID" in os.environ:
        uid = int(os.environ["NEEDLE_SANDBOX_UID"])
    network = NetworkGuard(uid) if uid is not None else None
    subreaper = uid is not None and become_subreaper()
    hardening: dict[str, Any] = {}
    results: dict[str, Any] | None = None
    error_text = ""
    try:
        from autograder.engine.grading import Grader

        bundle = load_exported(source)
        sandbox = choose_sandbox()
        if sandbox.kind == "user" and network is not None:
            hardening["network"] = network.deny()
        elif sandbox.kind in ("bwrap", "unshare"):
            hardening["network"] = "denied (the sandbox has its own, empty network namespace)"
        else:
            hardening["network"] = f"not denied ({sandbox.kind} sandbox)"
        variant = os.environ.get("NEEDLE_VARIANT")  # pin it (tests); unset on Gradescope
        with Grader(bundle, sandbox, variant=None if variant is None else int(variant)) as grader:
            secret = source / BUNDLE_FOLDER / "reference" / "answers.json"
            if sandbox.kind == "user" and _readable_by_sandbox(grader, secret):
                raise RuntimeError(
                    f"{secret} is readable by the sandbox user: run setup.sh (chmod go-rwx)"
                )
            results = grader.grade(submission_path(root / "submission"), name="submission")
    except Exception as error:  # the grader must always leave a results.json behind
        import traceback

        provisional["output"] = f"The autograder failed: {type(error).__name__}: {error}"
        error_text = traceback.format_exc()[-4000:]
        provisional_extra["grader_error"] = error_text
    finally:
        if uid is not None:  # every process of the sandbox user, before anything is written
            hardening["killed"] = kill_everything_of(uid)
            hardening["killed"]["reaped"] = reap_zombies_of(uid) if subreaper else 0
        if network is not None:
            network.remove()
    if results is None:
        results = provisional
    results["extra_data"]["nonce"] = nonce
    results["extra_data"]["finished"] = not error_text
    results["extra_data"]["gradescope"] = hardening
    _write_results(results_path, results)
    os.chmod(results_dir, 0o755)  # no process of the sandbox user is left
    if error_text:
        print(error_text, file=sys.stderr)
        return 1
    written = json.loads(results_path.read_text())
    if written.get("extra_data", {}).get("nonce") != nonce:  # cannot happen; be loud if it does
        print("results.json was replaced after it was written", file=sys.stderr)
        _write_results(results_path, results)
    print(f"score {results['score']:g} / {results['max_score']:g}")
    return 0


# What a student may upload that Gradescope leaves as one file in /autograder/submission.
SINGLE_FILE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".ipynb")


def submission_path(folder: Path) -> Path:
    """What to grade in Gradescope's submission folder: the folder itself, or, when the
    student uploaded one archive or notebook (Gradescope stores it as it is), that file."""
    try:
        entries = [e for e in folder.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    except OSError:
        return folder
    if len(entries) == 1 and not entries[0].is_symlink() and entries[0].is_file():
        if entries[0].name.lower().endswith(SINGLE_FILE_SUFFIXES):
            return entries[0]
    return folder


def _readable_by_sandbox(grader, path: Path) -> bool:
    """Whether a process in the grader's sandbox can read ``path`` (must be False)."""
    from autograder.engine.sandbox import SandboxLimits

    limits = SandboxLimits(wall_s=20, cpu_s=5)
    result = grader.sandbox.run(["/bin/cat", str(path)], [], limits, cwd="/")
    return result.returncode == 0


def unpack_for_test(zip_path: Path, root: Path) -> Path:
    """Unpack an export the way Gradescope does (``root/source``); for tests and debugging."""
    source = root / "source"
    if source.exists():
        shutil.rmtree(source)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(source)
    for name in ("setup.sh", "run_autograder"):
        os.chmod(source / name, 0o755)
    return source
