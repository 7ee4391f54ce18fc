"""Sandboxes: run one command on a submission with no way out and bounded resources.

Every backend runs a command in a *view* of the file system made of a few mounts (the
submission workspace, the probe runner, an answers folder, the Python runtime) and
nothing else of the grader's machine, under these limits (``SandboxLimits``): wall time
(the process group is killed), CPU time, address space, processes, file size, open files,
``/tmp`` size and captured output.

Backends, from the strongest to the weakest:

- ``BwrapSandbox`` (``local``, the default): bubblewrap. New user, mount, PID, network, IPC,
  UTS and cgroup namespaces; every capability dropped; ``no_new_privs``; a read-only system
  (``/usr``) and runtime; a private size-limited ``/tmp``; no network at all; the sandbox dies
  with the grader. When the grader runs as root it first becomes ``nobody`` (setpriv), because
  the kernel does not apply the process limit to root.
- ``UnshareSandbox`` (``local`` when bubblewrap is missing): util-linux ``unshare`` namespaces
  and a small shell script that builds the same read-only view with ``mount`` and ``chroot``.
- ``PlainSandbox``: a subprocess with resource limits only, used when no namespace can be made.
  It is NOT ISOLATED: the submission could read the grader's files. Every report says so.
- ``ContainerSandbox`` (``--sandbox container``): docker or podman running the grader image
  (``docker/grader.Dockerfile``) with ``--network none --read-only --cap-drop ALL``, a non-root
  user, memory, pids and CPU limits.

The limits inside the sandbox are applied twice: by the launcher where the backend allows, and
by the probe runner before it imports any student code (``runner.apply_limits``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from autograder.engine import cgroups

MiB = 1024 * 1024
NOBODY = 65534
SANDBOX_UID = 1000  # the uid the submission sees inside the namespaces / container

# Inside paths: the same in every isolating backend.
WORK = "/work"  # the submission workspace (read-only while probes run)
GRADER = "/grader"  # the runner, the probe kit, the probes of ONE unit, the run's config
# Nothing else is writable but a private, size-limited /tmp; answers travel on stdout.
RUNTIME = "/opt/runtime"  # the Python interpreter and its standard library
SITE = "/opt/site"  # numpy, pybind11 headers


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run (one probe group, or one build)."""

    wall_s: float = 60.0
    cpu_s: int = 60
    memory_bytes: int = 2048 * MiB  # address space per process
    processes: int = 64  # processes + threads, per sandbox
    file_size_bytes: int = 64 * MiB
    open_files: int = 256
    tmp_bytes: int = 64 * MiB
    output_bytes: int = 1 * MiB  # the submission's stdout+stderr; more kills the run
    answer_bytes: int = 64 * MiB  # answer records sent by the runner; more kills the run

    def rlimits(self) -> dict:
        """The limits the runner applies with setrlimit (names as in ``runner.py``)."""
        return {
            "cpu_s": self.cpu_s,
            "address_space_bytes": self.memory_bytes,
            "processes": self.processes,
            "file_size_bytes": self.file_size_bytes,
            "open_files": self.open_files,
            "core_bytes": 0,
        }

    def describe(self) -> str:
        return (
            f"wall {self.wall_s:g} s, CPU {self.cpu_s} s, memory {self.memory_bytes // MiB} MiB, "
            f"{self.processes} processes, files {self.file_size_bytes // MiB} MiB, "
            f"output {self.output_bytes // 1024} KiB"
        )


@dataclasses.dataclass(frozen=True)
class Mount:
    """``source`` (a host path) appears at ``target`` inside the sandbox."""

    source: Path
    target: str
    writable: bool = False


