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

from autograder.paths import BUILD_DIR
from autograder.tests.adversarial.build import build_payload
from autograder.tests.conftest import make_submission

pytestmark = pytest.mark.hw1


@pytest.fixture(scope="module")
def export_zip(hw1_grader, tmp_path_factory):
    from autograder.gradescope import export

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
    from autograder.gradescope import unpack_for_test

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
    assert "autograder/probes/hw1.py" in names
    assert "homework/reference/answers.json" in names
    assert not any(n.startswith(("library/", "solutions/")) for n in names)
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
