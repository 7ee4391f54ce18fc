"""The course server's API and pages with a fake grading cluster (``server_helpers``): every
endpoint, the visibility rules, who may read what, CSRF, limits, idempotent results and the
resume after a restart. The real cluster grades in test_server_e2e.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

pytest.importorskip(
    "fastapi", reason="the server extra is not installed (pip install -e .[server])"
)

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from autograder.server.app import create_app  # noqa: E402
from autograder.server.cli import issue  # noqa: E402
from autograder.server.config import ServerConfig  # noqa: E402
from autograder.server.db import Database, Submission, Token  # noqa: E402
from autograder.server.grading import record_result  # noqa: E402
from autograder.tests.server_helpers import (  # noqa: E402
    FakeCluster,
    make_zip,
    wait_for,
    write_course,
)

HW = "hw1"


@pytest.fixture
def setup(tmp_path):
    course = write_course(tmp_path / "course")
    config = ServerConfig(course_path=course, data_dir=tmp_path / "data", rate_limit=5)
    tokens = {user: token for user, _, token in issue(config, tmp_path / "tokens.csv")}
    return config, tokens


def client_for(config, cluster):
    return TestClient(create_app(config, cluster_factory=lambda _: cluster, log=lambda m: None))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def upload(client, token, files, hw=HW, key=None):
    headers = {**bearer(token), "Content-Type": "application/zip"}
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/api/homeworks/{hw}/submissions", content=make_zip(files), headers=headers)


def finished(client, token, submission_id):
    def check():
        body = client.get(f"/api/submissions/{submission_id}", headers=bearer(token)).json()
        return body if body["state"] in ("done", "failed") else None

    return wait_for(check)


def test_tokens_are_issued_once_and_stored_hashed(setup, tmp_path):
    config, tokens = setup
    assert set(tokens) == {"s1", "s2", "prof"}
    rows = list(csv.DictReader(open(tmp_path / "tokens.csv")))
    assert {r["id"]: r["role"] for r in rows} == {
        "s1": "student",
        "s2": "student",
        "prof": "instructor",
    }
    db = Database(config.database_url)
    with db.session() as session:
        hashes = session.scalars(select(Token.token_hash)).all()
    db.close()
    assert len(hashes) == 3 and not set(tokens.values()) & set(hashes)
    raw = (config.data_dir / "server.db").read_bytes()
    assert all(t.encode() not in raw for t in tokens.values())
    assert issue(config, tmp_path / "again.csv") == []  # everyone has one already


def test_health_me_and_bad_tokens(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        health = client.get("/api/health").json()
        assert health["homeworks"] == [HW] and health["course"] == "Test course"
        assert client.get("/api/me", headers=bearer(tokens["s2"])).json()["name"] == (
            "Bob <b>Student</b>"
        )
        assert client.get("/api/me", headers=bearer(tokens["prof"])).json()["role"] == (
            "instructor"
        )
        assert client.get("/api/me").status_code == 401
        wrong = client.get("/api/me", headers=bearer("not-a-token"))
        assert wrong.status_code == 401 and "unknown or revoked token" in wrong.json()["detail"]
        assert upload(client, "nope", {"answer.txt": "x"}).status_code == 401


def test_upload_is_stored_graded_and_shown_under_visibility(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        response = upload(client, tokens["s1"], {"answer.txt": "first second\n"})
        assert response.status_code == 201
        body = response.json()
        blob = config.data_dir / "blobs" / body["sha256"][:2] / f"{body['sha256']}.zip"
        assert blob.read_bytes() == make_zip({"answer.txt": "first second\n"})
        seen = finished(client, tokens["s1"], body["id"])
        assert seen["state"] == "done"
        units = {u["name"]: u for u in seen["units"]}
        # before the due date the after_due_date unit and so the total are withheld
        assert units["first"]["score"] == 6.0 and units["first"]["withheld"] == ""
        assert (
            units["second"]["score"] is None and "after the due date" in units["second"]["withheld"]
        )
        assert seen["score"] is None
        assert "second: you wrote" not in seen["feedback"]
        assert "first: you wrote first second" in seen["feedback"]
        # the instructor sees everything
        full = client.get(f"/api/submissions/{body['id']}", headers=bearer(tokens["prof"]))
        assert full.json()["score"] == 10.0
        mine = client.get("/api/submissions", headers=bearer(tokens["s1"])).json()
        assert [m["id"] for m in mine] == [body["id"]]


def test_after_the_due_date_everything_is_shown_with_the_late_penalty(tmp_path):
    due = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=30)
    course = write_course(tmp_path / "course", due=due)
    config = ServerConfig(course_path=course, data_dir=tmp_path / "data")
    tokens = {u: t for u, _, t in issue(config, tmp_path / "t.csv")}
    with client_for(config, FakeCluster()) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first second"}).json()["id"]
        seen = finished(client, tokens["s1"], sid)
        assert seen["score"] == 10.0
        # 30 hours late, 10% per started day: two days, 20% of the score
        assert seen["final_score"] == pytest.approx(8.0)
        assert "h late" in seen["late"]


def test_students_read_only_their_own_submissions(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        theirs = upload(client, tokens["s1"], {"answer.txt": "first"}).json()["id"]
        other = client.get(f"/api/submissions/{theirs}", headers=bearer(tokens["s2"]))
        assert other.status_code == 404
        assert client.get("/api/submissions", headers=bearer(tokens["s2"])).json() == []
        assert client.get("/api/submissions/999999", headers=bearer(tokens["s1"])).status_code == (
            404
        )


def test_limits_size_rate_kind_and_homework(setup, tmp_path):
    config, tokens = setup
    config.max_upload_bytes = 2000
    with client_for(config, FakeCluster()) as client:
        big = upload(
            client, tokens["s1"], {"answer.txt": "x" * 50_000 + "".join(map(str, range(2000)))}
        )
        assert big.status_code == 413 and "limit of 2000 bytes" in big.json()["detail"]
        not_zip = client.post(
            f"/api/homeworks/{HW}/submissions", content=b"hello", headers=bearer(tokens["s1"])
        )
        assert not_zip.status_code == 400 and "not a zip" in not_zip.json()["detail"]
        unknown = upload(client, tokens["s1"], {"answer.txt": "x"}, hw="hw9")
        assert unknown.status_code == 404 and "hw1" in unknown.json()["detail"]
        codes = [upload(client, tokens["s2"], {"answer.txt": str(i)}).status_code for i in range(6)]
        assert codes == [201] * 5 + [429]
        limited = upload(client, tokens["s2"], {"answer.txt": "again"})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # another student is not limited by s2's submissions
        assert upload(client, tokens["s1"], {"answer.txt": "x"}).status_code == 201


def test_idempotency_key_stores_once(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        first = upload(client, tokens["s1"], {"answer.txt": "first"}, key="k-1")
        again = upload(client, tokens["s1"], {"answer.txt": "first"}, key="k-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert len(client.get("/api/submissions", headers=bearer(tokens["s1"])).json()) == 1


def test_record_result_is_idempotent(setup):
    config, tokens = setup
    cluster = FakeCluster(hold=True)
    with client_for(config, cluster) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first"}).json()["id"]
        db = client.app.state.server.db
        result = {"score": 3.0, "max_score": 10.0, "tests": [], "extra_data": {}}
        assert record_result(db, sid, 0, result) is True
        assert record_result(db, sid, 0, result) is False  # written twice: one state
        assert record_result(db, sid, 7, result) is False  # not this generation
        cluster.release()
        with db.session() as session:
            row = session.get(Submission, sid)
            assert (row.state, row.score, row.result_writes) == ("done", 3.0, 1)
            assert session.scalar(select(func.count()).select_from(Submission)) == 1


def test_failed_grading_is_reported(setup):
    config, tokens = setup
    with client_for(config, FakeCluster(fail=True)) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first"}).json()["id"]
        seen = finished(client, tokens["s1"], sid)
        assert seen["state"] == "failed" and "could not be graded" in seen["error"]


def test_restart_resumes_unfinished_grading(setup):
    config, tokens = setup
    held = FakeCluster(hold=True)
    with client_for(config, held) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first"}).json()["id"]
    # the server stopped before grading finished: the next start grades it
    fresh = FakeCluster()
    with client_for(config, fresh) as client:
        seen = finished(client, tokens["s1"], sid)
        assert seen["state"] == "done"
        assert len(fresh.keys) == 1 and fresh.keys[0].startswith(f"grade-{sid}-")
        with client.app.state.server.db.session() as session:
            row = session.get(Submission, sid)
            assert (row.dispatches, row.result_writes) == (2, 1)


def test_instructor_endpoints_need_the_role(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first second"}).json()["id"]
        finished(client, tokens["s1"], sid)
        for path in ("/api/class/hw1/gradebook.csv", "/api/cluster"):
            assert client.get(path, headers=bearer(tokens["s1"])).status_code == 403
        assert client.post("/api/class/hw1/regrade", headers=bearer(tokens["s1"])).status_code == (
            403
        )
        book = client.get("/api/class/hw1/gradebook.csv", headers=bearer(tokens["prof"]))
        assert book.status_code == 200 and book.headers["content-type"].startswith("text/csv")
        rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO(book.text))}
        assert rows["s1"]["raw_score"] == "10.0" and rows["s1"]["first"] == "6.0"
        assert rows["s2"]["status"] == "missing"
        canvas = client.get("/api/class/hw1/canvas.csv", headers=bearer(tokens["prof"])).text
        lines = list(csv.reader(io.StringIO(canvas)))
        assert lines[0][:2] == ["Student", "ID"] and lines[0][-1] == "hw1"
        assert ["Ada Student", "", "s1"] == lines[2][:3] and lines[2][-1] == "10.0"
        plain = client.get("/api/class/hw1/grades.csv", headers=bearer(tokens["prof"])).text
        assert "s1,Ada Student" in plain
        status = client.get("/api/cluster", headers=bearer(tokens["prof"])).json()
        assert status["queue"]["done"] == 1


def test_regrade_grades_again_and_logs(setup):
    config, tokens = setup
    cluster = FakeCluster()
    with client_for(config, cluster) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first"}).json()["id"]
        finished(client, tokens["s1"], sid)
        response = client.post(
            "/api/class/hw1/regrade",
            json={"student": "s1", "reason": "probe fix"},
            headers=bearer(tokens["prof"]),
        )
        assert response.status_code == 202 and response.json()["regrading"] == [sid]
        db = client.app.state.server.db

        def regraded():
            with db.session() as session:
                row = session.get(Submission, sid)
                return row if row.state == "done" and row.result_generation == 1 else None

        row = wait_for(regraded)
        assert row.result_writes == 2 and cluster.keys[-1] == f"grade-{sid}-g1-d2"
        log = config.data_dir / "classes" / "hw1" / "_class" / "regrades.csv"
        entries = wait_for(lambda: log.is_file() and list(csv.DictReader(open(log))))
        assert entries[0]["who"] == "prof" and entries[0]["reason"] == "probe fix"
        assert entries[0]["student"] == "s1"


# -- pages -----------------------------------------------------------------------------------


def login(client, token):
    csrf = csrf_of(client.get("/login").text)
    return client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_pages_login_csrf_upload_and_escaping(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        page = client.get("/login")
        for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
            assert name in page.headers
        assert client.get("/me", follow_redirects=False).headers["location"] == "/login"
        # a login without the form's CSRF token is refused
        refused = client.post("/login", data={"token": tokens["s2"]}, follow_redirects=False)
        assert refused.status_code == 403
        assert login(client, "wrong").status_code == 401
        done = login(client, tokens["s2"])
        assert done.status_code == 303 and done.headers["location"] == "/me"
        cookie = done.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        me = client.get("/me")
        assert "Bob &lt;b&gt;Student&lt;/b&gt;" not in me.text  # the name is not shown raw...
        assert "<b>Student</b>" not in me.text
        form = {"homework": "hw1"}
        archive = make_zip({"answer.txt": "<script>alert(1)</script> first"})
        files = {"file": ("hw1-submission.zip", archive, "application/zip")}
        no_csrf = client.post("/submit", data=form, files=files, follow_redirects=False)
        assert no_csrf.status_code == 403
        sent = client.post(
            "/submit", data={**form, "csrf": csrf_of(me.text)}, files=files, follow_redirects=False
        )
        assert sent.status_code == 303
        location = sent.headers["location"]
        sid = int(location.rsplit("/", 1)[1])
        finished(client, tokens["s2"], sid)
        detail = client.get(location)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
        assert "<script>" not in detail.text
        assert "shown after the due date" in detail.text
        # another student's page is not found; the dashboard is for instructors
        assert client.get("/dashboard").status_code == 403
        logout = client.post("/logout", data={"csrf": csrf_of(me.text)}, follow_redirects=False)
        assert logout.status_code == 303
        assert client.get("/me", follow_redirects=False).status_code == 303
        login(client, tokens["s1"])
        assert client.get(location).status_code == 404


def test_dashboard_and_regrade_form(setup):
    config, tokens = setup
    with client_for(config, FakeCluster()) as client:
        for token, text in ((tokens["s1"], "first second"), (tokens["s2"], "first")):
            sid = upload(client, token, {"answer.txt": text}).json()["id"]
            finished(client, token, sid)
        login(client, tokens["prof"])
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert "<svg" in page.text and "Ada Student" in page.text
        assert "Bob &lt;b&gt;Student&lt;/b&gt;" in page.text  # roster text escaped
        rates = dict(re.findall(r"<tr><td>(\w+)</td><td>(\d+)%</td></tr>", page.text))
        assert rates == {"first": "100", "second": "50"}
        assert "/api/class/hw1/canvas.csv" in page.text
        book = client.get("/api/class/hw1/gradebook.csv")  # the session cookie is enough
        assert book.status_code == 200
        refused = client.post("/dashboard/regrade", data={"homework": "hw1"})
        assert refused.status_code == 403
        sent = client.post(
            "/dashboard/regrade",
            data={"homework": "hw1", "csrf": csrf_of(page.text), "student": ""},
            follow_redirects=False,
        )
        assert sent.status_code == 303 and "regrading+2+submission" in sent.headers["location"]


def test_course_visibility_overrides_the_bundle(tmp_path):
    extra = '\n[homeworks.hw1.visibility]\nfirst = "hidden"\n'
    course = write_course(tmp_path / "course", extra=extra)
    config = ServerConfig(course_path=course, data_dir=tmp_path / "data")
    tokens = {u: t for u, _, t in issue(config, tmp_path / "t.csv")}
    with client_for(config, FakeCluster()) as client:
        sid = upload(client, tokens["s1"], {"answer.txt": "first second"}).json()["id"]
        units = {u["name"]: u for u in finished(client, tokens["s1"], sid)["units"]}
        assert units["first"]["score"] is None and units["first"]["withheld"] == (
            "not shown to students"
        )


def test_serve_tokens_command_and_replacement(tmp_path, capsys):
    from autograder.cli import main
    from autograder.server.auth import user_of_token

    course = write_course(tmp_path / "course")
    out = tmp_path / "tokens.csv"
    assert main(["serve-tokens", "--course", str(course), "--out", str(out)]) == 0
    first = {r["id"]: r["token"] for r in csv.DictReader(open(out))}
    assert set(first) == {"s1", "s2", "prof"} and len(set(first.values())) == 3
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert main(["serve-tokens", "--course", str(course), "--out", str(out)]) == 0
    assert "already has a token" in capsys.readouterr().out
    again = ["serve-tokens", "--course", str(course), "--out", str(out), "--replace"]
    assert main(again) == 0
    second = {r["id"]: r["token"] for r in csv.DictReader(open(out))}
    db = Database(
        ServerConfig(course_path=course, data_dir=course.parent / "server-data").database_url
    )
    try:
        assert user_of_token(db, first["s1"]) is None  # revoked
        assert user_of_token(db, second["s1"]).id == "s1"
    finally:
        db.close()


def test_serve_with_a_broken_course_is_a_usage_error(tmp_path, capsys):
    from autograder.cli import main

    assert main(["serve", "--course", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
