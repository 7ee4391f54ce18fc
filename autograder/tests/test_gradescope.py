"""The Gradescope export: layout of the zip, and ``run_autograder`` grading an unpacked export
the way Gradescope would (``/autograder`` replaced by a temporary root)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from autograder.engine.paths import BUILD_DIR
from autograder.tests.adversarial.build import build_payload
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1


@pytest.fixture(scope="module")
def export_zip(hw1_grader, tmp_path_factory):
    from autograder.authoring.export import export

    return export("hw1", tmp_path_factory.mktemp("gradescope") / "hw1.zip")


@pytest.fixture
def gradescope_root():
    """A stand-in for /autograder that the sandbox user may traverse."""
    root = Path(tempfile.mkdtemp(prefix="gradescope-root-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_autograder(
    zip_path: Path, root: Path, submission: Path, root_only: bool = False, **env
) -> dict:
    from autograder.engine.gradescope import unpack_for_test

    source = unpack_for_test(zip_path, root)
    if root_only:  # what setup.sh does on Gradescope
        subprocess.run(["chmod", "-R", "go-rwx", str(source)], check=True)
    shutil.rmtree(root / "submission", ignore_errors=True)
    shutil.copytree(submission, root / "submission")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir())
    environment = {
        **os.environ,
        "GRADESCOPE_ROOT": str(root),
        "NEEDLE_BUILD_DIR": str(BUILD_DIR),
        # -S: no .pth files, so the export's own copy of the autograder is the one imported
        "PYTHON": f"{sys.executable} -S",
        "PYTHONPATH": site,
        **env,
    }
    subprocess.run(
        [str(source / "run_autograder")], cwd=source, env=environment, timeout=600, check=False
    )
    return json.loads((root / "results" / "results.json").read_text())


def test_export_layout_has_the_entry_points_at_the_root_and_no_reference_code(hw1, export_zip):
    with zipfile.ZipFile(export_zip) as archive:
        names = archive.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        contents = {name: archive.read(name) for name in names}
    for entry in ("setup.sh", "run_autograder"):
        assert entry in names and modes[entry] & stat.S_IXUSR
    assert "bundle/probes/hw1.py" in names
    assert "bundle/reference/answers.json" in names
    assert not any(n.startswith(("library/", "solutions/", "autograder/authoring")) for n in names)
    assert not any(n.endswith(("release.py", "markers.py")) for n in names)
    for path in hw1.accept:  # the reference's version of a student file is nowhere
        if hw1.reference[path] != hw1.blank[path]:
            assert hw1.reference[path] not in contents.values(), path


def test_run_autograder_grades_with_a_nonce(hw1, export_zip, gradescope_root, tmp_path):
    reference = make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept)
    results = run_autograder(export_zip, gradescope_root, reference)
    assert results["score"] == hw1.max_score, results.get("output")
    assert results["extra_data"]["finished"] is True
    assert len(results["extra_data"]["nonce"]) == 32


@pytest.mark.skipif(os.geteuid() != 0, reason="the user sandbox needs root (as on Gradescope)")
def test_user_sandbox_refuses_readable_secrets_then_grades_a_forger_zero(
    hw1, export_zip, gradescope_root, tmp_path
):
    uid = "64123"  # a user no one else has: Gradescope's dedicated `student`
    forger = build_payload("forged_results", tmp_path, hw1.blank)
    env = {"NEEDLE_SANDBOX": "user", "NEEDLE_SANDBOX_UID": uid}
    refused = run_autograder(export_zip, gradescope_root, forger, **env)
    assert refused["score"] == 0 and "readable by the sandbox user" in refused["output"]
    results = run_autograder(export_zip, gradescope_root, forger, root_only=True, **env)
    assert results["extra_data"]["sandbox"]["kind"] == "user"
    assert results["extra_data"]["finished"] is True
    assert results["score"] == 0
    assert len(results["tests"]) == len(hw1.points)
    assert [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid] == []


def _uid_of(pid: str) -> str | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("Uid:")), "")
    return line.split()[1] if line else None


def test_export_is_the_engine_package_and_the_bundle_and_nothing_else(hw1, export_zip):
    """Every file of the engine ships (walked, not listed) and every bundle file is the one
    local grading uses; beyond those only the two entry points and the package marker."""
    from autograder.engine.paths import ENGINE_DIR

    with zipfile.ZipFile(export_zip) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    engine = {
        f"autograder/engine/{p.relative_to(ENGINE_DIR).as_posix()}": p.read_bytes()
        for p in ENGINE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    bundle_root = hw1.bundle.root
    bundle = {
        f"bundle/{p.relative_to(bundle_root).as_posix()}": p.read_bytes()
        for p in bundle_root.rglob("*")
        if p.is_file()
    }
    entry = {"setup.sh", "run_autograder", "autograder/__init__.py"}
    wheels = {n for n in contents if n.startswith("wheels/") and n.endswith(".whl")}
    assert set(contents) == set(engine) | set(bundle) | entry | wheels
    assert {n.split("/")[1].split("-")[0] for n in wheels} <= {"numpy", "pybind11"}
    assert all(contents[name] == data for name, data in {**engine, **bundle}.items())


def _stable(results: dict) -> dict:
    """results.json without what differs from run to run (times, ids, the nonce)."""
    results = json.loads(json.dumps(results))
    results.pop("execution_time", None)
    extra = results["extra_data"]
    for key in ("graded_at", "run_id", "nonce", "finished", "grader_error", "gradescope"):
        extra.pop(key, None)
    for test in results["tests"]:
        test.get("extra_data", {}).pop("wall_s", None)
    return results


def _same_results_locally_and_exported(homework, zip_path, root, submissions):
    from autograder.engine.grading import Grader
    from autograder.engine.sandbox import local_sandbox

    # One input variant on both sides (each would draw its own): feedback shows the student's
    # own values, which differ from variant to variant.
    with Grader(homework.bundle, local_sandbox(), variant=0) as grader:
        local = [grader.grade(path, name="submission") for path in submissions]
    for path, expected in zip(submissions, local):
        exported = run_autograder(zip_path, root, path, NEEDLE_VARIANT="0")
        assert exported["extra_data"]["finished"] is True, exported.get("output")
        assert _stable(exported) == _stable(expected), path.name
    return local


def test_local_grading_and_the_export_give_identical_results_hw1(
    hw1, export_zip, gradescope_root, tmp_path
):
    submissions = [
        make_submission(tmp_path / "reference", hw1, reference_files=hw1.accept),
        make_submission(
            tmp_path / "submission", hw1, reference_files=("needle/ops/ops_mathematic.py",)
        ),
        make_submission(tmp_path / "blank", hw1),
    ]
    local = _same_results_locally_and_exported(hw1, export_zip, gradescope_root, submissions)
    assert [r["score"] for r in local][0] == hw1.max_score
    assert 0 < local[1]["score"] < hw1.max_score and local[2]["score"] == 0


@pytest.mark.slow
@pytest.mark.hw3
def test_local_grading_and_the_export_give_identical_results_hw3(gradescope_root, tmp_path):
    from autograder.authoring.bundle import Homework
    from autograder.authoring.export import export

    hw3 = Homework.load("hw3")
    zip_path = export("hw3", tmp_path / "hw3.zip")
    cpu = "src/ndarray_backend_cpu.cc"
    submissions = [
        make_submission(tmp_path / "submission", hw3, reference_files=(cpu,)),
        make_submission(tmp_path / "blank", hw3),
    ]
    local = _same_results_locally_and_exported(hw3, zip_path, gradescope_root, submissions)
    assert 0 < local[0]["score"] < hw3.max_score


def test_setup_sh_installs_into_a_venv_with_a_pin_per_python(export_zip):
    """Never pip into the system Python (PEP 668); numpy pinned for each base image's
    Python, 3.10 with a release that still supports it; valid bash."""
    from autograder.authoring.export import GRADESCOPE_PYTHONS

    with zipfile.ZipFile(export_zip) as archive:
        setup = archive.read("setup.sh").decode()
    assert "python3 -m venv" in setup and "python3 -m pip" not in setup
    for python in GRADESCOPE_PYTHONS:
        assert f"\n  {python}) REQUIREMENTS=(" in setup, python
    line = next(x for x in setup.splitlines() if x.startswith("  3.10)"))
    assert '"numpy==2.2.' in line or '"numpy==2.1.' in line or '"numpy==1.' in line, line
    assert subprocess.run(["bash", "-n"], input=setup, text=True).returncode == 0
