"""The container sandbox: each run in a fresh docker/podman container of the grader image.

``--sandbox container`` runs every probe group (and every compile) in its own container::

    ENGINE run --rm --network none --read-only --user 1000:1000 --cap-drop ALL
        --security-opt no-new-privileges --pids-limit N --memory M --memory-swap M --cpus 1
        --ulimit nofile=... --ulimit fsize=... --ulimit cpu=... --ulimit core=0
        --tmpfs /tmp:size=... --mount type=bind,...,readonly  IMAGE  python -I -S -B ...

The image provides the interpreter at ``/opt/runtime/bin/python3`` and numpy (+ pybind11,
compilers for C++ homeworks) under ``/opt/site``; the workspace and the probe runner are
bind-mounted read-only. Two ways to get an image:

- ``autograder image build`` builds ``docker/grader.Dockerfile`` (``ARG BASE_IMAGE``; needs a
  registry to pull the base) and, when that fails, the local image below;
- ``autograder image build --local`` (and the automatic fallback when no image exists) imports
  a root file system made without any registry: Debian ``minbase`` from the Debian archive
  (``debootstrap``) with g++, make, CMake and binutils, plus this machine's staged runtime
  (``runtime.ensure_runtime``) at ``/opt/runtime`` and ``/opt/site``. Where debootstrap cannot
  run (not root, not installed, no archive) it falls back to the runtime alone
  (``runtime.rootfs_tar``), which has no compiler and grades Python homeworks only.

The OCI runtime is not trusted to work: before the first run, a probe container is started
with small memory and pids limits and reads them back from its cgroup. Podman's default
runtime is tried first, then the other installed ones (runc, crun; crun refuses hybrid
cgroup v1/v2 hosts), and only if none can apply cgroup limits, ``--cgroups=disabled``, in
which case memory is bounded by RLIMIT_AS alone (``describe()`` says so). On podman hosts
without systemd ``--cgroup-manager cgroupfs`` is added. ``runtime=`` (or
``$NEEDLE_CONTAINER_RUNTIME``) forces one runtime. Resource limits are always given
explicitly (``--ulimit``): some hosts refuse the engine's defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

from autograder.engine.paths import BUILD_DIR, REPO_ROOT
from autograder.engine.runtime import Runtime, ensure_runtime, rootfs_tar
from autograder.engine.sandbox import (
    RUNTIME,
    SANDBOX_UID,
    SITE,
    MiB,
    Sandbox,
    SandboxLimits,
)

IMAGE_REPOSITORY = "localhost/needle-grader"
DOCKERFILE = REPO_ROOT / "docker" / "grader.Dockerfile"
# What the local image needs to compile the C++ homeworks (hw0: c++ + pybind11; hw3+: CMake).
TOOLCHAIN_PACKAGES = ("g++", "make", "cmake", "ninja-build", "binutils", "libc6-dev")
DEBIAN_MIRROR = os.environ.get("NEEDLE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PROBE_MEMORY = 128 * MiB
PROBE_PIDS = 32


class ContainerUnavailable(RuntimeError):
    """No container engine works here; the message says what was tried."""


def _is_podman(engine: str) -> bool:
    return Path(engine).name == "podman"


def engine_global_options(engine: str) -> list[str]:
    """Options podman needs on hosts without systemd (the runtime is chosen by ``probe``)."""
    if _is_podman(engine) and not Path("/run/systemd/system").is_dir():
        return ["--cgroup-manager", "cgroupfs"]
    return []


def detect_engine(preferred: str | None = None) -> str:
    """The path of a working engine (``preferred`` first), or ContainerUnavailable."""
    names = [preferred] if preferred else ["podman", "docker"]
    problems = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            problems.append(f"{name}: not installed")
            continue
        try:
            result = subprocess.run(
                [path, *engine_global_options(path), "info", "--format", "{{json .}}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            problems.append(f"{name}: {error}")
            continue
        if result.returncode == 0:
            _INFO[path] = result.stdout
            return path
        problems.append(f"{name}: {(result.stderr or result.stdout).strip()[:200]}")
    raise ContainerUnavailable("no container engine works here: " + "; ".join(problems))


_INFO: dict[str, str] = {}


def engine_info(engine: str) -> dict:
    """What the engine says about itself: default runtime, cgroup version, rootless."""
    try:
        info = json.loads(_INFO.get(engine) or "{}")
    except ValueError:
        info = {}
    if _is_podman(engine):
        host = info.get("host", {})
        return {
            "runtime": host.get("ociRuntime", {}).get("name", ""),
            "cgroups": host.get("cgroupVersion", ""),
            "rootless": bool(host.get("security", {}).get("rootless", os.geteuid() != 0)),
        }
    return {
        "runtime": info.get("DefaultRuntime", ""),
        "cgroups": "v" + str(info.get("CgroupVersion", "?")),
        "rootless": any("rootless" in o for o in info.get("SecurityOptions", []) or []),
    }


def _engine(engine: str, *args: str, timeout: float = 600, **kwargs):
    return subprocess.run(
        [engine, *engine_global_options(engine), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def image_id(engine: str, image: str) -> str | None:
    result = _engine(engine, "image", "inspect", "--format", "{{.Id}}", image, timeout=60)
    return result.stdout.strip() or None if result.returncode == 0 else None


# --- the OCI runtime: which one works here, and what it enforces ---------------------------


@dataclasses.dataclass(frozen=True)
class RuntimeChoice:
    """How to start containers here: ``runtime`` (None: the engine's default), whether the
    engine applies cgroup limits (``cgroups``) and whether the probe read them back
    (``enforced``: memory and pids limits hold)."""

    runtime: str | None
    cgroups: bool = True
    enforced: bool = True
    note: str = ""

    def global_options(self, engine: str) -> list[str]:
        options = engine_global_options(engine)
        if self.runtime and _is_podman(engine):
            options += ["--runtime", self.runtime]
        return options

    def run_options(self, engine: str) -> list[str]:
        options = []
        if self.runtime and not _is_podman(engine):
            options += ["--runtime", self.runtime]  # docker: a runtime the daemon knows
        if not self.cgroups:
            options += ["--cgroups=disabled"]
        return options

    def describe(self) -> str:
        name = self.runtime or "default runtime"
        if self.enforced:
            return f"{name}, memory/pids limits by cgroups"
        if self.cgroups:
            return f"{name}, cgroup limits NOT applied by this host (memory: RLIMIT_AS only)"
        return f"{name}, cgroups disabled (memory: RLIMIT_AS only, processes: RLIMIT_NPROC)"


_PROBE_SCRIPT = (
    "def read(*paths):\n"
    "    for path in paths:\n"
    "        try:\n"
    "            return open(path).read().strip()\n"
    "        except OSError:\n"
    "            pass\n"
    "    return '-'\n"
    "print('needle-probe',"
    " read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'),"
    " read('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'))\n"
)

_CHOICES: dict[tuple[str, str, str | None], RuntimeChoice] = {}


def _limit_options(limits: SandboxLimits, choice: RuntimeChoice) -> list[str]:
    options = []
    if choice.cgroups:
        memory = f"{limits.memory_bytes + 256 * MiB}b"
        options += ["--pids-limit", str(limits.processes)]
        options += ["--memory", memory, "--memory-swap", memory, "--cpus", "1"]
    options += ["--ulimit", f"nofile={limits.open_files}:{limits.open_files}"]
    options += ["--ulimit", f"fsize={limits.file_size_bytes}:{limits.file_size_bytes}"]
    options += ["--ulimit", f"cpu={limits.cpu_s + 2}:{limits.cpu_s + 2}"]
    nproc = _nproc_ulimit(limits)
    options += ["--ulimit", "core=0:0", "--ulimit", f"nproc={nproc}:{nproc}"]
    return options


def _probe_once(engine: str, image: str, choice: RuntimeChoice) -> tuple[bool, bool, str]:
    """(started, limits read back, detail) for one way of starting containers."""
    limits = SandboxLimits(memory_bytes=PROBE_MEMORY, processes=PROBE_PIDS)
    command = [engine, *choice.global_options(engine), "run", "--rm", "--network", "none"]
    command += ["--read-only", "--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--cap-drop", "ALL"]
    command += choice.run_options(engine) + _limit_options(limits, choice)
    command += [image, f"{RUNTIME}/bin/python3", "-I", "-S", "-B", "-c", _PROBE_SCRIPT]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, False, str(error)
    words = result.stdout.split()
    if result.returncode != 0 or "needle-probe" not in words:
        return False, False, (result.stderr or result.stdout).strip()[-300:]
    memory, pids = words[words.index("needle-probe") + 1 :][:2]
    expected_memory = str(PROBE_MEMORY + 256 * MiB)
    enforced = memory == expected_memory and pids == str(PROBE_PIDS)
    return True, enforced, f"memory limit {memory}, pids limit {pids}"


def probe(engine: str, image: str, runtime: str | None = None) -> RuntimeChoice:
    """The first way of starting containers that works here, preferring one whose cgroup
    memory and pids limits the probe container reads back (cached per engine and image)."""
    runtime = runtime or os.environ.get("NEEDLE_CONTAINER_RUNTIME") or None
    key = (engine, image, runtime)
    if key in _CHOICES:
        return _CHOICES[key]
    candidates: list[str | None] = [runtime]  # None: the engine's default
    if not runtime and _is_podman(engine):
        default = engine_info(engine).get("runtime") or None
        candidates = [default] + [
            name for name in ("runc", "crun") if name != default and shutil.which(name)
        ]
    attempts = [RuntimeChoice(name) for name in candidates]
    if _is_podman(engine):  # last resort: no cgroups at all (limits by rlimits only)
        attempts += [RuntimeChoice(name, cgroups=False, enforced=False) for name in candidates]
    problems = []
    started = None
    for choice in attempts:
        ok, enforced, detail = _probe_once(engine, image, choice)
        label = (choice.runtime or "default") + ("" if choice.cgroups else " --cgroups=disabled")
        if not ok:
            problems.append(f"{label}: {detail}")
            continue
        if enforced or not choice.cgroups:
            started = dataclasses.replace(choice, note=f"{label}: {detail}")
            break
        problems.append(f"{label}: started, but {detail} (not enforced)")
        started = started or dataclasses.replace(choice, enforced=False, note=detail)
    if started is None:
        raise ContainerUnavailable(
            f"{Path(engine).name} cannot start a container of {image}: " + "; ".join(problems)
        )
    if problems:
        started = dataclasses.replace(started, note=started.note + " (" + "; ".join(problems) + ")")
    _CHOICES[key] = started
    return started


# --- images -------------------------------------------------------------------------------


def local_image_tag(runtime: Runtime, toolchain: bool = True) -> str:
    suffix = f"-{_toolchain_key()}" if toolchain else "-python"
    return f"{IMAGE_REPOSITORY}:local-{runtime.key}{suffix}"


def _suite() -> str:
    """The Debian release of the local image: the host's when it is Debian, else bookworm
    (override: $NEEDLE_ROOTFS_SUITE)."""
    if os.environ.get("NEEDLE_ROOTFS_SUITE"):
        return os.environ["NEEDLE_ROOTFS_SUITE"]
    try:
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError:
        return "bookworm"
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    return codename if fields.get("ID") == "debian" and codename else "bookworm"


def _toolchain_key() -> str:
    parts = [_suite(), DEBIAN_MIRROR, *TOOLCHAIN_PACKAGES, "toolchain-v1"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _debootstrap() -> str | None:
    return shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)),
        None,
    )


def toolchain_base_tar(build_dir: Path = BUILD_DIR, log=print) -> Path:
    """A tar of Debian minbase + the C++ toolchain, made once with debootstrap (root only).

    Raises ContainerUnavailable with the reason when it cannot be made here."""
    tar_path = build_dir / "autograder" / "rootfs" / f"debian-{_suite()}-{_toolchain_key()}.tar"
    if tar_path.exists():
        return tar_path
    debootstrap = _debootstrap()
    if debootstrap is None:
        raise ContainerUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ContainerUnavailable("debootstrap needs root")
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="needle-rootfs-", dir=tar_path.parent) as scratch:
        root = Path(scratch) / "root"
        command = [debootstrap, "--variant=minbase", "--include=" + ",".join(TOOLCHAIN_PACKAGES)]
        command += [_suite(), str(root), DEBIAN_MIRROR]
        log(f"image: debootstrap {_suite()} minbase + {' '.join(TOOLCHAIN_PACKAGES)} (once)")
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise ContainerUnavailable(
                "debootstrap failed: " + (result.stderr or result.stdout).strip()[-800:]
            )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc"):
            for path in (root / junk).glob("*"):
                if path.is_file() or path.is_symlink():
                    path.unlink()
                elif path.is_dir() and path.name != "partial":
                    shutil.rmtree(path, ignore_errors=True)
        for name in ("opt", "work", "grader", "out"):
            (root / name).mkdir(exist_ok=True)
        with open(root / "etc" / "passwd", "a") as passwd:
            passwd.write(f"grader:x:{SANDBOX_UID}:{SANDBOX_UID}::/tmp:/usr/sbin/nologin\n")
        with open(root / "etc" / "group", "a") as group:
            group.write(f"grader:x:{SANDBOX_UID}:\n")
        partial = tar_path.with_suffix(f".partial-{os.getpid()}")
        tar = ["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*"]
        tar += ["--exclude=./sys/*", "-C", str(root), "-cf", str(partial), "."]
        result = subprocess.run(tar, capture_output=True, text=True)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ContainerUnavailable("tar of the root file system failed: " + result.stderr)
        partial.rename(tar_path)
    return tar_path


def toolchain_rootfs_tar(runtime: Runtime, build_dir: Path = BUILD_DIR, log=print) -> Path:
    """The local image's root file system: the toolchain base plus the staged runtime at
    ``/opt/runtime`` and ``/opt/site`` and any host library the runtime loads that the base
    lacks (same paths as on the host)."""
    base = toolchain_base_tar(build_dir, log)
    tar_path = base.with_name(f"needle-grader-{runtime.key}-{_toolchain_key()}.tar")
    if tar_path.exists():
        return tar_path
    from autograder.engine.runtime import _shared_libraries

    elf_files = [runtime.python_home / "bin" / f"python{runtime.python_version}"]
    for folder in (runtime.python_home, runtime.site):
        elf_files += [p for p in folder.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    partial = tar_path.with_suffix(f".partial-{os.getpid()}")
    with tarfile.open(base) as source:
        members = source.getmembers()
    names = {member.name.removeprefix("./").rstrip("/") for member in members}

    def inside(path: Path) -> str:
        # The base merges /usr (/lib -> usr/lib): name files by their /usr spelling.
        name = str(path).lstrip("/")
        head = name.split("/", 1)[0]
        if head in ("lib", "lib64", "bin", "sbin") and f"usr/{head}" in names:
            name = "usr/" + name
        return name

    runtime_root = Path(os.path.realpath(runtime.root))
    extra: dict[str, Path] = {}  # host libraries the runtime loads that the base lacks
    for library in sorted(_shared_libraries(elf_files)):
        real = Path(os.path.realpath(library))
        if real.is_relative_to(runtime_root):
            continue  # numpy's own libraries: already under /opt/site
        name = inside(Path(os.path.realpath(library.parent)) / library.name)
        if name not in names and inside(real) not in names:
            extra[name] = real  # at the host path: RUNPATHs name it (e.g. libpython)
    # Every folder above an added library must be traversable by the sandbox user
    # (e.g. /root, 0700 in Debian, when the interpreter's RUNPATH is /root/.pyenv/...).
    parents = {str(parent) for name in extra for parent in Path(name).parents}
    with tarfile.open(base) as source, tarfile.open(partial, "w") as tar:
        for member in source:
            if member.isdir() and member.name.removeprefix("./").rstrip("/") in parents:
                member.mode |= 0o755
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
        tar.add(runtime.python_home, "opt/runtime")
        tar.add(runtime.site, "opt/site")
        for name in sorted(parents - names - {"."}):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, real in sorted(extra.items()):
            tar.add(real, name)
    partial.rename(tar_path)
    return tar_path


def build_local_image(engine: str, build_dir: Path = BUILD_DIR, log=print) -> str:
    """Import the local image (toolchain when debootstrap works, else Python only)."""
    runtime = ensure_runtime(build_dir)
    tag = local_image_tag(runtime, toolchain=True)
    if image_id(engine, tag):
        return tag
    try:
        tar = toolchain_rootfs_tar(runtime, build_dir, log)
    except (ContainerUnavailable, OSError, subprocess.TimeoutExpired) as error:
        log(f"image: no toolchain image ({error}); the local image has NO C++ compiler")
        tag = local_image_tag(runtime, toolchain=False)
        if image_id(engine, tag):
            return tag
        tar = rootfs_tar(runtime, build_dir)
    log(f"image: importing {tar.name} as {tag}")
    change = ["--change", "ENV=PATH=/usr/local/bin:/usr/bin:/bin", "--change", "WORKDIR=/work"]
    result = _engine(engine, "import", *change, str(tar), tag, timeout=1200)
    if result.returncode != 0:
        raise ContainerUnavailable(f"importing {tar.name} failed: {result.stderr[-500:]}")
    return tag


def build_image(
    engine: str | None = None,
    base_image: str | None = None,
    local: bool = False,
    build_dir: Path = BUILD_DIR,
    fallback: bool = False,
    log=print,
) -> str:
    """Build the grader image; returns its tag.

    ``local``: import a root file system made without a registry (see the module doc).
    Otherwise build ``docker/grader.Dockerfile`` (``BASE_IMAGE`` may be overridden); with
    ``fallback``, build the local image when that fails (no registry)."""
    engine = detect_engine(engine)
    if local:
        return build_local_image(engine, build_dir, log)
    tag = f"{IMAGE_REPOSITORY}:latest"
    import numpy

    args = ["build", "-f", str(DOCKERFILE), "-t", tag]
    args += ["--build-arg", f"NUMPY_VERSION={numpy.__version__}"]
    args += ["--build-arg", f"PYTHON_VERSION={sys.version_info.major}.{sys.version_info.minor}"]
    if base_image:
        args += ["--build-arg", f"BASE_IMAGE={base_image}"]
    log(f"image: building {DOCKERFILE.relative_to(REPO_ROOT)} (pulls its base from a registry)")
    runtimes: list[str | None] = [None]
    if _is_podman(engine):  # RUN steps need an OCI runtime that works here
        runtimes += [name for name in ("runc", "crun") if shutil.which(name)]
    output = ""
    for runtime in runtimes:
        extra = ["--runtime", runtime] if runtime else []
        result = _engine(engine, *args, *extra, str(DOCKERFILE.parent), timeout=3600)
        if result.returncode == 0:
            return tag
        output = (result.stderr or result.stdout)[-2000:]
        if "OCI" not in output and "runtime" not in output:
            break  # not a runtime problem (no registry, a failing step): do not retry
    if fallback:
        log(f"image: building {DOCKERFILE.name} failed (no registry?): {output.strip()[-300:]}")
        log("image: building the local image instead (no registry needed)")
        return build_local_image(engine, build_dir, log)
    raise ContainerUnavailable(
        f"building {DOCKERFILE.name} failed (no registry? try --local):\n" + output
    )


def _nproc_ulimit(limits: SandboxLimits) -> int:
    """An explicit nproc ulimit (engines' defaults can exceed what the host allows and then
    the container does not start). RLIMIT_NPROC counts all processes of the container user
    on the host, across concurrent containers, so it is only a backstop: the per-container
    pids cgroup (--pids-limit) is the real bound."""
    return max(1024, 16 * limits.processes)


class ContainerSandbox(Sandbox):
    """One container per run, from the grader image."""

    kind = "container"
    writer_uid = SANDBOX_UID

    def __init__(
        self, engine: str | None = None, image: str | None = None, runtime: str | None = None
    ):
        self.engine = detect_engine(engine)
        if image is None:
            ensured = ensure_runtime()
            candidates = (
                f"{IMAGE_REPOSITORY}:latest",
                local_image_tag(ensured, toolchain=True),
                local_image_tag(ensured, toolchain=False),
            )
            image = next((i for i in candidates if image_id(self.engine, i)), None)
            if image is None:
                log = lambda text: print(text, file=sys.stderr)  # noqa: E731
                image = build_local_image(self.engine, log=log)
        self.image = image
        self.image_id = image_id(self.engine, image)
        if self.image_id is None:
            raise ContainerUnavailable(f"image {image} not found; run `autograder image build`")
        self.choice = probe(self.engine, image, runtime)

    def describe(self) -> str:
        return (
            f"{Path(self.engine).name} container {self.image} (no network, read-only root, "
            f"non-root user, no capabilities, {self.choice.describe()})"
        )

    @property
    def memory_enforcement(self) -> str:
        """The engine's cgroup bounds the whole container when the probe saw it hold."""
        return "cgroup" if self.choice.enforced else "rlimit-only"

    def rlimits(self, limits: SandboxLimits) -> dict:
        # RLIMIT_NPROC counts every process of uid 1000 on the host, across containers;
        # the per-container pids cgroup (--pids-limit) bounds processes instead.
        return {**limits.rlimits(), "processes": None}

    def command(self, argv, mounts, limits, cwd):
        name = f"needle-grader-{uuid.uuid4().hex[:12]}"
        command = [self.engine, *self.choice.global_options(self.engine), "run", "--rm"]
        command += ["--name", name, "--network", "none", "--read-only"]
        command += ["--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--cap-drop", "ALL"]
        command += ["--security-opt", "no-new-privileges"]
        command += self.choice.run_options(self.engine) + _limit_options(limits, self.choice)
        command += ["--tmpfs", f"/tmp:rw,size={limits.tmp_bytes},mode=1777"]
        command += ["--env", "HOME=/tmp", "--env", "LANG=C.UTF-8", "--workdir", cwd]
        for mount in mounts:
            if mount.target in (RUNTIME, SITE):
                continue  # the image brings its own interpreter and numpy
            spec = f"type=bind,source={mount.source},target={mount.target}"
            command += ["--mount", spec if mount.writable else spec + ",readonly"]
        command += [self.image, *argv]
        return command

    def cleanup(self, process: subprocess.Popen) -> None:
        """Killing the client does not stop a container: remove it by name."""
        args = getattr(process, "args", [])
        if "--name" in args:
            name = args[args.index("--name") + 1]
            subprocess.run(
                [self.engine, *self.choice.global_options(self.engine), "rm", "-f", name],
                capture_output=True,
                timeout=120,
            )
