"""``autograder export HW --gradescope``: the Gradescope autograder zip.

The zip is exactly three things (docs/grading.md#gradescope-directory-contract):

- ``setup.sh`` and ``run_autograder`` at its root (Gradescope's contract);
- ``autograder/engine/``: every file of the engine package, found by walking the folder (no
  hand-kept list can forget one), plus the empty ``autograder/__init__.py``;
- ``bundle/``: the homework's grading bundle, the same one local grading uses.

``run_autograder`` calls ``autograder.engine.gradescope.main``.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from autograder.authoring.bundle import build_bundle
from autograder.engine.gradescope import BUNDLE_FOLDER
from autograder.engine.paths import BUILD_DIR, ENGINE_DIR

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-pip bubblewrap util-linux \\
    g++ make cmake >/dev/null
python3 -m pip install --no-cache-dir -q "numpy=={numpy}" "pybind11=={pybind11}"
# The user student code runs as; nothing of the grader is readable by it.
id student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin student
chown -R root:root /autograder/source
chmod -R go-rwx /autograder/source
# The runtime submissions run on (interpreter + numpy), readable by everyone.
mkdir -p /opt/needle-grader && chmod 755 /opt/needle-grader
cd /autograder/source
NEEDLE_BUILD_DIR=/opt/needle-grader python3 -c \\
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
cd "$ROOT/source"
exec ${PYTHON:-python3} -c "from autograder.engine.gradescope import main; raise SystemExit(main())"
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


def export(hw: str, out: Path | None = None) -> Path:
    """Write the Gradescope autograder zip of ``hw``; returns its path."""
    import numpy

    bundle = build_bundle(hw)
    assert bundle.root is not None
    try:
        import pybind11

        pybind11_version = pybind11.__version__
    except ImportError:
        pybind11_version = "3.1.0"
    out = Path(out or BUILD_DIR / "gradescope" / f"{hw}.zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, int]] = {}
    setup = SETUP_SH.replace("{numpy}", numpy.__version__).replace("{pybind11}", pybind11_version)
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
    partial.replace(out)
    return out
