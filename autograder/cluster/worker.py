"""What runs on a Dask worker: one submission, sent as bytes, graded like local grading.

``grade_task`` is a plain function: Dask pickles it by reference, so a worker needs this
repository (the grader image has it) but no file system shared with the submitter: the
submission's bytes travel in the task. Each worker process keeps one ``Grader`` per
(homework, sandbox, limits, variant, bundle key); the first task that needs it loads the
grading bundle (the submitter's own, by content key, when this machine has it; else the one
``build_bundle`` gives here) and runs the sandbox canary, exactly as
``python -m autograder grade`` does before a batch.

Nothing here needs the main thread: a Dask worker runs tasks in a thread pool, like the
thread pool of ``engine.batch``. Every sandboxed run is killed and its cgroup removed by the
engine when it ends, whichever thread started it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from autograder.engine.bundle import GradingBundle
    from autograder.engine.grading import Grader

AUTO = "auto"  # the strongest local sandbox that works on the worker (``--sandbox local``)

_GRADERS: dict[tuple, Grader] = {}
_LOCK = threading.Lock()
_BUNDLES: dict[tuple[str, str | None], GradingBundle] = {}
_BUNDLE_LOCK = threading.Lock()


def sandbox_kind(sandbox: str) -> str:
    """The engine's name for ``sandbox``: ``auto`` is ``local``."""
    return "local" if sandbox == AUTO else sandbox


def _limits_key(limits: dict[str, Any] | None) -> tuple:
    return tuple(sorted((limits or {}).items()))


def cached_bundle(folder: Path, key: str) -> GradingBundle | None:
    """The saved bundle under ``folder`` (``build/autograder/bundles/HW``) whose content key
    is ``key``, or None. ``GradingBundle.load`` checks every file against the manifest."""
    from autograder.engine.bundle import MANIFEST, BundleError, GradingBundle

    try:
        candidates = sorted(folder.iterdir())
    except OSError:
        return None
    for candidate in candidates:
        try:
            if json.loads((candidate / MANIFEST).read_text()).get("key") != key:
                continue
            bundle = GradingBundle.load(candidate)
        except (OSError, ValueError, AttributeError, BundleError):
            continue
        if bundle.key == key and bundle.name == folder.name:
            return bundle
    return None


def worker_bundle(
    homework: str, bundle_key: str | None = None, required: bool = False
) -> GradingBundle:
    """The grading bundle of ``homework`` in this process: the saved one with content key
    ``bundle_key`` when this machine has it (the very bundle the submitter grades with), else
    the one ``build_bundle`` gives (built from the homework's sources on this machine, or
    loaded from its cache); with ``required``, that saved one or ``GraderSetupError``. Kept
    for the life of the process."""
    from autograder.authoring.bundle import build_bundle, bundles_dir
    from autograder.engine.grading import GraderSetupError

    with _BUNDLE_LOCK:
        known = _BUNDLES.get((homework, bundle_key))
        if known is not None and (known.key == bundle_key or not required):
            return known
        if bundle_key:
            found = cached_bundle(bundles_dir() / homework, bundle_key)
            if found is not None:
                _BUNDLES[(homework, bundle_key)] = found
                return found
            if required:
                raise GraderSetupError(
                    f"the worker has no saved grading bundle of {homework} with key "
                    f"{bundle_key} under {bundles_dir() / homework} (copy the --bundle folder "
                    "there, or grade without --bundle)"
                )
        if known is not None:
            return known
        with _bundle_lock(homework):
            bundle = build_bundle(homework, log=_log)
        _BUNDLES[(homework, bundle_key)] = bundle
        return bundle