@dataclasses.dataclass
class RunResult:
    """How a sandboxed run ended. ``limit`` names the limit that stopped it, if any."""

    returncode: int | None
    wall_s: float
    output_head: str
    output_tail: str
    output_bytes: int
    timed_out: bool = False
    output_exceeded: bool = False
    limit: str | None = None
    error: str | None = None  # the sandbox itself failed to start
    records: list[bytes] = dataclasses.field(default_factory=list)  # answer records

    @property
    def signal(self) -> int | None:
        code = self.returncode
        if code is None:
            return None
        if code < 0:
            return -code
        if code > 128 and code - 128 < 65:  # bwrap, shells and container engines: 128 + signal
            return code - 128
        return None

    @property
    def output(self) -> str:
        if self.output_tail:
            return f"{self.output_head}\n[... output cut ...]\n{self.output_tail}"
        return self.output_head


def describe_end(result: RunResult, limits: SandboxLimits) -> str:
    """A sentence saying why a run stopped, naming the limit that was hit."""
    if result.error:
        return f"the sandbox could not run: {result.error}"
    if result.timed_out:
        return f"stopped: wall-clock time limit of {limits.wall_s:g} s exceeded"
    if result.output_exceeded:
        return (
            f"stopped: output limit exceeded ({limits.output_bytes // 1024} KiB of printed "
            f"output, or {limits.answer_bytes // MiB} MiB of answers)"
        )
    sig = result.signal
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and result.limit == "cpu"):
        return f"stopped: CPU time limit of {limits.cpu_s} s exceeded"
    if result.limit == "memory-cgroup":
        total = cgroups.memory_max(limits.memory_bytes, limits.tmp_bytes) // MiB
        return f"stopped: {cgroups.MEMORY_MESSAGE} ({total} MiB for all its processes and /tmp)"
    if sig == signal.SIGXFSZ:
        return f"stopped: file size limit of {limits.file_size_bytes // MiB} MiB exceeded"
    if sig == signal.SIGKILL:
        return (
            "killed (SIGKILL): most likely the memory limit "
            f"of {limits.memory_bytes // MiB} MiB was exceeded"
        )
    if sig == signal.SIGSEGV:
        return "crashed: segmentation fault (SIGSEGV)"
    if sig == signal.SIGABRT:
        return "crashed: aborted (SIGABRT)"
    if sig == signal.SIGBUS:
        return "crashed: bus error (SIGBUS)"
    if sig is not None:
        return f"killed by signal {signal.Signals(sig).name}"
    if result.returncode not in (0, None):
        return f"exited early with status {result.returncode}"
    return "finished"


class Sandbox:
    """A way to run a command in an isolated view of the file system."""

    kind = "abstract"
    isolated = True  # False: the submission can see the host; reports carry a warning
    remaps_paths = True  # False: mounts are not made; commands use host paths
    memory_cgroup = False  # True: each run gets a memory cgroup where one can be had

    @property
    def memory_enforcement(self) -> str:
        """``"cgroup"``: all the memory of a run is bounded; ``"rlimit-only"``: only the
        address space of each process (memfd, /dev/shm and tmpfs files escape it)."""
        return cgroups.enforcement() if self.memory_cgroup else "rlimit-only"

    @property
    def writer_uid(self) -> int | None:
        """The host uid that must own a writable mount (None: the grader's own)."""
        return sandbox_host_uid() if _drop_to_nobody() else None

    def rlimits(self, limits: SandboxLimits) -> dict:
        """The limits the probe runner applies inside (see ``runner.apply_limits``)."""
        return limits.rlimits()

    def describe(self) -> str:
        return self.kind

    def view(self, mounts: list[Mount], inside: str) -> str:
        """The path the sandboxed process uses for the inside path ``inside``."""
        if self.remaps_paths:
            return inside
        for mount in sorted(mounts, key=lambda m: -len(m.target)):
            if inside == mount.target or inside.startswith(mount.target + "/"):
                return str(mount.source) + inside[len(mount.target) :]
        return inside

    def command(self, argv: list[str], mounts: list[Mount], limits: SandboxLimits, cwd: str):
        raise NotImplementedError

    def run(
        self,
        argv: list[str],
        mounts: list[Mount],
        limits: SandboxLimits,
        cwd: str = WORK,
        env: dict[str, str] | None = None,
        record_prefix: bytes = b"",
    ) -> RunResult:
        """Run ``argv`` (inside paths) with ``mounts`` under ``limits``; lines of its output
        that start with ``record_prefix`` are answer records (``RunResult.records``)."""
        prepare_mount_permissions(mounts, self.writer_uid)
        command = self.command(argv, mounts, limits, self.view(mounts, cwd))
        preexec = self.preexec(limits)
        confinement = None
        if self.memory_cgroup:
            try:
                confinement = cgroups.Confinement(
                    limits.memory_bytes, limits.tmp_bytes, limits.processes
                )
            except RuntimeError as error:
                return RunResult(None, 0.0, "", "", 0, error=str(error))
            preexec = confinement.preexec(preexec)
        result: RunResult | None = None
        try:
            result = run_bounded(
                command,
                limits,
                env=self.launcher_env(env or {}),
                preexec=preexec,
                cleanup=self.cleanup,
                record_prefix=record_prefix,
            )
            return result
        finally:
            if confinement is not None:
                confinement.finish(result)  # names an OOM kill, kills the rest, removes it

    def launcher_env(self, env: dict[str, str]) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", **env}

    def preexec(self, limits: SandboxLimits):
        return None

    def cleanup(self, process: subprocess.Popen) -> None:
        """Called after the run's process group was killed; container backends stop here."""


