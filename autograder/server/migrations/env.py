"""Alembic's environment for the course server: run with the connection ``db.migrate``
passes in ``config.attributes`` (no alembic.ini, no URL of its own)."""

from alembic import context

from autograder.server.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
