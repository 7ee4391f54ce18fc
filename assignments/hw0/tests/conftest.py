"""Fixtures of hw0's public tests: where MNIST is, and the compiled C++ extension."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

HOMEWORK = Path(__file__).resolve().parent.parent  # the release folder (or assignments/hw0)
SOURCE = HOMEWORK / "src"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder with the four MNIST files (``data/`` of the release)."""
    for candidate in (
        HOMEWORK / "data",
        HOMEWORK.parent.parent / "library" / "needle" / "data" / "embedded" / "mnist",
    ):
        if (candidate / "t10k-labels-idx1-ubyte.gz").is_file():
            return candidate
    pytest.fail(f"MNIST files not found in {HOMEWORK / 'data'}")


@pytest.fixture(scope="session")
def simple_ml_ext():
    """The ``simple_ml_ext`` module, compiled from ``src/simple_ml_ext.cpp`` when missing or stale
    (what ``make build`` does)."""
    cpp = SOURCE / "simple_ml_ext.cpp"
    built = SOURCE / ("simple_ml_ext" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not built.is_file() or built.stat().st_mtime < cpp.stat().st_mtime:
        includes = subprocess.run(
            [sys.executable, "-m", "pybind11", "--includes"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        command = ["c++", "-O2", "-shared", "-std=c++17", "-fPIC", *includes, str(cpp)]
        command += ["-o", str(built)]
        if sys.platform == "darwin":
            command += ["-undefined", "dynamic_lookup"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"src/simple_ml_ext.cpp does not compile:\n{result.stderr[-3000:]}")
    if str(SOURCE) not in sys.path:
        sys.path.insert(0, str(SOURCE))
    module = importlib.import_module("simple_ml_ext")
    assert os.path.dirname(module.__file__) == str(SOURCE), module.__file__
    return module