def prepare_mount_permissions(mounts: list[Mount], uid: int | None) -> None:
    """Let the sandbox user (host ``uid``; None: the grader's own user) write into the
    writable mounts: chown them when we are root, else open them to others (rootless
    containers map their user to an unrelated host uid)."""
    if uid is None:
        return
    for mount in mounts:
        if not mount.writable:
            continue
        for directory, _, files in os.walk(mount.source):
            for path in [directory, *(os.path.join(directory, f) for f in files)]:
                if os.path.islink(path):
                    continue
                if os.geteuid() == 0:
                    os.chown(path, uid, uid)
                else:
                    os.chmod(path, os.stat(path).st_mode | 0o077)


def _set_rlimits(limits: SandboxLimits, include_processes: bool) -> None:
    import resource

    values = {
        resource.RLIMIT_CPU: limits.cpu_s + 2,  # the runner sets the exact limit
        resource.RLIMIT_AS: limits.memory_bytes + 256 * MiB,  # the launcher needs a little
        resource.RLIMIT_FSIZE: limits.file_size_bytes,
        resource.RLIMIT_NOFILE: max(limits.open_files, 64),
        resource.RLIMIT_CORE: 0,
    }
    if include_processes:
        values[resource.RLIMIT_NPROC] = limits.processes
    for which, value in values.items():
        resource.setrlimit(which, (value, value))


