"""The Python runtime that submissions run on: an interpreter, its standard library and numpy.

The grader's own virtual environment can never be shown to a submission: it holds the
reference needle (an editable install whose ``.pth`` file and import hook point at
``library/``), pytest, torch, and the autograder itself. Instead we stage a small runtime
under ``build/autograder/runtime/<key>/`` once per machine:

- ``python/``: the base interpreter of this venv (``sys.base_prefix``) with its standard library
  (no ``site-packages``, no test suite, no Tk/IDLE), its shared library and C headers;
- ``site/``: numpy (+ its bundled libraries) and pybind11's headers, nothing else.

Files are hard-linked from their origin when the file system allows it, copied otherwise.
A root grader runs its sandboxes as an unprivileged user, who must be able to reach the
runtime: when the build folder sits under a folder others cannot enter (a checkout in a
``mktemp -d`` folder, a 0750 home), the runtime is staged in a per-user folder everyone can
traverse instead, ``/var/tmp/needle-runtime-<uid>/<key>/`` (``shared_runtime_dir``).
The sandbox mounts ``python/`` at ``/opt/runtime`` and ``site/`` at ``/opt/site`` read-only and
starts ``python -I -S -B``, so no ``.pth`` file, ``sitecustomize`` or environment variable can
add anything to ``sys.path``. The same tree, with the shared libraries the interpreter needs,
is the root file system of the local container image (``rootfs()``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

import numpy

from autograder.engine.paths import BUILD_DIR

# Standard-library folders a probe never needs (and ~60 MB we need not stage).
SKIPPED_STDLIB = {
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__phello__",
}
SKIPPED_PREFIXES = ("config-",)  # the static libpython used to embed Python: 44 MB


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A staged runtime: ``python_home`` (an interpreter prefix) and ``site`` (numpy...)."""

    root: Path
    python_home: Path
    site: Path
    python_version: str
    numpy_version: str
    key: str

    def python(self, home: str | Path | None = None) -> str:
        """Path of the interpreter under ``home`` (default: where it is staged)."""
        return f"{home or self.python_home}/bin/python3"

    @property
    def include_dir(self) -> str:
        """Python's C headers, relative to ``python_home``."""
        return f"include/python{self.python_version}"

    @property
    def pybind11_include(self) -> str:
        """pybind11's C++ headers, relative to ``site`` ('' when pybind11 is not staged)."""
        return "pybind11/include" if (self.site / "pybind11" / "include").is_dir() else ""

    @property
    def pybind11_cmake_dir(self) -> str:
        """pybind11's CMake package config, relative to ``site``."""
        return "pybind11/share/cmake/pybind11"


