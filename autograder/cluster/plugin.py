"""The worker plugin the grading cluster registers (imports ``distributed``)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "needle-sandbox-sweeper"


class SandboxSweeper(WorkerPlugin):
    """When a worker (re)starts, the sandbox cgroups of grader processes that died (a worker
    killed mid-task) are emptied (SIGKILL) and removed. The engine does this the first time a
    process looks for its cgroup hierarchy (``cgroups.hierarchy``); doing it at start means a
    restarted worker cleans up before it grades anything."""

    idempotent = True

    def setup(self, worker) -> None:
        from autograder.engine import cgroups

        cgroups.hierarchy()