class OutputDemux:
    """Splits a sandbox's output stream into answer records (lines that start with the
    runner's record prefix) and the submission's own output (of which only the first and
    last ``keep`` bytes are kept). Memory stays bounded whatever the stream holds."""

    # Every record counts toward the answer budget at its real size (prefix and newline
    # included), and at least RECORD_MIN_COST: a flood of empty records is not free.
    RECORD_MIN_COST = 1024
    MAX_RECORDS = 4096  # far above any unit's cases; more stops the run

    def __init__(self, prefix: bytes, keep: int = 32 * 1024, max_record_bytes: int = 0):
        self.prefix = prefix
        self.keep = keep
        self.max_record_bytes = max_record_bytes
        self.too_many_records = False
        self.head = bytearray()
        self.tail = bytearray()
        self.output_bytes = 0  # bytes that are not answer records
        self.record_bytes = 0
        self.records: list[bytes] = []
        self._line = bytearray()  # the current line while it may still be a record
        self._state = "start"  # start (undecided) | record | output

    def _output(self, data: bytes) -> None:
        self.output_bytes += len(data)
        if len(self.head) < self.keep:
            room = self.keep - len(self.head)
            self.head.extend(data[:room])
            data = data[room:]
        if data:
            self.tail.extend(data)
            if len(self.tail) > self.keep:
                del self.tail[: len(self.tail) - self.keep]

    def feed(self, data: bytes) -> None:
        position, end = 0, len(data)
        while position < end:  # by index: slicing off the rest each line was quadratic
            newline = data.find(b"\n", position)
            stop = end if newline < 0 else newline + 1
            piece, position = data[position:stop], stop
            if self._state == "start":
                self._line.extend(piece)
                if len(self._line) >= len(self.prefix) or piece.endswith(b"\n"):
                    if self._line.startswith(self.prefix):
                        self._state = "record"
                    else:
                        self._state = "output"
                        self._output(bytes(self._line))
                        self._line.clear()
            elif self._state == "record":
                self._line.extend(piece)
            else:
                self._output(piece)
            if self._state == "record" and self.max_record_bytes:
                if self.record_bytes + len(self._line) > self.max_record_bytes:
                    self._state = "output"  # over the answer budget: dropped, not kept
                    self._line.clear()
            if piece.endswith(b"\n"):
                if self._state == "record":
                    self.record_bytes += max(len(self._line), self.RECORD_MIN_COST)
                    if len(self.records) < self.MAX_RECORDS:
                        record = bytes(self._line[len(self.prefix) :]).rstrip(b"\n")
                        self.records.append(record)
                    else:
                        self.too_many_records = True
                self._line.clear()
                self._state = "start"

    def finish(self) -> None:
        if self._state == "output" or (self._state == "start" and self._line):
            self._output(bytes(self._line))
        self._line.clear()


def run_bounded(
    command: list[str],
    limits: SandboxLimits,
    env: dict[str, str],
    preexec=None,
    cleanup=None,
    record_prefix: bytes = b"",
) -> RunResult:
    """Run ``command`` in its own session; collect its answer records and a bounded amount
    of its other output; kill its process group at the wall-clock limit, or when its output
    or its answers exceed their limits."""
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
            close_fds=True,
        )
    except (OSError, subprocess.SubprocessError) as error:  # a failed preexec: not started
        return RunResult(None, 0.0, "", "", 0, error=f"{command[0]}: {error}")
    with _RUNNING_LOCK:
        _RUNNING[process.pid] = (process, cleanup)
    try:
        return _collect(process, limits, start, cleanup, record_prefix)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(process.pid, None)


# Sandboxed runs in progress in this process, by pid: ``stop_running`` ends them all.
_RUNNING: dict[int, tuple[subprocess.Popen, Callable[[subprocess.Popen], None] | None]] = {}
_RUNNING_LOCK = threading.Lock()


