"""The Gradescope export end to end in a container built offline: ``setup.sh`` and
``run_autograder`` run as root in a Debian 12 image, laid out as Gradescope lays out its
own (``/autograder/source`` = the unpacked zip, ``/autograder/submission``,
``/autograder/results``), and the results.json written there equals the one local grading
writes for the same submission.

The image: ``docker/gradescope/make-rootfs.sh`` (debootstrap ``--variant=minbase bookworm``,
with the packages setup.sh installs already included) makes a root file system once, cached
at ``build/gradescope-image/bookworm-rootfs.tar`` (about 3.5 minutes on the development
machine); ``podman import`` turns it into an image. Both containers run with
``--network none``: setup.sh installs numpy and pybind11 from the wheels shipped in the zip
(the export is made for the image's Python, 3.11), so the test proves the zip installs
without any index. Debian 12's ``python3`` is externally managed (PEP 668), as Ubuntu
24.04's is: a pip install into the system Python would fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from autograder.engine.paths import BUILD_DIR, REPO_ROOT
from autograder.tests.conftest import make_submission
from autograder.tests.test_gradescope import _stable

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.long, pytest.mark.hw1]

ROOTFS = BUILD_DIR / "gradescope-image" / "bookworm-rootfs.tar"
MAKE_ROOTFS = REPO_ROOT / "docker" / "gradescope" / "make-rootfs.sh"
IMAGE_PYTHON = "3.11"  # Debian 12's python3
# Explicit ulimits: podman's defaults can exceed this host's hard limits (then the
# container does not start at all).
RUN_OPTIONS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def _podman(prefix: list[str], *args: str, timeout: float = 900, **kwargs):
    return subprocess.run(
        ["podman", *prefix, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _rootfs() -> Path:
    """The cached Debian root file system (made here once: needs root and debootstrap)."""
    if ROOTFS.exists():
        return ROOTFS
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip(
            f"no cached {ROOTFS.relative_to(REPO_ROOT)} and cannot make it: "
            "needs root and debootstrap (apt-get install debootstrap)"
        )
    done = subprocess.run(
        [str(MAKE_ROOTFS), str(ROOTFS)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return ROOTFS


@pytest.fixture(scope="module")
def base_image():
    """(podman global options that work on this host, the imported Debian image)."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (apt-get install podman)")
    rootfs = _rootfs()
    stat = rootfs.stat()
    key = hashlib.sha256(f"{rootfs}\n{stat.st_size}\n{stat.st_mtime_ns}".encode()).hexdigest()
    image = f"localhost/needle-gradescope-base:{key[:16]}"
    if _podman([], "image", "exists", image).returncode != 0:
        imported = _podman([], "import", "-q", str(rootfs), image)
        assert imported.returncode == 0, imported.stderr
    errors = []
    for prefix in (
        [],
        ["--runtime", "runc"],
        ["--runtime", "runc", "--cgroup-manager", "cgroupfs"],
        ["--cgroup-manager", "cgroupfs"],
    ):
        tried = _podman(prefix, "run", "--rm", "--network", "none", *RUN_OPTIONS, image, "true")
        if tried.returncode == 0:
            return prefix, image
        errors.append(f"podman {' '.join(prefix)}: {tried.stderr.strip()[-300:]}")
    pytest.skip("podman cannot run a container on this host:\n" + "\n".join(errors))


@pytest.fixture(scope="module")
def gradescope_image(base_image, hw1_grader, tmp_path_factory):
    """The autograder image: the export unpacked at /autograder/source, setup.sh run there as
    root without network, then committed (Gradescope's image build)."""
    from autograder.authoring.export import export

    prefix, base = base_image
    work = tmp_path_factory.mktemp("gradescope-container")
    zip_path = export("hw1", work / "hw1.zip", pythons=(IMAGE_PYTHON,))
    with zipfile.ZipFile(zip_path) as archive:
        has_wheels = any(n.startswith("wheels/numpy-") for n in archive.namelist())
    network = ["--network", "none"] if has_wheels else []  # no wheels: PyPI at setup time
    name = f"needle-gradescope-setup-{os.getpid()}"
    script = (
        "set -e; mkdir -p /autograder/source /autograder/results /autograder/submission;"
        " cd /autograder/source && python3 -c 'import zipfile,sys;"
        ' zipfile.ZipFile(sys.argv[1]).extractall(".")\' /mnt/hw1.zip;'
        " chmod 755 setup.sh run_autograder; cp run_autograder /autograder/run_autograder;"
        " bash ./setup.sh"
    )
    built = _podman(
        prefix,
        "run",
        "--name",
        name,
        *network,
        *RUN_OPTIONS,
        "-v",
        f"{zip_path}:/mnt/hw1.zip:ro",
        base,
        "bash",
        "-c",
        script,
    )
    try:
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        image = f"localhost/needle-gradescope-hw1:{os.getpid()}"
        committed = _podman(prefix, "commit", "-q", name, image)
        assert committed.returncode == 0, committed.stderr
    finally:
        _podman(prefix, "rm", "-f", name)
    yield prefix, image, built.stdout + built.stderr
    _podman(prefix, "rmi", "-f", image)


