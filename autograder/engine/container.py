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
  registry to pull the base);
- ``autograder image build --local`` (and the automatic fallback) imports a root file system
  made from this machine's runtime (``runtime.rootfs_tar``): no registry, no network. It has
  no compiler, so it grades Python homeworks only.

Engine: ``--engine docker|podman`` or the first of them that answers. On hosts without systemd
podman needs ``--cgroup-manager cgroupfs``; where crun is missing, ``--runtime runc`` (both are
added automatically). Resource limits are always given explicitly (``--ulimit``): some hosts
refuse the engine's defaults.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from autograder.engine.paths import BUILD_DIR, REPO_ROOT
from autograder.engine.runtime import ensure_runtime, rootfs_tar
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


class ContainerUnavailable(RuntimeError):
    """No container engine works here; the message says what was tried."""


def engine_global_options(engine: str) -> list[str]:
    """Options podman needs on hosts without systemd or crun."""
    if Path(engine).name != "podman":
        return []
    options = []
    if not shutil.which("crun") and shutil.which("runc"):
        options += ["--runtime", "runc"]
    if not Path("/run/systemd/system").is_dir():
        options += ["--cgroup-manager", "cgroupfs"]
    return options


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
            return path
        problems.append(f"{name}: {(result.stderr or result.stdout).strip()[:200]}")
    raise ContainerUnavailable("no container engine works here: " + "; ".join(problems))


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


def build_image(
    engine: str | None = None,
    base_image: str | None = None,
    local: bool = False,
    build_dir: Path = BUILD_DIR,
) -> str:
    """Build the grader image; returns its tag.

    ``local``: import a root file system made from this machine's runtime (offline).
    Otherwise build ``docker/grader.Dockerfile`` (``BASE_IMAGE`` may be overridden)."""
    engine = detect_engine(engine)
    runtime = ensure_runtime(build_dir)
    if local:
        tag = f"{IMAGE_REPOSITORY}:local-{runtime.key}"
        if image_id(engine, tag):
            return tag
        tar = rootfs_tar(runtime, build_dir)
        result = _engine(engine, "import", str(tar), tag, timeout=1200)
        if result.returncode != 0:
            raise ContainerUnavailable(f"importing {tar.name} failed: {result.stderr[-500:]}")
        return tag
    tag = f"{IMAGE_REPOSITORY}:latest"
    import numpy

    args = ["build", "-f", str(DOCKERFILE), "-t", tag]
    args += ["--build-arg", f"NUMPY_VERSION={numpy.__version__}"]
    if base_image:
        args += ["--build-arg", f"BASE_IMAGE={base_image}"]
    result = _engine(engine, *args, str(DOCKERFILE.parent), timeout=3600)
    if result.returncode != 0:
        raise ContainerUnavailable(
            f"building {DOCKERFILE.name} failed (no registry? try --local):\n"
            + (result.stderr or result.stdout)[-2000:]
        )
    return tag


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

    def __init__(self, engine: str | None = None, image: str | None = None):
        self.engine = detect_engine(engine)
        if image is None:
            local = f"{IMAGE_REPOSITORY}:local-{ensure_runtime().key}"
            built = f"{IMAGE_REPOSITORY}:latest"
            image = next((i for i in (built, local) if image_id(self.engine, i)), None)
            image = image or build_image(Path(self.engine).name, local=True)
        self.image = image
        self.image_id = image_id(self.engine, image)
        if self.image_id is None:
            raise ContainerUnavailable(f"image {image} not found; run `autograder image build`")

    def describe(self) -> str:
        return (
            f"{Path(self.engine).name} container {self.image} (no network, read-only root, "
            f"non-root user, no capabilities, memory/pids/CPU limits)"
        )

    def rlimits(self, limits: SandboxLimits) -> dict:
        # RLIMIT_NPROC counts every process of uid 1000 on the host, across containers;
        # the per-container pids cgroup (--pids-limit) bounds processes instead.
        return {**limits.rlimits(), "processes": None}

    def command(self, argv, mounts, limits, cwd):
        name = f"needle-grader-{uuid.uuid4().hex[:12]}"
        memory = f"{limits.memory_bytes + 256 * MiB}b"
        command = [self.engine, *engine_global_options(self.engine), "run", "--rm"]
        command += ["--name", name, "--network", "none", "--read-only"]
        command += ["--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--cap-drop", "ALL"]
        command += ["--security-opt", "no-new-privileges", "--pids-limit", str(limits.processes)]
        command += ["--memory", memory, "--memory-swap", memory, "--cpus", "1"]
        command += ["--ulimit", f"nofile={limits.open_files}:{limits.open_files}"]
        command += ["--ulimit", f"fsize={limits.file_size_bytes}:{limits.file_size_bytes}"]
        command += ["--ulimit", f"cpu={limits.cpu_s + 2}:{limits.cpu_s + 2}"]
        nproc = _nproc_ulimit(limits)
        command += ["--ulimit", "core=0:0", "--ulimit", f"nproc={nproc}:{nproc}"]
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
            _engine(self.engine, "rm", "-f", name, timeout=120)