def worker_grader(
    homework: str,
    sandbox: str = AUTO,
    limits: dict[str, Any] | None = None,
    variant: int | None = None,
    bundle_key: str | None = None,
    bundle_required: bool = False,
) -> Grader:
    """This process's grader of ``homework`` (built once, its sandbox checked by the canary).

    Raises ``GraderSetupError`` / ``SandboxBroken`` / ``BundleError``: not a submission's
    fault, so the task fails and Dask may run it on another worker."""
    key = (homework, sandbox, _limits_key(limits), variant, bundle_key)
    with _LOCK:
        grader = _GRADERS.get(key)
        if grader is not None and (grader.bundle.key == bundle_key or not bundle_required):
            return grader
        from autograder.engine.grading import Grader
        from autograder.engine.sandbox import make_sandbox

        bundle = worker_bundle(homework, bundle_key, bundle_required)
        grader = Grader(
            bundle,
            make_sandbox(sandbox_kind(sandbox)),
            limit_overrides=dict(limits or {}),
            log=_log,
            variant=variant,
        )
        try:
            grader.check_sandbox()
        except BaseException:
            grader.close()
            raise
        _GRADERS[key] = grader
        return grader


@contextlib.contextmanager
def _bundle_lock(homework: str) -> Iterator[None]:
    """Workers on one machine build a missing bundle one at a time (the others then load it
    from the cache instead of computing the same reference answers at once)."""
    import fcntl

    from autograder.authoring.bundle import bundles_dir

    folder = bundles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in homework)
    with open(folder / f".{safe}.cluster-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(message: str) -> None:
    import sys

    print(f"[needle grader pid {os.getpid()}] {message}", file=sys.stderr, flush=True)


@atexit.register
def close_graders() -> None:
    """Remove the graders' scratch folders (at the worker's exit)."""
    with _LOCK:
        graders = list(_GRADERS.values())
        _GRADERS.clear()
    for grader in graders:
        grader.close()


def submission_filename(filename: str) -> str:
    """The last component of ``filename`` as a plain file name (never a path, never empty);
    its suffix (.zip, .tar.gz, .ipynb, .py) is what tells the engine how to read it."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c if c.isprintable() and c != "\0" else "_" for c in base).strip()
    if base in ("", ".", ".."):
        return "submission"
    if len(base) > 150:  # keep the suffix, which says what the file is
        base = base[:100] + "." + base[-48:].split(".", 1)[-1][-48:]
    return base


def grade_task(
    homework: str,
    archive: bytes,
    filename: str,
    *,
    sandbox: str = AUTO,
    units: list[str] | None = None,
    name: str | None = None,
    limits: dict[str, Any] | None = None,
    variant: int | None = None,
    bundle_key: str | None = None,
    bundle_required: bool = False,
) -> dict:
    """Runs on a Dask worker: write the submission's bytes (a .zip/.tar.gz/.ipynb, or a single
    file named ``filename``) into a fresh private temporary folder, grade it with the same
    engine, bundle and sandbox as local grading (``python -m autograder grade``) and return
    its Gradescope ``results.json`` dict. Never raises because of the submission (an
    ungradable one gets the engine's "could not be graded" result).

    ``name``: the submission's name in the results (default: ``filename`` without its
    archive suffix, as local grading names it); ``limits``: limit overrides as
    ``--timeout``/``--memory-mb`` give them (``SandboxLimits`` fields); ``variant``: a fixed
    input variant (tests), else one drawn per submission; ``bundle_key``: grade with the
    saved bundle of that content key where the worker has it (``worker_bundle``; with
    ``bundle_required``, only that one: else ``GraderSetupError``). The
    grader is cached per (homework, sandbox, limits, variant, bundle_key) in the worker
    process, the bundle per (homework, bundle_key)."""
    from autograder.engine.batch import safe_name

    grader = worker_grader(homework, sandbox, limits, variant, bundle_key, bundle_required)
    file_name = submission_filename(filename)
    folder = Path(tempfile.mkdtemp(prefix="needle-submission-"))  # 0700: the grader's only
    try:
        path = folder / file_name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(archive))
        return grader.grade(path, name=name or safe_name(file_name), units=units)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