def _runtime_key(extras: tuple[str, ...] = ()) -> str:
    parts = [
        *extras,
        sys.version,
        sys.base_prefix,
        numpy.__version__,
        str(Path(numpy.__file__).parent),
        _pybind11_include() or "",
        "stage-v3",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _pybind11_include() -> str | None:
    try:
        import pybind11
    except ImportError:
        return None
    # A staged runtime's site holds pybind11's headers only: a namespace package, no API.
    get_include = getattr(pybind11, "get_include", None)
    return get_include() if get_include is not None else None


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (same file system), else copy it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _stage_tree(source: Path, target: Path, skip=lambda path: False) -> None:
    for directory, subdirs, files in os.walk(source):
        here = Path(directory)
        subdirs[:] = [name for name in subdirs if not skip(here / name)]
        for name in files:
            path = here / name
            if skip(path) or path.suffix == ".pyc" and "__pycache__" not in path.parts:
                continue
            destination = target / path.relative_to(source)
            if path.is_symlink():
                destination.parent.mkdir(parents=True, exist_ok=True)
                if not destination.exists():
                    destination.symlink_to(os.readlink(path))
            else:
                _place(path, destination)


def _stage_module(name: str, site: Path) -> None:
    """Stage the installed top-level module or package ``name`` into ``site``."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot stage {name!r} into the sandbox runtime: not installed")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        _stage_tree(origin.parent, site / origin.parent.name, lambda p: p.name == "tests")
    else:
        _place(origin, site / origin.name)


def _stage(target: Path, extras: tuple[str, ...] = ()) -> None:
    prefix = Path(sys.base_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python_home = target / "python"
    stdlib = prefix / "lib" / f"python{version}"

    def skip_stdlib(path: Path) -> bool:
        if path.parent == stdlib:
            return path.name in SKIPPED_STDLIB or path.name.startswith(SKIPPED_PREFIXES)
        return path.parent.name == "lib-dynload" and path.name.startswith("_tkinter")

    executable = Path(os.path.realpath(sys.executable))
    if not executable.is_relative_to(prefix):  # e.g. a venv copied its interpreter
        executable = prefix / "bin" / f"python{version}"
    _place(executable, python_home / "bin" / f"python{version}")
    (python_home / "bin" / "python3").symlink_to(f"python{version}")
    for library in (prefix / "lib").glob("libpython*.so*"):
        _place(library, python_home / "lib" / library.name)
    _stage_tree(stdlib, python_home / "lib" / f"python{version}", skip_stdlib)
    include = Path(sysconfig.get_paths()["include"])
    if include.is_dir():
        _stage_tree(include, python_home / "include" / f"python{version}")

    site = target / "site"
    numpy_dir = Path(numpy.__file__).parent
    _stage_tree(numpy_dir, site / "numpy", lambda p: p.name == "tests")
    numpy_libs = numpy_dir.parent / "numpy.libs"
    if numpy_libs.is_dir():
        _stage_tree(numpy_libs, site / "numpy.libs")
    pybind11_include = _pybind11_include()
    if pybind11_include:  # headers + CMake config (the config finds the headers at ../../include)
        package = Path(pybind11_include).parent
        for part in ("include", "share"):
            if (package / part).is_dir():
                _stage_tree(package / part, site / "pybind11" / part)
    for name in extras:
        _stage_module(name, site)
    # Read and traverse for everyone: the sandbox may run as an unprivileged user.
    for directory, _, files in os.walk(target):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


# What ``autograder check`` adds to the runtime: pytest and its dependencies.
PYTEST_MODULES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")


def unreachable_ancestor(path: Path) -> Path | None:
    """The first existing folder on the way to ``path`` (itself included) that other users
    cannot traverse, if any. Folders that do not exist yet are not judged."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        try:
            mode = os.stat(folder).st_mode
        except FileNotFoundError:
            return None
        if not mode & 0o001:
            return folder
    return None


def _private_folder_ok(path: Path, uid: int) -> bool:
    """``path`` is a real folder (not a link) owned by ``uid`` that no one else can write:
    a hostile local user may have created it first, or planted files in it."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
        return False
    if not info.st_mode & 0o001:  # ours, but not traversable (a umask of 077): open it up
        os.chmod(path, 0o755)
    return True


def _public_parent_ok(path: Path) -> bool:
    """A folder to create ours in: reachable by everyone, owned by root or us, and either
    writable by no one else or sticky (no one can rename or delete what we put there)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid in (0, os.geteuid())
        and (not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX))
        and unreachable_ancestor(path) is None
    )


def shared_runtime_dir(parents: list[Path] | None = None) -> Path:
    """A folder of this user's that every user can traverse and no one else can write:
    ``/var/tmp/needle-runtime-<uid>`` (else under the temp folder). A folder of that name
    that someone else owns, that others can write, or that is a link is never trusted: a
    fresh folder with a random name is used instead (and removed at exit)."""
    uid = os.geteuid()
    if parents is None:
        parents = [Path("/var/tmp"), Path(tempfile.gettempdir()), Path("/tmp")]
    parents = [p for i, p in enumerate(parents) if p not in parents[:i] and _public_parent_ok(p)]
    for parent in parents:
        path = parent / f"needle-runtime-{uid}"
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        except OSError:
            continue
        if _private_folder_ok(path, uid):
            return path
    if not parents:
        raise RuntimeError(
            "no folder every user can reach to stage the sandbox runtime in (/var/tmp, /tmp)"
        )
    fresh = Path(tempfile.mkdtemp(prefix=f"needle-runtime-{uid}-", dir=parents[0]))
    os.chmod(fresh, 0o755)
    print(
        f"warning: {parents[0]}/needle-runtime-{uid} is not a private folder of this user; "
        f"staging the sandbox runtime in {fresh} for this run",
        file=sys.stderr,
    )
    import atexit

    atexit.register(shutil.rmtree, fresh, True)
    return fresh


