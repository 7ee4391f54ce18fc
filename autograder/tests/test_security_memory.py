"""Memory a process holds without mapping it: memfd files, /dev/shm, tmpfs files.

RLIMIT_AS (the only memory bound of the bubblewrap / unshare / plain / user sandboxes
without cgroups) does not see it; with enough of it the host's OOM killer would take the
largest process — the grader. Each run is therefore confined by a memory cgroup
(``engine/cgroups.py``) where the grader can make one; elsewhere sandbox processes get
``oom_score_adj`` 1000 and every result says the memory limit is not fully enforced.

Safety on a shared machine: a payload never tries to hold more than ``CAP`` bytes, and 3 GiB
only when this machine makes run cgroups (the run cannot start unless it joined a cgroup whose
limit was written and read back before the launch; ``cgroups.RunCgroup``); otherwise 768 MiB.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import types
import uuid
from pathlib import Path

import pytest

from autograder.engine import cgroups
from autograder.engine import results as results_io
from autograder.engine.runtime import ensure_runtime
from autograder.engine.sandbox import (
    BwrapSandbox,
    MiB,
    PlainSandbox,
    SandboxLimits,
    describe_end,
)
from autograder.tests.sandbox_helpers import backends, reachable_folder
from autograder.tests.sandbox_helpers import run_python as run_sandboxed

GiB = 1024 * MiB
LIMITS = SandboxLimits(wall_s=60, cpu_s=30, memory_bytes=512 * MiB, processes=16)
ENFORCED = cgroups.enforcement() == "cgroup"
CAP = 3 * GiB if ENFORCED else 768 * MiB
NO_CGROUP = (
    "no memory cgroup can be made on this machine (see cgroups.hierarchy): the memory limit "
    "is NOT enforced here beyond RLIMIT_AS; the oom_score_adj fallback is checked instead by "
    "test_without_a_cgroup_sandboxes_are_the_oom_killers_first_choice"
)


def _backends():
    return backends(plain=True)


@pytest.fixture(scope="module")
def runtime():
    return ensure_runtime()


@pytest.fixture
def tmp_path():
    yield from reachable_folder("ag-memory-test-")


def run_python(sandbox, runtime, tmp_path, code: str, limits: SandboxLimits = LIMITS):
    return run_sandboxed(sandbox, runtime, tmp_path, code, limits, prelude=f"CAP = {CAP}\n")


# memfd files of 32 MiB (RLIMIT_FSIZE is 64 MiB per file), filled page by page until CAP.
MEMFD_HOARD = """
import os
print("OOM_SCORE_ADJ", open("/proc/self/oom_score_adj").read().strip(), flush=True)
held, files, page = 0, [], b"\\x01" * 4096
try:
    while held < CAP:
        fd = os.memfd_create("hoard")
        os.ftruncate(fd, 32 << 20)
        for offset in range(0, 32 << 20, 1 << 20):
            os.pwrite(fd, page * 256, offset)
        files.append(fd)
        held += 32 << 20
    print("HOARDED", held >> 20, "MiB", flush=True)
except OSError as error:
    print("REFUSED at", held >> 20, "MiB:", error, flush=True)
"""

# Files in a tmpfs folder (FOLDER), 32 MiB each, until CAP.
FILE_HOARD = """
import os
held, n = 0, 0
try:
    while held < CAP:
        with open(os.path.join(FOLDER, f"{PREFIX}{n}"), "wb") as f:
            for _ in range(32):
                f.write(b"\\x01" * (1 << 20))
        n += 1
        held += 32 << 20
    print("HOARDED", held >> 20, "MiB", flush=True)
except OSError as error:
    print("REFUSED at", held >> 20, "MiB:", error, flush=True)