def _grade_in_container(gradescope_image, submission: Path, work: Path) -> dict:
    """run_autograder for one submission, in a fresh container of the image (as root)."""
    prefix, image, _ = gradescope_image
    results = work / f"results-{submission.name}"
    results.mkdir()
    script = (
        "set -e; cp -r /mnt/submission/. /autograder/submission/;"
        " cd /autograder && ./run_autograder"
    )
    mount = f"{submission}:/mnt/submission:ro"
    if submission.is_file():  # an archive or notebook, stored as uploaded
        mount = f"{submission}:/mnt/submission/{submission.name}:ro"
    done = _podman(
        prefix,
        "run",
        "--rm",
        "--network",
        "none",
        *RUN_OPTIONS,
        "-e",
        "NEEDLE_VARIANT=0",  # local grading below is pinned to variant 0 too
        "-v",
        mount,
        "-v",
        f"{results}:/autograder/results",
        image,
        "bash",
        "-c",
        script,
        timeout=600,
    )
    path = results / "results.json"
    assert path.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(path.read_text())


def _comparable(results: dict) -> dict:
    """_stable, less what names the machine rather than the grading: the sandbox kind
    (the container has no namespaces: user ``student``), and so the resume fingerprint,
    and the runtime's key (another interpreter); numpy's version stays compared."""
    results = _stable(results)
    extra = results["extra_data"]
    for key in ("sandbox", "fingerprint"):
        extra.pop(key, None)
    extra.get("runtime", {}).pop("key", None)
    # Whether a memory cgroup could be had is the machine's too (the container has none).
    from autograder.engine.results import MEMORY_NOT_ENFORCED

    results["output"] = results["output"].replace(MEMORY_NOT_ENFORCED, "").strip()
    return results


def _archives(folder: Path, out: Path) -> list[Path]:
    """The same submission as a .zip, a .tar.gz and a tagged notebook."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    as_zip = out / "hw1.zip"
    with zipfile.ZipFile(as_zip, "w") as archive:
        for path in files:
            archive.write(path, f"hw1/{path.relative_to(folder).as_posix()}")
    as_tar = out / "hw1.tar.gz"
    with tarfile.open(as_tar, "w:gz") as archive:
        for path in files:
            archive.add(path, f"hw1/{path.relative_to(folder).as_posix()}")
    cells: list[dict] = [
        {
            "cell_type": "code",
            "metadata": {"tags": [f"submission:{path.relative_to(folder).as_posix()}"]},
            "source": path.read_text(),
            "outputs": [],
            "execution_count": None,
        }
        for path in files
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    as_notebook = out / "hw1.ipynb"
    as_notebook.write_text(json.dumps(notebook))
    for path in (as_zip, as_tar, as_notebook):
        path.chmod(0o644)
    return [as_zip, as_tar, as_notebook]


def test_setup_installs_into_a_venv_offline(gradescope_image):
    prefix, image, setup_log = gradescope_image
    script = (
        "/autograder/venv/bin/python -c 'import numpy, pybind11, sys;"
        " print(sys.version_info[:2], numpy.__version__, pybind11.__version__)';"
        " python3 -m pip --version >/dev/null 2>&1 && echo system-pip || echo no-system-pip;"
        " stat -c '%a %U' /autograder/source/bundle/reference/answers.json; id -u student"
    )
    done = _podman(
        prefix, "run", "--rm", "--network", "none", *RUN_OPTIONS, image, "bash", "-c", script
    )
    assert done.returncode == 0, done.stderr
    import numpy
    import pybind11

    lines = done.stdout.splitlines()
    assert lines[0] == f"(3, 11) {numpy.__version__} {pybind11.__version__}", setup_log
    assert lines[1] == "no-system-pip"  # nothing was installed into the system Python
    assert lines[2] == "600 root", lines  # the reference answers: root only
    assert lines[3].isdigit() and lines[3] != "0"  # the user student code runs as


def test_container_grading_equals_local_grading_in_every_submission_format(
    hw1, hw1_grader, gradescope_image, tmp_path
):
    partial_files = ("needle/ops/ops_mathematic.py",)
    reference = make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept)
    partial = make_submission(tmp_path / "partial", hw1, reference_files=partial_files)
    blank = make_submission(tmp_path / "blank", hw1)
    formats = tmp_path / "formats"
    formats.mkdir()
    submissions = [reference, partial, blank, *_archives(partial, formats)]
    for path in [tmp_path, *submissions]:
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else 0o644)
    from autograder.engine.grading import Grader
    from autograder.engine.sandbox import local_sandbox

    with Grader(hw1.bundle, local_sandbox(), variant=0) as grader:
        expected = [grader.grade(path, name="submission") for path in submissions]
    scores = [r["score"] for r in expected]
    assert scores[0] == hw1.max_score and 0 < scores[1] < hw1.max_score and scores[2] == 0
    assert scores[3:] == [scores[1]] * 3, scores  # the formats grade as the loose files do
    for path, local in zip(submissions, expected):
        exported = _grade_in_container(gradescope_image, path, tmp_path)
        assert exported["extra_data"].get("finished") is True, exported.get("output")
        sandbox = exported["extra_data"]["sandbox"]
        assert sandbox["isolated"] is True and sandbox["kind"] in ("bwrap", "unshare", "user")
        print(f"{path.name}: {exported['score']:g} in the container ({sandbox['kind']})")
        assert _comparable(exported) == _comparable(local), path.name
