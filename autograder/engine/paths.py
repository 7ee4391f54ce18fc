"""Where things are: the engine's own files, and the build folder for caches and outputs.

On a course checkout ``REPO_ROOT`` is the repository; in a Gradescope export it is the
unpacked export (which has no ``assignments/`` folder: the engine never needs one).
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = ENGINE_DIR.parent  # the ``autograder`` package
REPO_ROOT = PACKAGE_DIR.parent
BUILD_DIR = Path(os.environ.get("NEEDLE_BUILD_DIR", REPO_ROOT / "build"))