def runtime_base(build_dir: Path = BUILD_DIR) -> Path:
    """Where runtimes are staged: ``build_dir/autograder/runtime``, unless the grader is root
    (its sandboxes run as an unprivileged user) and others cannot reach that folder."""
    base = Path(build_dir) / "autograder" / "runtime"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and unreachable_ancestor(base) is not None:
        return shared_runtime_dir()
    return base


def ensure_runtime(build_dir: Path = BUILD_DIR, extras: tuple[str, ...] = ()) -> Runtime:
    """Stage (once) and return the runtime for this machine's interpreter and numpy
    (plus the installed top-level modules ``extras``), in a folder the sandbox user can reach
    (``runtime_base``)."""
    key = _runtime_key(tuple(extras))
    root = runtime_base(build_dir) / key
    manifest = root / "runtime.json"
    if not manifest.exists():
        staging = root.with_name(f"{key}.staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _stage(staging, tuple(extras))
        info = {"python": sys.version, "numpy": numpy.__version__, "key": key}
        (staging / "runtime.json").write_text(json.dumps(info, indent=1))
        try:
            staging.rename(root)
        except OSError:  # another process staged it first
            shutil.rmtree(staging, ignore_errors=True)
        os.chmod(root.parent, 0o755)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Runtime(root, root / "python", root / "site", version, numpy.__version__, key)


# --- a root file system for the local container image -----------------------------------


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """Every shared library the given ELF files load, as ldd reports it (host paths)."""
    libraries: set[Path] = set()
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                libraries.add(Path(parts[2]))
            elif parts and parts[0].startswith("/"):
                libraries.add(Path(parts[0]))  # the dynamic loader itself
    return libraries


def rootfs_tar(runtime: Runtime, build_dir: Path = BUILD_DIR) -> Path:
    """A tar of a minimal root file system (runtime + the host libraries it needs).

    ``podman import`` turns it into an image without any registry: the container sandbox's
    local image on machines that cannot pull ``BASE_IMAGE``.
    """
    tar_path = build_dir / "autograder" / "rootfs" / f"needle-grader-{runtime.key}.tar"
    if tar_path.exists():
        return tar_path
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    elf_files = [runtime.python_home / "bin" / f"python{runtime.python_version}"]
    for base in (runtime.python_home, runtime.site):
        elf_files += [p for p in base.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    libraries = _shared_libraries(elf_files)
    partial = tar_path.with_suffix(f".partial-{os.getpid()}")

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)

    def add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
        import io

        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(partial, "w") as tar:
        for name in ("opt", "tmp", "work", "grader", "out", "etc", "proc", "dev", "usr"):
            add_dir(tar, name, 0o1777 if name == "tmp" else 0o755)
        add_text(
            tar, "etc/passwd", "root:x:0:0::/:/bin/false\ngrader:x:1000:1000::/tmp:/bin/false\n"
        )
        add_text(tar, "etc/group", "root:x:0:\ngrader:x:1000:\n")
        tar.add(runtime.python_home, "opt/runtime")
        tar.add(runtime.site, "opt/site")
        seen: set[str] = set()
        for library in sorted(libraries):
            # Keep the host path (the loader is looked up at its absolute path) and the
            # path the symlinks resolve to.
            in_real_dir = Path(os.path.realpath(library.parent)) / library.name
            for path in {in_real_dir, Path(os.path.realpath(library))}:
                name = str(path).lstrip("/")
                if name in seen:
                    continue
                seen.add(name)
                if path.is_symlink():
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                    tar.addfile(info)
                else:
                    tar.add(path, name)
        for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")):
            if Path("/" + link).is_symlink():
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
    partial.rename(tar_path)
    return tar_path
