"""Applying the Alembic migrations in server/migrations, without an alembic.ini.

    upgrade(url)          bring the database at `url` to the newest revision
    upgrade_engine(e)     the same on an Engine the caller owns
    current_revision(e)   the revision a database is at (None: no esup tables)
    head_revision()       the newest revision this esup ships
    check_current(e)      raise SchemaOutOfDateError unless the database is at the head

Upgrading is idempotent: a database already at the head is left as it is.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from server.errors import DatabaseUnavailableError, SchemaOutOfDateError
from server.store.database import DEFAULT_URL, make_engine, shown

__all__ = ["check_current", "current_revision", "head_revision", "upgrade", "upgrade_engine"]

#: Where the migrations live: in the installed package, beside this module's package.
SCRIPT_LOCATION = str(Path(__file__).resolve().parents[1] / "migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    """The newest revision shipped with this esup."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the package ships at least one revision
    return head


def upgrade_engine(engine: Engine) -> None:
    """Apply every missing migration to `engine`'s database, in one transaction where the
    database allows transactional DDL (PostgreSQL and SQLite both do).

    Raises `DatabaseUnavailableError` when the database cannot be reached.
    """
    config = _config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise DatabaseUnavailableError(shown(engine.url), str(exc.orig)) from exc


def upgrade(url: str = DEFAULT_URL) -> None:
    """Bring the database at `url` to the newest revision (a SQLite file is created)."""
    engine = make_engine(url)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when it has no esup tables yet."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailableError(shown(engine.url), str(exc.orig)) from exc


def check_current(engine: Engine) -> None:
    """Raise `SchemaOutOfDateError` unless the database is at the newest revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(shown(engine.url), current, head)
