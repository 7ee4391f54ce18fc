"""``autograder export HW --gradescope``: the Gradescope autograder zip.

The zip holds (docs/grading.md#gradescope-directory-contract):

- ``setup.sh`` and ``run_autograder`` at its root (Gradescope's contract);
- ``autograder/engine/``: every file of the engine package, found by walking the folder (no
  hand-kept list can forget one), plus the empty ``autograder/__init__.py``;
- ``bundle/``: the homework's grading bundle, the same one local grading uses;
- ``wheels/``: numpy and pybind11 wheels for each target Python (when they could be
  fetched at export time), so ``setup.sh`` installs them without an index.

``setup.sh`` (root, once, at image build) installs the system packages it lacks, makes a
virtual environment ``/autograder/venv`` with the base image's ``python3`` and installs numpy
and pybind11 there — never into the system Python, which Debian 12 and Ubuntu 24.04 refuse
(PEP 668, "externally managed"). The versions are chosen per Python minor version at export
time (:func:`resolve_pins`): the grader's own numpy where it has wheels for that Python,
else the newest release that does (Gradescope's Ubuntu 22.04 base has Python 3.10, which
numpy 2.3 and later no longer support). ``run_autograder`` runs the engine with the venv's
interpreter, and ``ensure_runtime`` stages that interpreter and its numpy for the sandbox.

What this path isolates on Gradescope, and what not. Gradescope runs the student's code
in the grader's own container, as root, with the network as the assignment's settings
allow. ``run_autograder`` uses bubblewrap or ``unshare`` when the container allows
namespaces (then as in local grading: no network, read-only view, private ``/tmp``);
otherwise (the usual case in an unprivileged container) a separate process as the
unprivileged user ``student`` with resource limits. That fallback isolates by file
permissions only: the reference answers, probes and grader (``/autograder/source``,
root-only) and the results folder (0700 while it runs) are out of its reach, its network
is denied by an owner-match firewall rule where the container allows (else
``extra_data.gradescope.network`` says it is not), every process of ``student`` is killed
until none is left before results.json is written, and the score is never read from
anything the student process wrote. It does **not** isolate the rest of the
(world-readable) file system, the submission and workspace of the same run, or shared
``/tmp`` and ``/dev/shm``; the wall-clock limit of the whole run is Gradescope's. The venv,
the wheels and the runtime hold no secret.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from autograder.authoring.bundle import build_bundle
from autograder.engine.gradescope import BUNDLE_FOLDER
from autograder.engine.paths import BUILD_DIR, ENGINE_DIR

# Gradescope's base images: Ubuntu 22.04 (Python 3.10) and Ubuntu 24.04 (Python 3.12).
GRADESCOPE_PYTHONS = ("3.10", "3.12")
# The oldest glibc of those images (Ubuntu 22.04: 2.35); wheels must not need a newer one.
MANYLINUX_GLIBC = 35
# What setup.sh installs with apt when missing. docker/gradescope/make-rootfs.sh includes
# the same list in the test image.
SETUP_PACKAGES = (
    "python3 python3-venv python3-dev bubblewrap util-linux procps g++ make cmake".split()
)
# When PyPI cannot be asked at export time: numpy's supported range per Python minor
# version, from numpy's release notes (first release with wheels, last release with wheels).
NUMPY_FIRST = {"3.11": "1.23.2", "3.12": "1.26.0", "3.13": "2.1.0"}
NUMPY_LAST = {"3.9": "2.0.2", "3.10": "2.2.6"}
PIP_TIMEOUT_S = 300

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
SOURCE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${GRADESCOPE_ROOT:-/autograder}"
VENV="$ROOT/venv"
missing=""
for package in {packages}; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \\
    || missing="$missing $package"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Not the system Python: Debian 12 / Ubuntu 24.04 refuse pip there (PEP 668).
PY="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PY" in
{cases}
  *) echo "setup.sh: no pinned numpy for Python $PY (the export pinned {pythons});" \\
       "installing the newest one not above the grader's" >&2
     REQUIREMENTS=("numpy<={numpy}" "pybind11<={pybind11}") ;;
esac
python3 -m venv "$VENV"
if ! "$VENV/bin/python" -m pip install --no-cache-dir -q --no-index \\
      --find-links "$SOURCE/wheels" "${REQUIREMENTS[@]}" 2>/dev/null; then
  echo "setup.sh: no shipped wheels for Python $PY; installing from the package index" >&2
  "$VENV/bin/python" -m pip install --no-cache-dir -q "${REQUIREMENTS[@]}"
fi
# The user student code runs as; nothing of the grader is readable by it.
id student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin student
chown -R root:root "$SOURCE"
chmod -R go-rwx "$SOURCE"
# The runtime submissions run on (interpreter + numpy), readable by everyone.
mkdir -p /opt/needle-grader && chmod 755 /opt/needle-grader
cd "$SOURCE"
NEEDLE_BUILD_DIR=/opt/needle-grader "$VENV/bin/python" -c \\
  "from autograder.engine.runtime import ensure_runtime; print(ensure_runtime().root)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this, as root, for every submission; it must leave results.json behind.
set -uo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
export NEEDLE_BUILD_DIR="${NEEDLE_BUILD_DIR:-/opt/needle-grader}"
if id student >/dev/null 2>&1; then
  export NEEDLE_SANDBOX_UID="$(id -u student)"
fi
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -x "$ROOT/venv/bin/python" ]; then PYTHON="$ROOT/venv/bin/python"; fi
fi
cd "$ROOT/source"
exec $PYTHON -c "from autograder.engine.gradescope import main; raise SystemExit(main())"
"""


