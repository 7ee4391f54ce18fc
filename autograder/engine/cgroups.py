"""Memory cgroups for the local sandboxes: a bound on ALL the memory a run holds.

RLIMIT_AS bounds the address space of each process, but memory a process holds without
mapping it is invisible to it: a ``memfd_create`` file filled with ``write``, files in POSIX
shared memory (``/dev/shm``) or on any tmpfs. Enough of it and the kernel's OOM killer picks
the largest process it can see — the grader — and nobody in the batch gets a result.

So every run of the bubblewrap / unshare / plain / user sandboxes is put in a cgroup of its
own whenever the grader can make one:

- **cgroup v2** (the unified hierarchy, where the memory controller is enabled): the run's
  cgroup is a child of the grader's own cgroup (when that cgroup holds only the grader, the
  grader first moves into a leaf ``needle-grader`` beside it: cgroup v2 allows no processes
  in a cgroup that hands controllers to its children), else — as root — of the hierarchy's
  root. ``memory.max`` = the run's memory limit + its ``/tmp`` + a little headroom,
  ``memory.swap.max`` = 0, ``memory.oom.group`` = 1, ``pids.max`` = its process limit + the
  launchers. After the run ``memory.events`` says whether the OOM killer struck,
  ``cgroup.kill`` ends what is left and the cgroup is removed.
- **cgroup v1** (hybrid hosts whose memory controller lives in the legacy hierarchy): the same
  with ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``, ``memory.oom_control``
  and the ``pids`` hierarchy; what is left is killed process by process.

The run's process joins its cgroup in the launcher's ``preexec`` (before it executes
anything); a run whose cgroup was made but could not be joined does not start (fail
closed). Where no cgroup can be had (no permission, no memory controller), sandbox processes
get ``oom_score_adj`` 1000, a root grader protects itself with -500, and
``enforcement()`` says ``"rlimit-only"`` so every results.json and report can say that the
memory limit is not fully enforced.

``NEEDLE_CGROUPS=off`` in the environment turns cgroups off (tests of the fallback).
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autograder.engine.sandbox import RunResult

MiB = 1024 * 1024
HEADROOM_BYTES = 64 * MiB  # the launchers (setpriv, bwrap, sh), a 1 MiB /dev/shm, page tables
PIDS_HEADROOM = 8  # setpriv/bwrap/unshare/sh processes around the command
SANDBOX_OOM_SCORE_ADJ = 1000  # the OOM killer takes sandbox processes first
GRADER_OOM_SCORE_ADJ = -500  # and spares a root grader (an ordinary user cannot lower it)
LEAF = "needle-grader"  # v2: where the grader moves when its own cgroup must give up processes
RUN_PREFIX = "needle-run-"
MEMORY_MESSAGE = "memory limit (cgroup) exceeded"

_counter = itertools.count(1)
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Where run cgroups are made: ``memory`` (and ``pids``, if any) parent folders."""

    version: int  # 1 or 2
    memory_parent: Path
    pids_parent: Path | None  # v2: the same folder as memory_parent


@dataclasses.dataclass
class Outcome:
    oom_kills: int = 0
    peak_bytes: int | None = None


