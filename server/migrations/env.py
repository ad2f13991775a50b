"""Alembic's environment: run the migrations on the connection `server.store.migrate` hands in.

There is no alembic.ini; `migrate.upgrade` builds the configuration in code and
puts an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from server.store.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("server.store.migrate runs these migrations; use esup-server db upgrade")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError(
        "offline (SQL script) migrations are not supported; run esup-server db upgrade"
    )
run_migrations_online()