def engine_files() -> dict[str, bytes]:
    """The engine package as it ships: every ``.py`` file under ``autograder/engine``."""
    files = {"autograder/__init__.py": b'"""needle-course autograder (the engine only)."""\n'}
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(ENGINE_DIR.parent.parent).as_posix()
        files[relative] = path.read_bytes()
    return files


# --- numpy / pybind11 for the base image's Python ---------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
        if digits != part:
            break
    return tuple(parts)


def pip_target(python: str) -> list[str]:
    """pip options selecting wheels for CPython ``python`` ("3.10") on manylinux x86_64."""
    tag = "cp" + python.replace(".", "")
    options = ["--only-binary=:all:", "--python-version", python]
    options += ["--implementation", "cp", "--abi", tag]
    for minor in range(MANYLINUX_GLIBC, 16, -1):
        options += ["--platform", f"manylinux_2_{minor}_x86_64"]
    return options + ["--platform", "manylinux2014_x86_64"]


def fallback_pins(python: str, numpy_version: str, pybind11_version: str) -> dict[str, str]:
    """Versions for ``python`` from the table above, without asking PyPI."""
    numpy_pin = numpy_version
    if python in NUMPY_LAST and _version(numpy_pin) > _version(NUMPY_LAST[python]):
        numpy_pin = NUMPY_LAST[python]
    if python in NUMPY_FIRST and _version(numpy_pin) < _version(NUMPY_FIRST[python]):
        numpy_pin = NUMPY_FIRST[python]
    return {"numpy": numpy_pin, "pybind11": pybind11_version}


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", *args, "--retries", "1", "--timeout", "30"]
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def _wheel_folder(python: str) -> Path:
    return BUILD_DIR / "gradescope" / "wheels" / ("cp" + python.replace(".", ""))


def resolve_pins(
    python: str,
    numpy_version: str,
    pybind11_version: str,
    timeout: float = PIP_TIMEOUT_S,
    cache: bool = True,
) -> tuple[dict[str, str], str]:
    """The newest numpy and pybind11 not above the grader's own that have wheels for CPython
    ``python`` on manylinux x86_64, as pip resolves them (``pip install --dry-run``, from
    the index's metadata: no wheel is downloaded). Returns (pins, "pip" | "table: why").

    A resolution is remembered under build/gradescope/wheels/ per (Python, numpy, pybind11)
    unless ``cache`` is false: later exports need no index."""
    remembered = (
        _wheel_folder(python) / f"pins-numpy{numpy_version}-pybind11{pybind11_version}.json"
    )
    if cache and remembered.exists():
        return json.loads(remembered.read_text()), "pip"
    wanted = [f"numpy<={numpy_version}", f"pybind11<={pybind11_version}"]
    with tempfile.TemporaryDirectory(prefix="gradescope-pins-") as target:
        args = ["install", "--dry-run", "--quiet", "--report", "-", "--ignore-installed"]
        args += ["--no-deps", "--target", target, *pip_target(python), *wanted]
        try:
            done = _pip(args, timeout)
            report = json.loads(done.stdout) if done.returncode == 0 else None
        except (subprocess.TimeoutExpired, OSError, ValueError) as error:
            done, report = None, None
            why = f"{type(error).__name__}: {error}"
    if report is not None:
        pins = {
            item["metadata"]["name"].lower(): item["metadata"]["version"]
            for item in report["install"]
        }
        if set(pins) == {"numpy", "pybind11"}:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            remembered.write_text(json.dumps(pins))
            return pins, "pip"
        why = f"pip chose {pins}"
    elif done is not None:
        why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
    return fallback_pins(python, numpy_version, pybind11_version), f"table ({why})"