"""


def _leftover_run_cgroups() -> list[Path]:
    found = cgroups.hierarchy()
    if found is None:
        return []
    parents = {found.memory_parent, found.pids_parent} - {None}
    prefix = f"{cgroups.RUN_PREFIX}{os.getpid()}-"
    return [c for p in parents if p for c in p.iterdir() if c.name.startswith(prefix)]


def _has_cap_sys_resource() -> bool:
    status = Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("CapEff:"))
    return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE is capability 24


def _peak_rss_bytes() -> int:
    """This process's (the grader's) resident high-water mark."""
    status = Path("/proc/self/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) * 1024


# Reading a run's output may cost the grader this much above its high-water mark before the
# run (pytest itself grows to several hundred MB over a full session).
GRADER_GROWTH = 512 << 20


@pytest.mark.skipif(not ENFORCED, reason=NO_CGROUP)
@pytest.mark.parametrize("sandbox", _backends())
def test_memfd_hoard_is_stopped_by_the_cgroup(sandbox, runtime, tmp_path):
    assert sandbox.memory_enforcement == "cgroup"
    before = _peak_rss_bytes()
    result = run_python(sandbox, runtime, tmp_path, MEMFD_HOARD)
    out = result.output
    assert "OOM_SCORE_ADJ 1000" in out, out
    assert "HOARDED" not in out, out  # 3 GiB were never held
    ended = describe_end(result, LIMITS)
    assert cgroups.MEMORY_MESSAGE in ended, (ended, result.returncode, out)
    assert _peak_rss_bytes() < before + GRADER_GROWTH  # the grader (this process) stayed small
    assert _leftover_run_cgroups() == []


@pytest.mark.skipif(not ENFORCED, reason=NO_CGROUP)
def test_host_dev_shm_hoard_is_stopped_by_the_cgroup(runtime, tmp_path):
    """The plain (and user) sandbox write the host's /dev/shm: a tmpfs of half the RAM."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    prefix = f"needle-memory-test-{uuid.uuid4().hex[:8]}-"
    code = f"FOLDER, PREFIX = '/dev/shm', {prefix!r}\n" + FILE_HOARD
    before = _peak_rss_bytes()
    try:
        result = run_python(PlainSandbox("test"), runtime, tmp_path, code)
        stored = sum(p.stat().st_size for p in Path("/dev/shm").glob(prefix + "*"))
    finally:
        for path in Path("/dev/shm").glob(prefix + "*"):
            path.unlink()
    out = result.output
    assert "HOARDED" not in out, out
    ended = describe_end(result, LIMITS)
    assert cgroups.MEMORY_MESSAGE in ended or "REFUSED" in out, (ended, out)
    assert stored <= cgroups.memory_max(LIMITS.memory_bytes, LIMITS.tmp_bytes), stored
    assert _peak_rss_bytes() < before + GRADER_GROWTH
    assert _leftover_run_cgroups() == []


@pytest.mark.parametrize("sandbox", [p for p in _backends() if p.id != "plain"])
@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_private_tmp_and_shm_are_size_limited_tmpfs(sandbox, folder, runtime, tmp_path):
    """bwrap/unshare give a private /tmp of ``tmp_bytes`` and a 1 MiB /dev/shm: files there
    stop at their size, cgroup or not (and the cgroup's limit counts /tmp in)."""
    limits = dataclasses.replace(LIMITS, tmp_bytes=128 * MiB)
    code = f"FOLDER, PREFIX = {folder!r}, 'hoard-'\n" + FILE_HOARD
    result = run_python(sandbox, runtime, tmp_path, code, limits)
    out = result.output
    assert "REFUSED at" in out, out
    held = int(out.split("REFUSED at ")[1].split()[0])
    assert held <= 128, out


