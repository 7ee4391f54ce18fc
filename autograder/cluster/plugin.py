"""The plugins the grading cluster registers (this module imports ``distributed``).

When a worker process dies mid-task (SIGKILL, out of memory), what its sandboxes were
running must not outlive it. Three things see to it:

- bubblewrap (the default backend) runs with ``--die-with-parent``: the kernel kills the
  sandbox when the worker dies;
- ``SandboxSweeper`` (worker plugin): a (re)started worker empties and removes the run cgroups
  of grader processes that are gone (``cgroups.hierarchy`` does it once per process);
- ``SandboxReaper`` (nanny plugin): the nanny watches its worker's sandbox launchers (the
  session leaders the engine starts, ``sandbox.run_bounded``) and, once the worker is gone,
  kills their process groups. This covers the backends that do not die with their parent
  (``unshare``, ``plain``) where no cgroup can be had.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

PLUGIN_NAME = "needle-sandbox-sweeper"
REAPER_NAME = "needle-sandbox-reaper"
POLL_S = 0.2  # a scan of /proc takes a few ms


class SandboxSweeper(WorkerPlugin):
    """At a worker's start: the run cgroups of dead grader processes are emptied (SIGKILL)
    and removed, before this worker grades anything."""

    idempotent = True

    def setup(self, worker) -> None:
        from autograder.engine import cgroups

        cgroups.hierarchy()


def process_table() -> dict[int, tuple[int, int, int]]:
    """{pid: (parent pid, session id, start time)} of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
            fields = data[data.rindex(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):  # a zombie is dead already
                continue
            table[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return table


class LauncherWatch:
    """The sandbox launchers of one worker process, remembered while it lives and killed
    (their process groups) once it is gone. A launcher is a child of the worker that leads
    its own session; it is known by (pid, start time), so a reused pid is never hit."""

    def __init__(self) -> None:
        self.launchers: dict[tuple[int, int], int] = {}  # (pid, start) -> worker pid

    def tick(self, worker: int | None, table: dict[int, tuple[int, int, int]] | None = None):
        """Record the launchers of ``worker`` (None: none alive now); kill the launchers of
        workers that are gone. Returns the pids killed."""
        table = process_table() if table is None else table
        if worker is not None and worker in table:
            for pid, (parent, session, start) in table.items():
                if parent == worker and session == pid:
                    self.launchers[(pid, start)] = worker
        killed = []
        for (pid, start), owner in list(self.launchers.items()):
            entry = table.get(pid)
            if entry is None or entry[2] != start:  # it ended
                del self.launchers[(pid, start)]
            elif owner != worker or owner not in table:  # its worker is gone
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                killed.append(pid)
                del self.launchers[(pid, start)]
        return killed


class SandboxReaper(NannyPlugin):
    """Watches the worker of each nanny it is attached to (``LauncherWatch``); one thread per
    process, whatever the number of nannies in it (a ``LocalCluster`` keeps all of them in
    the client's process)."""

    idempotent = True

    def setup(self, nanny) -> None:
        with _WATCH_LOCK:
            _WATCHED[id(nanny)] = (nanny, LauncherWatch())
            global _WATCHER
            if _WATCHER is None or not _WATCHER.is_alive():
                _WATCHER = threading.Thread(target=_watch_all, name=REAPER_NAME, daemon=True)
                _WATCHER.start()

    def teardown(self, nanny) -> None:
        with _WATCH_LOCK:
            _WATCHED.pop(id(nanny), None)


_WATCHED: dict[int, tuple[object, LauncherWatch]] = {}
_WATCH_LOCK = threading.Lock()
_WATCHER: threading.Thread | None = None


def _watch_all() -> None:
    while True:
        time.sleep(POLL_S)
        with _WATCH_LOCK:
            watched = list(_WATCHED.values())
        if not watched:
            continue
        try:
            table = process_table()
            for nanny, watch in watched:
                watch.tick(getattr(nanny, "pid", None), table)
        except Exception:  # noqa: BLE001 - the watch goes on
            pass