def stop_running() -> int:
    """Kill every sandboxed run this process has in progress (each one's process group; the
    backend's cleanup removes a container); returns how many there were."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.values())
    for process, cleanup in running:
        _kill_group(process)
        if cleanup is not None:
            try:
                cleanup(process)
            except Exception:  # noqa: BLE001 - stopping goes on for the others
                pass
    return len(running)


def _collect(
    process: subprocess.Popen, limits: SandboxLimits, start: float, cleanup, record_prefix: bytes
) -> RunResult:
    demux = OutputDemux(record_prefix or b"\x00" * 64, max_record_bytes=limits.answer_bytes)
    exceeded = threading.Event()

    stdout = process.stdout
    assert stdout is not None  # Popen(stdout=PIPE)

    def drain() -> None:
        while True:
            chunk = stdout.read1(65536)  # type: ignore[attr-defined]  # a BufferedReader
            if not chunk:
                demux.finish()
                return
            demux.feed(chunk)
            too_much = (
                demux.output_bytes > limits.output_bytes
                or demux.record_bytes >= limits.answer_bytes
                or demux.too_many_records
            )
            if too_much and not exceeded.is_set():
                exceeded.set()
                _kill_group(process)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        process.wait()
    if cleanup is not None and (timed_out or exceeded.is_set()):
        cleanup(process)
    reader.join(timeout=10)
    # Nothing of this run may outlive it (a daemon the submission started in our group).
    _kill_group(process)
    wall = time.monotonic() - start
    return RunResult(
        returncode=process.returncode,
        wall_s=wall,
        output_head=demux.head.decode("utf-8", "replace"),
        output_tail=demux.tail.decode("utf-8", "replace")
        if demux.output_bytes > demux.keep
        else "",
        output_bytes=demux.output_bytes,
        timed_out=timed_out,
        output_exceeded=exceeded.is_set(),
        records=demux.records,
    )


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sandbox_host_uid() -> int:
    """The unprivileged host user a root grader runs sandboxes as: ``$NEEDLE_SANDBOX_UID``
    (the Gradescope export sets its dedicated ``student`` user), else ``nobody``."""
    return int(os.environ.get("NEEDLE_SANDBOX_UID", NOBODY))


def _drop_to_nobody() -> list[str]:
    """Prefix that makes a root grader's sandbox run as an unprivileged user (the kernel never
    applies RLIMIT_NPROC to root, so a fork bomb would otherwise go unchecked)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    uid = sandbox_host_uid()
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _system_binds() -> list[list[str]]:
    """Read-only binds of the system (programs and shared libraries), nothing else of /."""
    args: list[list[str]] = []
    for name in ("usr", "lib", "lib64", "lib32", "bin", "sbin"):
        path = Path("/" + name)
        if path.is_symlink():
            args.append(["--symlink", os.readlink(path), str(path)])
        elif path.is_dir():
            args.append(["--ro-bind", str(path), str(path)])
    for extra in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"):
        if os.path.exists(extra):
            args.append(["--ro-bind", extra, extra])
    return args


class BwrapSandbox(Sandbox):
    kind = "bwrap"
    memory_cgroup = True

    def __init__(self, bwrap: str):
        self.bwrap = bwrap

    def describe(self) -> str:
        who = f"host uid {sandbox_host_uid()}" if _drop_to_nobody() else "the grader's user"
        return (
            "bubblewrap (user/mount/pid/net/ipc/uts namespaces, no capabilities, read-only "
            f"system, private /tmp, no network; runs as {who})"
        )

    def command(self, argv, mounts, limits, cwd):
        command = [*_drop_to_nobody(), self.bwrap, "--unshare-all", "--unshare-user"]
        command += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        command += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
        command += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
        command += ["--setenv", "LANG", "C.UTF-8"]
        for bind in _system_binds():
            command += bind
        command += ["--proc", "/proc", "--dev", "/dev"]
        command += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
        # /dev/shm would otherwise be an unbounded tmpfs inside /dev.
        command += ["--size", str(MiB), "--tmpfs", "/dev/shm"]
        for mount in mounts:
            command += [
                "--bind" if mount.writable else "--ro-bind",
                str(mount.source),
                mount.target,
            ]
        # The root bwrap builds is a tmpfs; read-only, nothing can be written outside /tmp.
        command += ["--remount-ro", "/", "--chdir", cwd, "--", *argv]
        return command

    def preexec(self, limits):
        return functools.partial(_set_rlimits, limits, False)


UNSHARE_SCRIPT = r"""
set -eu
# The new root: a fresh tmpfs over $1, an existing folder that holds none of the sources (the
# tmpfs exists in this mount namespace only).
root="$1"
mount -t tmpfs -o size=1m,mode=0755 sandbox-root "$root"
shift
while [ "$1" != "--" ]; do
  kind=$1; source=$2; target=$3; shift 3
  case "$kind" in
    link) mkdir -p "$root$(dirname "$target")"; ln -s "$source" "$root$target";;
    ro|rw) if [ -d "$source" ]; then mkdir -p "$root$target"; else
             mkdir -p "$root$(dirname "$target")"; : > "$root$target"; fi
           mount --rbind "$source" "$root$target"
           if [ "$kind" = ro ]; then mount -o remount,bind,ro "$root$target"; fi;;
    tmp) mkdir -p "$root$target"; mount -t tmpfs -o "size=$source,mode=1777" tmp "$root$target";;
  esac
done
shift
mkdir -p "$root/proc" "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o size=1m,mode=0755 dev "$root/dev"
for device in null zero full random urandom tty; do
  : > "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
mkdir -p "$root/dev/shm" && mount -t tmpfs -o size=1m,mode=1777 shm "$root/dev/shm"
mount -o remount,ro,bind "$root/dev"
mount -o remount,ro,bind "$root"
cd "$root"
exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 \
  setpriv --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"""