def test_without_a_cgroup_sandboxes_are_the_oom_killers_first_choice(
    runtime, tmp_path, monkeypatch
):
    """The fallback (forced here with NEEDLE_CGROUPS=off): sandbox processes get
    oom_score_adj 1000, a root grader -500, and results say the limit is not enforced. The
    hoard (768 MiB, over the 512 MiB limit) is NOT stopped: that is the documented gap."""
    monkeypatch.setenv("NEEDLE_CGROUPS", "off")
    sandbox = PlainSandbox("test")
    assert sandbox.memory_enforcement == "rlimit-only"
    monkeypatch.setattr(f"{__name__}.CAP", 768 * MiB)
    result = run_python(sandbox, runtime, tmp_path, MEMFD_HOARD)
    out = result.output
    assert "OOM_SCORE_ADJ 1000" in out, out
    assert "HOARDED 768 MiB" in out, out  # RLIMIT_AS alone does not see memfd memory
    if os.geteuid() == 0 and _has_cap_sys_resource():  # needed to lower one's own score
        assert int(Path("/proc/self/oom_score_adj").read_text()) <= cgroups.GRADER_OOM_SCORE_ADJ
    assert _leftover_run_cgroups() == []
    banner = "\n".join(results_io._banner(sandbox))
    assert results_io.MEMORY_NOT_ENFORCED in banner


def test_results_say_how_memory_is_enforced(monkeypatch):
    grader = types.SimpleNamespace(
        bundle=types.SimpleNamespace(
            name="hw1", key="k", suite=types.SimpleNamespace(digest="d"), reference_key="r"
        ),
        sandbox=PlainSandbox("test"),
        limits=LIMITS,
        runtime=types.SimpleNamespace(key="rt", numpy_version="2"),
    )
    extra = results_io._extra(grader, "someone")  # type: ignore[arg-type]
    assert extra["sandbox"]["memory_enforced"] == cgroups.enforcement()
    monkeypatch.setenv("NEEDLE_CGROUPS", "off")
    assert results_io._extra(grader, "x")["sandbox"]["memory_enforced"] == "rlimit-only"  # type: ignore[arg-type]
    if ENFORCED:
        monkeypatch.delenv("NEEDLE_CGROUPS")
        bwrap = shutil.which("bwrap")
        if bwrap:
            assert results_io._banner(BwrapSandbox(bwrap)) == []


def test_a_cgroup_that_cannot_be_joined_means_no_run(runtime, tmp_path, monkeypatch):
    """Fail closed: a run whose cgroup was made but not joined does not start."""
    if not ENFORCED:
        pytest.skip(NO_CGROUP)

    def broken(self):
        raise PermissionError("cannot join")

    monkeypatch.setattr(cgroups.RunCgroup, "join", broken)
    result = run_python(PlainSandbox("test"), runtime, tmp_path, "print('RAN')")
    assert result.error and "RAN" not in result.output, result
    assert _leftover_run_cgroups() == []


def test_the_report_says_when_memory_was_not_enforced():
    from autograder.engine.report import render_html

    def result(enforced: str) -> dict:
        sandbox = {"isolated": True, "description": "bwrap", "memory_enforced": enforced}
        return {"score": 1.0, "max_score": 1.0, "tests": [], "extra_data": {"sandbox": sandbox}}

    assert "Memory limit not fully enforced" not in render_html([result("cgroup")], "hw1")
    both = render_html([result("cgroup"), result("rlimit-only")], "hw1")
    assert "Memory limit not fully enforced" in both


def test_cgroup_v2_files_on_a_stand_in_tree(tmp_path):
    """The v2 path on a plain folder standing in for a cgroup2 mount (this machine may have
    the memory controller in v1 only): controllers enabled for the children, the limits
    written, memory.events read."""
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("")
    parent = cgroups._v2_parent(str(root), "/")
    assert parent == root
    assert (root / "cgroup.subtree_control").read_text() == "+memory +pids"
    hierarchy = cgroups.Hierarchy(2, root, root)
    run = cgroups.RunCgroup(hierarchy, 100 * MiB, 24)
    assert (run.memory / "memory.max").read_text() == str(100 * MiB)
    (run.memory / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (run.memory / "memory.peak").write_text(f"{99 * MiB}\n")
    assert run.outcome() == cgroups.Outcome(oom_kills=1, peak_bytes=99 * MiB)
    assert cgroups.memory_max(512 * MiB, 64 * MiB) == 640 * MiB
