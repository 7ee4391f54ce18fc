"""The Gradescope program against a hostile submission in the ``user`` sandbox (what runs on
Gradescope when the container allows no namespaces): student code runs as a dedicated uid
next to a root grader, so file modes, the kill pass and the firewall are the boundary.

One submission tries everything at import time: read (and list, and replace) the provisional
results.json, which would hold the run's nonce; reach a local TCP listener; and leave a
fork-bombing daemon behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from autograder.tests.conftest import make_submission
from autograder.tests.test_gradescope import run_autograder

pytestmark = [
    pytest.mark.hw1,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="the user sandbox needs a root grader (as on Gradescope) to switch uid, set "
        "file ownership and kill another user's processes; this run is not root",
    ),
]

UID = "64131"  # a user no one else has (Gradescope's dedicated `student`)

PAYLOAD = """

def _needle_hostile(report_dir, results_dir, port):
    import json, os, socket, time
    found = {}
    try:
        with open(os.path.join(results_dir, "results.json")) as handle:
            found["read"] = handle.read()
    except OSError as error:
        found["read_error"] = type(error).__name__
    try:
        found["listing"] = os.listdir(results_dir)
    except OSError as error:
        found["listing_error"] = type(error).__name__
    try:
        with open(os.path.join(results_dir, "results.json"), "w") as handle:
            handle.write('{"score": 1000}')
        found["wrote"] = True
    except OSError as error:
        found["write_error"] = type(error).__name__
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        found["network"] = "connected"
    except OSError as error:
        found["network"] = type(error).__name__
    with open(os.path.join(report_dir, "report-%d.json" % os.getpid()), "w") as handle:
        json.dump(found, handle)
    if os.fork() == 0:  # a daemon that forks for ever
        os.setsid()
        while True:
            try:
                if os.fork() == 0:
                    continue
                time.sleep(0.001)
            except OSError:
                time.sleep(0.001)


_needle_hostile(REPORT_DIR, RESULTS_DIR, PORT)
"""


def _processes_of(uid: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("Uid:")), "")
        if uid in line.split()[1:4]:
            found.append(pid)
    return found


def _firewall_rules_for(uid: str) -> list[str]:
    rules = []
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool):
            done = subprocess.run([tool, "-w", "-S", "OUTPUT"], capture_output=True, text=True)
            rules += [r for r in done.stdout.splitlines() if f"--uid-owner {uid}" in r]
    return rules


def test_a_hostile_submission_reads_no_results_and_leaves_no_process(hw1, tmp_path):
    from autograder.authoring.export import export

    zip_path = export("hw1", tmp_path / "hw1.zip", pythons=(), wheels=False)
    root = Path(tempfile.mkdtemp(prefix="gradescope-root-"))
    report = Path(tempfile.mkdtemp(prefix="needle-hostile-report-"))
    listener = socket.socket()
    try:
        root.chmod(0o755)
        report.chmod(0o1777)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        payload = (
            PAYLOAD.replace("REPORT_DIR", repr(str(report)))
            .replace("RESULTS_DIR", repr(str(root / "results")))
            .replace("PORT", str(port))
        )
        source = hw1.blank["apps/simple_ml.py"].decode() + payload
        submission = make_submission(
            tmp_path / "hostile", hw1, extra={"apps/simple_ml.py": source.encode()}
        )
        env = {"NEEDLE_SANDBOX": "user", "NEEDLE_SANDBOX_UID": UID}
        results = run_autograder(zip_path, root, submission, root_only=True, **env)

        assert results["extra_data"]["sandbox"]["kind"] == "user", results.get("output")
        assert results["extra_data"]["finished"] is True
        assert len(results["extra_data"]["nonce"]) == 32
        # The fork-bombing daemon did not outlive run_autograder (zombies included).
        assert _processes_of(UID) == []
        hardening = results["extra_data"]["gradescope"]
        assert hardening["killed"]["left"] == 0
        # What the payload saw of the results folder while it ran: nothing at all.
        reports = [json.loads(p.read_text()) for p in report.glob("report-*.json")]
        assert reports, "the payload never ran"
        for found in reports:
            assert "read" not in found and found["read_error"] == "PermissionError", found
            assert "listing" not in found, found
            assert "wrote" not in found, found
        # The network: denied where the firewall tools work (here: root with iptables).
        if hardening["network"].startswith("denied"):
            assert all(found["network"] == "ConnectionRefusedError" for found in reports)
        else:
            assert hardening["network"].startswith("not denied")
        assert _firewall_rules_for(UID) == []  # the rules are gone again
        assert oct((root / "results").stat().st_mode & 0o777) == "0o755"  # readable again
    finally:
        listener.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(report, ignore_errors=True)


def test_the_provisional_results_file_is_root_only_and_holds_no_nonce(tmp_path, monkeypatch):
    """While grading runs, results.json is 0600 in a 0700 root-owned folder, without the
    nonce (the grader fails at once here: no bundle; the provisional file is what it wrote
    before)."""
    from autograder.engine import gradescope

    seen = {}
    original = gradescope.load_exported

    def spy(source):
        folder = tmp_path / "results"
        seen["folder_mode"] = folder.stat().st_mode & 0o777
        seen["file_mode"] = (folder / "results.json").stat().st_mode & 0o777
        seen["owner"] = (folder.stat().st_uid, (folder / "results.json").stat().st_uid)
        seen["provisional"] = json.loads((folder / "results.json").read_text())
        return original(source)

    monkeypatch.setenv("GRADESCOPE_ROOT", str(tmp_path))
    monkeypatch.setenv("NEEDLE_EXPORT_SOURCE", str(tmp_path / "no-such-export"))
    monkeypatch.delenv("NEEDLE_SANDBOX_UID", raising=False)
    monkeypatch.setattr(gradescope, "load_exported", spy)
    assert gradescope.main() == 1
    assert seen["folder_mode"] == 0o700 and seen["file_mode"] == 0o600
    assert seen["owner"] == (0, 0)
    assert "nonce" not in seen["provisional"]["extra_data"]
    final = json.loads((tmp_path / "results" / "results.json").read_text())
    assert len(final["extra_data"]["nonce"]) == 32 and final["extra_data"]["finished"] is False
