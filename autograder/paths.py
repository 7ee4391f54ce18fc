"""Where things are: the repository, its build folder, the homeworks and the probes."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
BUILD_DIR = Path(os.environ.get("NEEDLE_BUILD_DIR", REPO_ROOT / "build"))
ASSIGNMENTS_DIR = REPO_ROOT / "assignments"
PROBES_DIR = PACKAGE_DIR / "probes"
