"""The sandboxes themselves: what a process inside can see, reach and use.

Each check runs a small Python program in the sandbox with the runner's limits applied first
(exactly what happens before a submission's code runs), on every isolating backend this
machine supports (bubblewrap, unshare); backends that cannot run here are skipped with the
reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autograder.engine.paths import REPO_ROOT
from autograder.engine.runtime import ensure_runtime
from autograder.engine.sandbox import (
    MiB,
    PlainSandbox,
    SandboxLimits,
    describe_end,
    local_sandbox,
)
from autograder.tests.sandbox_helpers import backends, reachable_folder
from autograder.tests.sandbox_helpers import run_python as run_sandboxed

SMALL = SandboxLimits(wall_s=20, cpu_s=10, memory_bytes=1024 * MiB, processes=16)


def _backends():
    return backends(plain=False)


@pytest.fixture(scope="module")
def runtime():
    return ensure_runtime()


@pytest.fixture
def tmp_path():
    yield from reachable_folder("ag-sandbox-test-")


def run_python(sandbox, runtime, tmp_path, code: str, limits: SandboxLimits = SMALL):
    return run_sandboxed(sandbox, runtime, tmp_path, code, limits)


@pytest.mark.parametrize("sandbox", _backends())
def test_the_sandbox_sees_only_its_view(sandbox, runtime, tmp_path):
    result = run_python(
        sandbox,
        runtime,
        tmp_path,
        f"""
        import os
        hidden = [{str(REPO_ROOT)!r}, {str(REPO_ROOT / "build")!r}, "/root", "/home",
                  {str(Path.home())!r}]
        print("VISIBLE", [p for p in hidden if os.path.exists(p)])
        print("NEEDLE", [p for p in sys.path if os.path.isdir(os.path.join(p, "needle"))])
        writable = []
        for path in ("/", "/usr", "/etc", "/opt/runtime", "/opt/site", "/grader"):
            try:
                open(os.path.join(path, "x"), "w").close()
                writable.append(path)
            except OSError:
                pass
        print("WRITABLE", writable)
        open("/tmp/ok", "w").write("scratch")
        print("PIDS", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        """,
    )
    out = result.output
    assert "VISIBLE []" in out and "NEEDLE []" in out and "WRITABLE []" in out, out
    pids = json.loads(out.split("PIDS ")[1].splitlines()[0])
    assert len(pids) <= 4, pids  # a pid namespace: the sandbox's own processes only


@pytest.mark.parametrize("sandbox", _backends())
def test_no_network(sandbox, runtime, tmp_path):
    result = run_python(
        sandbox,
        runtime,
        tmp_path,
        """
        import socket
        reached = []
        for address in (("1.1.1.1", 53), ("127.0.0.1", 22), ("8.8.8.8", 443)):
            try:
                socket.create_connection(address, timeout=2).close()
                reached.append(address)
            except OSError:
                pass
        try:
            socket.getaddrinfo("example.com", 80)
            reached.append("dns")
        except OSError:
            pass
        print("REACHED", reached)
        """,
    )
    assert "REACHED []" in result.output, result.output


@pytest.mark.parametrize("sandbox", _backends())
def test_process_memory_tmp_and_file_limits_hold(sandbox, runtime, tmp_path):
    result = run_python(
        sandbox,
        runtime,
        tmp_path,
        """
        import os, time
        children = 0
        try:
            for _ in range(64):
                if os.fork() == 0:
                    time.sleep(2)
                    os._exit(0)
                children += 1
        except OSError:
            pass
        print("CHILDREN", children)
        try:
            bytearray(4 * 1024**3)
            print("MEMORY unbounded")
        except MemoryError:
            print("MEMORY bounded")
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(200):
                    f.write(bytes(1024 * 1024))
            print("TMP unbounded")
        except OSError:
            print("TMP bounded")
        """,
        dataclasses_replace(SMALL, tmp_bytes=16 * MiB),
    )
    out = result.output
    children = int(out.split("CHILDREN ")[1].split()[0])
    assert children < SMALL.processes, out
    assert "MEMORY bounded" in out and "TMP bounded" in out, out


def dataclasses_replace(limits, **changes):
    import dataclasses

    return dataclasses.replace(limits, **changes)


@pytest.mark.parametrize("sandbox", _backends())
def test_limits_stop_the_run_and_are_named(sandbox, runtime, tmp_path):
    quick = dataclasses_replace(SMALL, wall_s=3, cpu_s=30, output_bytes=64 * 1024)
    endless = run_python(sandbox, runtime, tmp_path, "import time\ntime.sleep(60)", quick)
    assert endless.timed_out and "wall-clock time limit of 3 s" in describe_end(endless, quick)
    assert endless.wall_s < 15
    busy = dataclasses_replace(SMALL, wall_s=30, cpu_s=2)
    spin = run_python(sandbox, runtime, tmp_path, "while True: pass", busy)
    assert "CPU time limit of 2 s" in describe_end(spin, busy), (spin.returncode, spin.output)
    flood = run_python(sandbox, runtime, tmp_path, "while True: print('x' * 1000)", quick)
    assert flood.output_exceeded and "output limit" in describe_end(flood, quick)
    assert len(flood.output) < 100 * 1024  # what the grader keeps is bounded
    crash = run_python(sandbox, runtime, tmp_path, "import ctypes; ctypes.string_at(0)", quick)
    assert "segmentation fault" in describe_end(crash, quick)


def test_local_sandbox_prefers_an_isolating_backend():
    sandbox = local_sandbox()
    if shutil.which("bwrap"):
        assert sandbox.kind in ("bwrap", "unshare") and sandbox.isolated
    if not sandbox.isolated:
        assert "NOT ISOLATED" in sandbox.describe()


def test_the_plain_fallback_says_it_is_not_isolated():
    plain = PlainSandbox("no namespaces here")
    assert not plain.isolated
    assert "NOT ISOLATED" in plain.describe() and "no namespaces here" in plain.describe()
