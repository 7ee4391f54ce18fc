"""The submitter's side: a Dask client (and, by default, an in-process local cluster) that
grades one task per submission with ``worker.grade_task``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable

from autograder.cluster.worker import AUTO, grade_task

if TYPE_CHECKING:
    import distributed


@dataclasses.dataclass
class GradingItem:
    """One submission to grade: its task ``key`` (deterministic per submission), homework,
    bytes and file name; ``options`` go to ``grade_task`` (name, units, limits, variant,
    bundle_key)."""

    key: str
    homework: str
    archive: bytes
    filename: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    tag: Any = None  # whatever the caller wants back with the result


class GradingCluster:
    """Grades submissions on a Dask cluster: ``address`` None starts a ``LocalCluster`` in
    this process (worker processes with one thread each, no dashboard), else the client
    connects to the scheduler at ``address`` (``tcp://host:8786``).

    ``retries``: how many times a task that raised is run again (Dask reruns a task whose
    worker died on its own, up to ``distributed.scheduler.allowed-failures`` times)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        n_workers: int = 2,
        sandbox: str = AUTO,
        retries: int = 2,
        log: Callable[[str], None] | None = None,
    ):
        from distributed import Client, LocalCluster

        self.sandbox = sandbox
        self.retries = retries
        self.log = log or (lambda message: None)
        self._cluster: Any = None
        if address is None:
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_port=0,
                # No dashboard, and the scheduler's HTTP routes on a free port of loopback
                # (not 8787: another cluster or server may have it).
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )
            self._client = Client(self._cluster)
            where = self._cluster.scheduler_address
            self.log(f"local Dask cluster: {n_workers} workers at {where}")
        else:
            self._client = Client(address)
            self.log(f"Dask cluster at {address}")
        from autograder.cluster import plugin

        for instance, name in (
            (plugin.SandboxSweeper(), plugin.PLUGIN_NAME),
            (plugin.SandboxReaper(), plugin.REAPER_NAME),
        ):
            try:
                self._client.register_plugin(instance, name=name)
            except Exception as error:  # noqa: BLE001 - bubblewrap still dies with its worker
                self.log(f"could not register {name} on the cluster: {error}")

    @property
    def client(self) -> distributed.Client:
        return self._client

    def submit(
        self, key: str, homework: str, archive: bytes, filename: str, **options: Any
    ) -> distributed.Future:
        """Grade one submission: a future of its results dict. ``options``: more keyword
        arguments of ``grade_task`` (name, units, limits, variant, bundle_key).

        The bytes go in the task itself, not ``scatter``ed to one worker: the scheduler
        keeps them, so the task can run again when its worker dies."""
        return self._client.submit(
            grade_task,
            homework,
            archive,
            filename,
            sandbox=self.sandbox,
            key=key,
            retries=self.retries,
            pure=False,
            **options,
        )

    def grade_many(
        self,
        items: Iterable[GradingItem | tuple],
        progress: bool = True,
        on_error: Callable[[GradingItem, BaseException], dict] | None = None,
    ) -> Generator[tuple[GradingItem, dict], None, None]:
        """Submit every item, then yield ``(item, results)`` as each one finishes. A task
        that failed (after its retries, or a ``KilledWorker``) raises its error here, unless
        ``on_error(item, error)`` gives a result for it. Closing the iterator early cancels
        what is left."""
        from distributed import as_completed

        from autograder.engine.batch import _progress

        todo = [item if isinstance(item, GradingItem) else GradingItem(*item) for item in items]
        futures = {}
        for item in todo:
            options = item.options
            future = self.submit(item.key, item.homework, item.archive, item.filename, **options)
            futures[future] = item
        bar = _progress(len(todo), 0, progress)
        try:
            for future in as_completed(list(futures)):
                item = futures.pop(future)
                if future.status == "error":
                    error = future.exception()
                    assert error is not None
                    if on_error is None:
                        raise error
                    result = on_error(item, error)
                else:
                    result = future.result()
                future.release()
                bar.update(1)
                yield item, result
        finally:
            bar.close()
            if futures:
                self._client.cancel(list(futures))

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> GradingCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