class RunCgroup:
    """The cgroup(s) of one sandboxed run."""

    def __init__(self, hierarchy: Hierarchy, limit_bytes: int, pids_max: int):
        self.hierarchy = hierarchy
        self.limit_bytes = limit_bytes
        name = f"{RUN_PREFIX}{os.getpid()}-{next(_counter)}"
        self.memory = hierarchy.memory_parent / name
        self.pids = None
        if hierarchy.version == 1 and hierarchy.pids_parent is not None:
            self.pids = hierarchy.pids_parent / name
        self.folders = [p for p in (self.memory, self.pids) if p is not None]
        try:
            for folder in self.folders:
                folder.mkdir()
            if hierarchy.version == 2:
                _write(self.memory / "memory.max", str(limit_bytes))
                if (self.memory / "memory.swap.max").exists():
                    _write(self.memory / "memory.swap.max", "0")
                if (self.memory / "memory.oom.group").exists():
                    _write(self.memory / "memory.oom.group", "1")
                if (self.memory / "pids.max").exists():
                    _write(self.memory / "pids.max", str(pids_max))
                written = (self.memory / "memory.max").read_text().strip()
            else:
                _write(self.memory / "memory.limit_in_bytes", str(limit_bytes))
                if (self.memory / "memory.memsw.limit_in_bytes").exists():
                    _write(self.memory / "memory.memsw.limit_in_bytes", str(limit_bytes))
                if self.pids is not None:
                    _write(self.pids / "pids.max", str(pids_max))
                written = (self.memory / "memory.limit_in_bytes").read_text().strip()
            # v1 rounds to pages; a limit that did not take is no limit
            if not written.isdigit() or int(written) > limit_bytes:
                raise OSError(errno.EINVAL, f"memory limit reads back as {written!r}")
        except OSError:
            self.remove()
            raise
        # Paths the preexec writes to: plain strings, nothing to compute after fork().
        self._procs = [str(folder / "cgroup.procs") for folder in self.folders]

    def join(self) -> None:
        """Move the calling process into the run's cgroup(s). Runs in the child between
        fork and exec: plain system calls only. Raises if the move fails."""
        pid = str(os.getpid()).encode()
        for path in self._procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def outcome(self) -> Outcome:
        if self.hierarchy.version == 2:
            events = _keyed(self.memory / "memory.events")
            peak = _number(self.memory / "memory.peak")
        else:
            events = _keyed(self.memory / "memory.oom_control")
            peak = _number(self.memory / "memory.max_usage_in_bytes")
        return Outcome(oom_kills=events.get("oom_kill", 0), peak_bytes=peak)

    def kill(self) -> None:
        """SIGKILL everything left in the run's cgroup(s) (a daemon that left the process
        group, a process that changed its session)."""
        kill_file = self.memory / "cgroup.kill"
        if self.hierarchy.version == 2 and kill_file.exists():
            try:
                _write(kill_file, "1")
            except OSError:
                pass
        for folder in self.folders:
            _kill_members(folder)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup(s); retries briefly while the killed
        processes exit."""
        self.kill()
        for folder in self.folders:
            _remove(folder)


def _write(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                values[parts[0]] = int(parts[1])
    except OSError:
        pass
    return values


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _members(folder: Path) -> list[int]:
    try:
        return [int(x) for x in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_members(folder: Path) -> None:
    for _ in range(50):
        members = _members(folder)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)


def _remove(folder: Path) -> None:
    for _ in range(100):  # up to ~2 s: killed processes leave the cgroup as they exit
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                return
            _kill_members(folder)
            time.sleep(0.02)


# --- finding a hierarchy ---------------------------------------------------------------------


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of every cgroup mount."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mount_point = fields[4].replace("\\040", " ")
        found.append((mount_point, tail[0], set(tail[2].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """The grader's cgroup per hierarchy: "" for v2, controller names for v1."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = path
    except (OSError, ValueError):
        pass
    return own


def _inside(mount_point: str, cgroup_path: str) -> Path:
    return Path(mount_point) / cgroup_path.lstrip("/")