def fetch_wheels(python: str, pins: dict[str, str], timeout: float = PIP_TIMEOUT_S) -> list[Path]:
    """The wheels of ``pins`` for ``python``, downloaded once into build/gradescope/wheels/
    (``pip download``); [] when they cannot be fetched."""
    folder = _wheel_folder(python)
    folder.mkdir(parents=True, exist_ok=True)

    def cached() -> list[Path]:
        found = []
        for name, version in sorted(pins.items()):
            matches = sorted(folder.glob(f"{name}-{version}-*.whl"))
            if not matches:
                return []
            found.append(matches[0])
        return found

    if not cached():
        requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
        args = ["download", "--quiet", "--no-deps", "-d", str(folder)]
        try:
            _pip([*args, *pip_target(python), *requirements], timeout)
        except (subprocess.TimeoutExpired, OSError):
            return []
    return cached()


def export(
    hw: str,
    out: Path | None = None,
    pythons: tuple[str, ...] = GRADESCOPE_PYTHONS,
    wheels: bool = True,
    visibility: dict[str, str] | None = None,
) -> Path:
    """Write the Gradescope autograder zip of ``hw``; returns its path.

    ``pythons``: the Python minor versions of the base images it must install on (numpy and
    pybind11 are pinned for each); ``wheels``: ship their wheels in the zip (about 17 MB per
    Python), so setup.sh needs no package index; ``visibility``: per-unit visibilities over
    assignment.toml's (a course's, see docs/running-a-class.md)."""
    import numpy

    bundle = build_bundle(hw, visibility=visibility)
    assert bundle.root is not None
    try:
        import pybind11

        pybind11_version = pybind11.__version__
    except ImportError:
        pybind11_version = "3.1.0"
    out = Path(out or BUILD_DIR / "gradescope" / f"{hw}.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, int]] = {}
    cases, shipped = [], {}
    for python in pythons:
        pins, how = resolve_pins(python, numpy.__version__, pybind11_version)
        if how != "pip":
            print(
                f"export: numpy/pybind11 for Python {python} from the table: {how}", file=sys.stderr
            )
        requirements = " ".join(f'"{name}=={version}"' for name, version in sorted(pins.items()))
        cases.append(f"  {python}) REQUIREMENTS=({requirements}) ;;  # {how.split(' ')[0]}")
        if wheels:
            found = fetch_wheels(python, pins)
            if not found:
                print(
                    f"export: no wheels for Python {python}; setup.sh will use PyPI",
                    file=sys.stderr,
                )
            for path in found:
                shipped[f"wheels/{path.name}"] = path
    setup = (
        SETUP_SH.replace("{packages}", " ".join(SETUP_PACKAGES))
        .replace("{cases}", "\n".join(cases))
        .replace("{pythons}", ", ".join(pythons) or "none")
        .replace("{numpy}", numpy.__version__)
        .replace("{pybind11}", pybind11_version)
    )
    files["setup.sh"] = (setup.encode(), 0o755)
    files["run_autograder"] = (RUN_AUTOGRADER.encode(), 0o755)
    for name, data in engine_files().items():
        files[name] = (data, 0o644)
    for path in sorted(bundle.root.rglob("*")):
        if path.is_file():
            name = f"{BUNDLE_FOLDER}/{path.relative_to(bundle.root).as_posix()}"
            files[name] = (path.read_bytes(), 0o644)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        for name, path in sorted(shipped.items()):  # wheels are zips already: stored
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    partial.replace(out)
    return out
