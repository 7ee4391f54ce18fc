"""``make submit`` in a student release that names a course server: the zip is built, uploaded
with the student's token and the feedback printed; a wrong token, an unreachable server and a
zip over the limit each give a clear message, and the zip is always kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="no server extra (pip install -e .[server])")

from autograder.authoring.release import build_release  # noqa: E402
from autograder.server.app import create_app  # noqa: E402
from autograder.server.cli import issue  # noqa: E402
from autograder.server.config import ServerConfig  # noqa: E402
from autograder.tests.server_helpers import (  # noqa: E402
    FakeCluster,
    LiveServer,
    free_port,
    write_course,  # noqa: E402
)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    # the URL in .assignment.json is replaced per test through NEEDLE_SERVER
    return build_release("hw1", tmp_path_factory.mktemp("release"), server="http://unused")


def submit(release, **env):
    zip_path = release / "hw1-submission.zip"
    zip_path.unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "submit.py"],
        cwd=release,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NEEDLE_RETRY_DELAY": "0.1", **env},
    )
    assert zip_path.is_file(), run.stderr  # always kept
    return run


@pytest.fixture
def server(tmp_path):
    config = ServerConfig(course_path=write_course(tmp_path / "course"), data_dir=tmp_path / "d")
    tokens = {u: t for u, _, t in issue(config, tmp_path / "tokens.csv")}
    app = create_app(config, cluster_factory=lambda _: FakeCluster(), log=lambda m: None)
    with LiveServer(app) as live:
        yield live, tokens, config


def test_release_names_the_server(release):
    assert '"server": "http://unused"' in (release / ".assignment.json").read_text()


def test_make_submit_uploads_and_prints_the_feedback(release, server):
    live, tokens, _ = server
    run = submit(release, NEEDLE_SERVER=live.url, NEEDLE_TOKEN=tokens["s1"])
    assert run.returncode == 0, run.stderr
    assert "wrote hw1-submission.zip" in run.stdout
    assert "submitted: submission 1" in run.stdout
    # the fake grader's units: "first" shown, "second" withheld before the due date
    assert "== first: 0 / 6" in run.stdout
    assert "== second: shown after the due date" in run.stdout
    assert f"{live.url}/submissions/1" in run.stdout


def test_token_from_the_needle_token_file(release, server):
    live, tokens, _ = server
    (release / ".needle-token").write_text(tokens["s2"] + "\n")
    try:
        run = submit(release, NEEDLE_SERVER=live.url, NEEDLE_TOKEN="")
    finally:
        (release / ".needle-token").unlink()
    assert run.returncode == 0, run.stderr
    assert "== first:" in run.stdout


def test_wrong_token_unreachable_and_too_big(release, server):
    live, tokens, config = server
    wrong = submit(release, NEEDLE_SERVER=live.url, NEEDLE_TOKEN="not-my-token")
    assert wrong.returncode == 1
    assert "does not know your token" in wrong.stderr and "your zip is kept" in wrong.stderr
    none = submit(release, NEEDLE_SERVER=live.url, NEEDLE_TOKEN="")
    assert none.returncode == 1 and "no token" in none.stderr
    down = submit(release, NEEDLE_SERVER=f"http://127.0.0.1:{free_port()}", NEEDLE_TOKEN="x")
    assert down.returncode == 1
    assert "cannot reach the course server" in down.stderr and "your zip is kept" in down.stderr
    config.max_upload_bytes = 1000  # the running server reads its config per request
    big = submit(release, NEEDLE_SERVER=live.url, NEEDLE_TOKEN=tokens["s1"])
    assert big.returncode == 1 and "over the server's limit of 1000 bytes" in big.stderr


def test_release_without_a_server_only_builds_the_zip(tmp_path):
    plain = build_release("hw1", tmp_path)
    assert '"server"' not in (plain / ".assignment.json").read_text()
    run = subprocess.run(
        [sys.executable, "submit.py"],
        cwd=plain,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "NEEDLE_SERVER"},
    )
    assert run.returncode == 0 and "uploading" not in run.stdout