class UnshareSandbox(Sandbox):
    """Namespaces with util-linux ``unshare``; the view is built by a small mount script."""

    kind = "unshare"
    memory_cgroup = True

    def describe(self) -> str:
        return "unshare namespaces (user/mount/pid/net/ipc/uts, chroot view, no capabilities)"

    def command(self, argv, mounts, limits, cwd):
        specs: list[str] = []
        for kind, *spec in _system_binds():
            if kind == "--symlink":
                specs += ["link", spec[0], spec[1]]
            else:
                specs += ["ro", spec[0], spec[1]]
        specs += ["tmp", str(limits.tmp_bytes), "/tmp"]
        for mount in mounts:
            specs += ["rw" if mount.writable else "ro", str(mount.source), mount.target]
        # Not exec: the shell turns a signal death into status 128+signal, which unshare
        # passes on (it cannot re-raise every signal itself).
        inner = ["/bin/sh", "-c", f'cd "{cwd}" || exit 126; "$@"; exit $?', "sh", *argv]
        sources = [str(m.source) for m in mounts]
        scratch = next(
            (
                path
                for path in ("/mnt", "/media", "/srv", "/opt", "/var/tmp", "/home")
                if os.path.isdir(path) and not any(s.startswith(path + "/") for s in sources)
            ),
            "/mnt",
        )
        return [
            *_drop_to_nobody(),
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--net",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "/bin/sh",
            "-c",
            UNSHARE_SCRIPT,
            "unshare-sandbox",
            scratch,
            *specs,
            "--",
            *inner,
        ]

    def preexec(self, limits):
        return functools.partial(_set_rlimits, limits, False)


