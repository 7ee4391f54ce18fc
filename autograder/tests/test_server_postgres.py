"""The course server on PostgreSQL: a real server started for these tests (skipped, with the
reason, where PostgreSQL is not installed). The migrations apply to an empty database and
again as a no-op, and the API's flows run as on SQLite (the same test functions)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="no server extra (pip install -e .[server])")
pytest.importorskip("psycopg", reason="no psycopg (pip install -e .[server])")

import autograder.tests.test_server_api as api  # noqa: E402
from autograder.server.cli import issue  # noqa: E402
from autograder.server.config import ServerConfig  # noqa: E402
from autograder.server.db import Database  # noqa: E402
from autograder.tests.server_helpers import (  # noqa: E402
    PostgresServer,
    postgres_tools,
    write_course,
)

TOOLS = postgres_tools()
pytestmark = pytest.mark.skipif(
    TOOLS is None, reason="PostgreSQL (initdb, pg_ctl, postgres) is not installed here"
)


@pytest.fixture(scope="module")
def postgres():
    assert TOOLS is not None
    server = PostgresServer(TOOLS).start()
    yield server
    server.stop()


@pytest.fixture
def setup(tmp_path, postgres):
    course = write_course(tmp_path / "course")
    config = ServerConfig(
        course_path=course,
        data_dir=tmp_path / "data",
        db_url=postgres.new_database(),
        rate_limit=5,
    )
    tokens = {user: token for user, _, token in issue(config, tmp_path / "tokens.csv")}
    return config, tokens


def test_migrations_apply_once(postgres):
    from sqlalchemy import inspect, text

    db = Database(postgres.new_database())
    try:
        db.migrate()
        db.migrate()  # nothing left to apply
        with db.engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert version == [("0001",)]
        assert {"tokens", "sessions", "submissions"} <= set(inspect(db.engine).get_table_names())
        assert db.url.startswith("postgresql+psycopg://")
    finally:
        db.close()


FLOWS = [
    api.test_health_me_and_bad_tokens,
    api.test_upload_is_stored_graded_and_shown_under_visibility,
    api.test_students_read_only_their_own_submissions,
    api.test_idempotency_key_stores_once,
    api.test_record_result_is_idempotent,
    api.test_restart_resumes_unfinished_grading,
    api.test_instructor_endpoints_need_the_role,
    api.test_regrade_grades_again_and_logs,
    api.test_pages_login_csrf_upload_and_escaping,
]


@pytest.mark.parametrize("flow", FLOWS, ids=[f.__name__.removeprefix("test_") for f in FLOWS])
def test_api_flow_on_postgres(flow, setup):
    assert setup[0].database_url.startswith("postgresql")
    flow(setup)
