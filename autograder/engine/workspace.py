"""A submission's workspace and the one view of it that every sandboxed run gets.

Every sandboxed process (compiling native code, running one unit's probes, running a student's
public tests) sees the same four mounts: the Python runtime, its site folder, the workspace
and a private grader folder. ``SandboxView`` is the only place that lists them, turns inside
paths into the paths a backend uses, and makes the run's environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sysconfig
from pathlib import Path

from autograder.engine.runtime import Runtime
from autograder.engine.sandbox import (
    GRADER,
    RUNTIME,
    SITE,
    WORK,
    Mount,
    Sandbox,
    SandboxLimits,
    describe_end,
)

# Every numeric library in the sandbox runs on one thread: grading is parallel across
# submissions, and a unit's timing must not depend on what else runs on the machine.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NEEDLE_NUM_THREADS": "1",
}


def write_tree(files: dict[str, bytes], root: Path) -> None:
    """Write ``files`` under ``root`` (folders 755, files 644: the sandbox user reads them)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
    for directory, _, _ in os.walk(root):
        os.chmod(directory, 0o755)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``, by its relative POSIX path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def tree_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


@dataclasses.dataclass
class SandboxView:
    """The file system a sandboxed run sees: runtime, site, workspace, grader folder."""

    sandbox: Sandbox
    runtime: Runtime
    workspace: Path
    grader_dir: Path
    writable_work: bool = False

    @property
    def mounts(self) -> list[Mount]:
        return [
            Mount(self.runtime.python_home, RUNTIME),
            Mount(self.runtime.site, SITE),
            Mount(self.workspace, WORK, writable=self.writable_work),
            Mount(self.grader_dir, GRADER),
        ]

    def path(self, inside: str) -> str:
        """The path the sandboxed process uses for ``inside`` (backends without mounts use
        host paths)."""
        return self.sandbox.view(self.mounts, inside)

    @property
    def python(self) -> str:
        return self.path(RUNTIME) + "/bin/python3"

    @property
    def work(self) -> str:
        return self.path(WORK)

    @property
    def site(self) -> str:
        return self.path(SITE)

    @property
    def grader(self) -> str:
        return self.path(GRADER)

    def python_argv(self, *arguments: str) -> list[str]:
        """An isolated interpreter (no user site, no environment, no bytecode written)."""
        return [self.python, "-I", "-S", "-B", *arguments]

    def environment(self, backend: str = "", **extra: str) -> dict[str, str]:
        """The environment student code runs with."""
        env = dict(SINGLE_THREAD_ENV)
        if backend:
            env["NEEDLE_BACKEND"] = backend
        env.update(extra)
        return env

    def run(self, argv: list[str], limits: SandboxLimits, record_prefix: bytes = b""):
        return self.sandbox.run(argv, self.mounts, limits, cwd=WORK, record_prefix=record_prefix)


# --- building native code ---------------------------------------------------------------


def build_commands(
    workspace: Path, build: str, custom: list | None, values: dict[str, str]
) -> list[list[str]]:
    """Compile commands (inside paths) for a workspace: ``custom`` (a probe module's BUILD,
    with ``{placeholders}``) or the default of the ``build`` kind."""
    if custom:
        return [[part.format(**values) for part in command] for command in custom]
    if build == "ext":  # one pybind11 module per src/*.cpp, next to it (hw0)
        return [
            ["c++", "-O2", "-std=c++17", "-shared", "-fPIC", "-w"]
            + [f"-I{values['python_include']}", f"-I{values['pybind11_include']}"]
            + [f"src/{source.name}", "-o", f"src/{source.stem}{values['ext_suffix']}"]
            for source in sorted((workspace / "src").glob("*.cpp"))
        ]
    if build == "cmake":  # the release's CMakeLists.txt (hw3+)
        return [
            ["cmake", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"]
            + [f"-DPython_EXECUTABLE={values['python']}"]
            + [f"-Dpybind11_DIR={values['pybind11_cmake_dir']}"],
            ["cmake", "--build", "build", "-j", "1"],
        ]
    return []


def build_workspace(
    workspace: Path,
    sandbox: Sandbox,
    runtime: Runtime,
    build: str,
    custom: list | None,
    limits: SandboxLimits,
    scratch: Path,
) -> tuple[bool, str]:
    """Compile a workspace's C++/CUDA inside ``sandbox`` (the workspace is writable for this
    step only): (succeeded, log). A compile error is feedback, not a grader failure."""
    view = SandboxView(sandbox, runtime, workspace, scratch, writable_work=True)
    values = {
        "python": view.python,
        "python_include": view.path(RUNTIME) + "/" + runtime.include_dir,
        "pybind11_include": f"{view.site}/{runtime.pybind11_include}",
        "pybind11_cmake_dir": f"{view.site}/{runtime.pybind11_cmake_dir}",
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX") or ".so",
        "work": view.work,
    }
    commands = build_commands(workspace, build, custom, values)
    if not commands:
        return True, ""
    limits = dataclasses.replace(
        limits,
        wall_s=max(limits.wall_s, 300),
        cpu_s=max(limits.cpu_s, 300),
        memory_bytes=max(limits.memory_bytes, 4096 * 1024 * 1024),
    )
    log = []
    for command in commands:
        result = view.run(command, limits)
        log.append("$ " + " ".join(command) + "\n" + result.output)
        if result.returncode != 0:
            log.append(describe_end(result, limits))
            return False, "\n".join(log)
    return True, "\n".join(log)