class PlainSandbox(Sandbox):
    """No isolation: resource limits and a separate process only."""

    kind = "plain"
    isolated = False
    remaps_paths = False
    memory_cgroup = True

    def __init__(self, reason: str = ""):
        self.reason = reason

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"NOT ISOLATED: plain subprocess with resource limits only{why}"

    def command(self, argv, mounts, limits, cwd):
        return [*_drop_to_nobody(), "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]

    def preexec(self, limits):
        return functools.partial(_set_rlimits, limits, False)


class UserSandbox(PlainSandbox):
    """A separate process as a dedicated unprivileged user, with resource limits, for hosts
    where no namespace can be made but the grader is root and owns a user of its own
    (Gradescope's single container: the export creates user ``student``). The boundary is
    the file permissions: the grader's files are root-only (``0700``), so this user can read
    the workspace and the running probe only. Processes of that user are all killed after
    every run (``$NEEDLE_SANDBOX_UID`` belongs to the grader alone)."""

    kind = "user"
    isolated = True

    def __init__(self, uid: int):
        super().__init__()
        self.uid = uid

    def describe(self) -> str:
        return f"separate process as unprivileged user {self.uid}, resource limits"

    def command(self, argv, mounts, limits, cwd):
        if os.geteuid() != 0 or sandbox_host_uid() != self.uid:
            raise RuntimeError("the user sandbox needs root and NEEDLE_SANDBOX_UID set")
        return super().command(argv, mounts, limits, cwd)

    def preexec(self, limits):
        return functools.partial(_set_rlimits, limits, True)

    def cleanup(self, process: subprocess.Popen) -> None:
        kill_processes_of(self.uid)

    def run(self, *args, **kwargs) -> RunResult:
        result = super().run(*args, **kwargs)
        kill_processes_of(self.uid)  # daemons that left the process group
        return result


def kill_processes_of(uid: int) -> int:
    """SIGKILL every process whose real uid is ``uid`` (a uid only the grader's sandboxes use);
    returns how many were signalled."""
    if uid in (0, os.getuid()):
        raise ValueError("refusing to kill the grader's own user")
    killed = 0
    for pid, uids, _ in process_table():
        if uids[:1] == [str(uid)]:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def process_table():
    """(pid, [real, effective, saved, fs uid], state letter) of every process in /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        lines = status.splitlines()
        uids = next((x for x in lines if x.startswith("Uid:")), "").split()[1:]
        state = next((x for x in lines if x.startswith("State:")), "").split()[1:2]
        yield int(entry), uids, (state[0] if state else "")


class TrustedRunner(PlainSandbox):
    """Runs *reference* code to compute reference answers: trusted, so no isolation needed,
    but with the same limits (a bug in a probe must not hang the grader)."""

    kind = "trusted"
    writer_uid = None
    memory_cgroup = False  # reference code: trusted, and not a student's run

    def describe(self) -> str:
        return "trusted subprocess (reference answers)"

    def command(self, argv, mounts, limits, cwd):
        return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]


# --- selection -----------------------------------------------------------------------------


def _works(sandbox: Sandbox) -> str | None:
    """None when ``sandbox`` can run a trivial command in a view with one mount, else why."""
    with tempfile.TemporaryDirectory(prefix="ag-probe-") as scratch:
        os.chmod(scratch, 0o755)
        (Path(scratch) / "probe").write_text("sandbox-ok\n")
        os.chmod(Path(scratch) / "probe", 0o644)
        mounts = [Mount(Path(scratch), GRADER)]
        limits = SandboxLimits(wall_s=20, cpu_s=10, memory_bytes=256 * MiB)
        probe = sandbox.view(mounts, GRADER + "/probe")
        result = sandbox.run(["/bin/cat", probe], mounts, limits, cwd="/")
        if "sandbox-ok" in result.output:
            return None
        return (result.error or result.output or f"exit status {result.returncode}").strip()[:300]


@functools.cache
def local_sandbox(allow_unisolated: bool = True) -> Sandbox:
    """The strongest local sandbox that works on this machine."""
    reasons = []
    bwrap = shutil.which("bwrap")
    candidate: Sandbox
    if bwrap:
        candidate = BwrapSandbox(bwrap)
        problem = _works(candidate)
        if problem is None:
            return candidate
        reasons.append(f"bubblewrap failed: {problem}")
    else:
        reasons.append("bubblewrap (bwrap) is not installed")
    if shutil.which("unshare") and shutil.which("setpriv"):
        candidate = UnshareSandbox()
        problem = _works(candidate)
        if problem is None:
            return candidate
        reasons.append(f"unshare failed: {problem}")
    if not allow_unisolated:
        raise RuntimeError("no isolating sandbox works here: " + "; ".join(reasons))
    return PlainSandbox("; ".join(reasons))


def make_sandbox(kind: str = "local", engine: str | None = None, image: str | None = None):
    """The sandbox for ``--sandbox KIND``: ``local`` (auto), ``bwrap``, ``unshare``, ``plain``
    or ``container`` (with ``engine`` docker/podman and ``image``)."""
    if kind == "local":
        return local_sandbox()
    if kind == "bwrap":
        bwrap = shutil.which("bwrap")
        if not bwrap:
            raise RuntimeError("bubblewrap (bwrap) is not installed")
        return BwrapSandbox(bwrap)
    if kind == "unshare":
        return UnshareSandbox()
    if kind == "plain":
        return PlainSandbox("chosen with --sandbox plain")
    if kind in ("container", "docker", "podman"):
        from autograder.engine.container import ContainerSandbox

        return ContainerSandbox(
            engine=engine or (kind if kind != "container" else None), image=image
        )
    raise ValueError(f"unknown sandbox {kind!r}: use local, container, bwrap, unshare or plain")