def _enable(folder: Path, controllers: list[str]) -> bool:
    """Enable ``controllers`` for the children of ``folder`` (v2)."""
    try:
        enabled = set((folder / "cgroup.subtree_control").read_text().split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            _write(folder / "cgroup.subtree_control", " ".join("+" + c for c in missing))
        return True
    except OSError:
        return False


def _v2_parent(mount_point: str, own: str) -> Path | None:
    root = Path(mount_point)
    try:
        if "memory" not in (root / "cgroup.controllers").read_text().split():
            return None
    except OSError:
        return None
    candidates = []
    if own.startswith("/") and not own.startswith("/.."):  # outside our cgroup namespace
        candidates.append(_inside(mount_point, own))
    if os.geteuid() == 0 and root not in candidates:
        candidates.append(root)
    for parent in candidates:
        if not os.access(parent, os.W_OK):
            continue
        try:
            available = (parent / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "memory" not in available:
            continue
        wanted = ["memory"] + (["pids"] if "pids" in available else [])
        if _enable(parent, wanted):
            return parent
        # "No internal processes": move the grader into a leaf when it is alone here.
        if parent != root and _members(parent) == [os.getpid()]:
            leaf = parent / LEAF
            try:
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", str(os.getpid()))
            except OSError:
                continue
            if _enable(parent, wanted):
                return parent
    return None


def _v1_parent(mount_point: str, own: str | None) -> Path | None:
    candidates = []
    if own is not None and own.startswith("/") and not own.startswith("/.."):
        candidates.append(_inside(mount_point, own))
    if os.geteuid() == 0:
        candidates.append(Path(mount_point))
    return next((c for c in candidates if c.is_dir() and os.access(c, os.W_OK)), None)


def _find_hierarchy() -> Hierarchy | None:
    mounts, own = _mounts(), _own_cgroups()
    for mount_point, kind, _ in mounts:
        if kind == "cgroup2":
            parent = _v2_parent(mount_point, own.get("", "/"))
            if parent is not None:
                return Hierarchy(2, parent, parent)
    memory = next((m for m, k, o in mounts if k == "cgroup" and "memory" in o), None)
    if memory is None:
        return None
    memory_parent = _v1_parent(memory, own.get("memory"))
    if memory_parent is None:
        return None
    pids = next((m for m, k, o in mounts if k == "cgroup" and "pids" in o), None)
    pids_parent = _v1_parent(pids, own.get("pids")) if pids else None
    return Hierarchy(1, memory_parent, pids_parent)


def _remove_stale(hierarchy: Hierarchy) -> None:
    """Remove run cgroups left by graders that died (SIGKILL) before cleaning up."""
    for parent in {hierarchy.memory_parent, hierarchy.pids_parent} - {None}:
        assert parent is not None
        try:
            children = list(parent.iterdir())
        except OSError:
            continue
        for child in children:
            match = re.fullmatch(re.escape(RUN_PREFIX) + r"(\d+)-\d+", child.name)
            if match and child.is_dir() and not Path(f"/proc/{match.group(1)}").exists():
                _kill_members(child)
                _remove(child)


_state: dict[str, Hierarchy | None] = {}


def hierarchy() -> Hierarchy | None:
    """The hierarchy run cgroups are made in (found once and checked by making one), or
    None where the grader cannot make cgroups with a memory limit."""
    if os.environ.get("NEEDLE_CGROUPS", "").lower() in ("0", "off", "no", "false"):
        return None
    with _lock:
        if "found" not in _state:
            found = _find_hierarchy()
            if found is not None:
                _remove_stale(found)
                try:  # a test cgroup: mkdir, limits and removal all work
                    RunCgroup(found, 64 * MiB, 16).remove()
                except OSError:
                    found = None
            _state["found"] = found
        return _state["found"]


def enforcement() -> str:
    """``"cgroup"`` when runs get a memory cgroup, else ``"rlimit-only"``."""
    return "cgroup" if hierarchy() is not None else "rlimit-only"


def memory_max(memory_bytes: int, tmp_bytes: int) -> int:
    """A run's cgroup memory limit: its memory limit, its private /tmp (a tmpfs, charged to
    the cgroup of whoever writes it) and headroom for the launchers."""
    return memory_bytes + tmp_bytes + HEADROOM_BYTES


_protected = False


def protect_grader() -> None:
    """A root grader without cgroups asks the OOM killer to spare it (once)."""
    global _protected
    if _protected or os.geteuid() != 0:
        return
    _protected = True
    try:
        current = int(Path("/proc/self/oom_score_adj").read_text())
        if current > GRADER_OOM_SCORE_ADJ:
            _write(Path("/proc/self/oom_score_adj"), str(GRADER_OOM_SCORE_ADJ))
    except (OSError, ValueError):
        pass


class Confinement:
    """What one sandboxed run gets: a cgroup when one can be had, and always an
    ``oom_score_adj`` of 1000 for its processes."""

    def __init__(self, memory_bytes: int, tmp_bytes: int, processes: int):
        self.cgroup: RunCgroup | None = None
        self.error: str | None = None
        found = hierarchy()
        if found is not None:
            limit = memory_max(memory_bytes, tmp_bytes)
            try:
                self.cgroup = RunCgroup(found, limit, processes + PIDS_HEADROOM)
            except OSError as error:
                # The probe cgroup worked, this one did not: refuse to run unbounded.
                raise RuntimeError(f"could not make the run's memory cgroup: {error}") from error
        else:
            protect_grader()

    def preexec(self, then):
        """A preexec function: join the cgroup (or fail the start), raise the OOM score,
        then ``then`` (the backend's own rlimits)."""
        cgroup = self.cgroup

        def run() -> None:
            if cgroup is not None:
                cgroup.join()
            try:
                fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
                try:
                    os.write(fd, str(SANDBOX_OOM_SCORE_ADJ).encode())
                finally:
                    os.close(fd)
            except OSError:
                pass
            if then is not None:
                then()

        return run

    def finish(self, result: RunResult | None) -> None:
        """After the run: name the memory limit if the cgroup's OOM killer struck, then kill
        whatever is left and remove the cgroup."""
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is None:
            return
        try:
            outcome = cgroup.outcome()
            if result is None:
                return
            if outcome.oom_kills and result.returncode not in (0, None) and result.limit is None:
                result.limit = "memory-cgroup"
        finally:
            cgroup.remove()
