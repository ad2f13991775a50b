"""The server's tables, as SQLAlchemy Core `MetaData`.

    events      every accepted raw event, append-only; one row per
                (department, event_id), the wire event kept verbatim in `body`
    quarantine  every rejected event, its body as received and the reason
    tokens      one agent token per agent: the SHA-256 of the token, never the token
    seq_gaps    a jump in an agent's `seq` for one source: what was expected, what came
    streams     per agent and source: the highest `seq` seen and when the agent last
                delivered, so gaps are found and silent agents noticed
    cases       one row per case, derived by the server from the case's events with the
                shared clock: state, level, due dates, highest card and the instant of
                its next change (indexed: the level-advancing job selects on it)
    cards       every card (warning, yellow, red) a case reached, with the instant; one
                row per (case, level), never deleted, only voided
    server_state  small facts the servers keep about themselves, by key (the
                fingerprint of the configuration the cases were last computed with)
    daily_counts  per department, item and local day, what the figures add up:
                cases received, closed (by outcome and timeliness), becoming and
                ceasing to be overdue, and cards issued; kept by the projector in
                the transaction that writes `cases` and `cards` (server.dailycounts)
    projection_queue  the cases whose events were stored and whose row in `cases` is
                not yet re-derived from them; written in the transaction that stores the
                events, taken by the projector (`version` counts the batches that marked it)

Every instant is a `UTCDateTime`: stored timezone-aware on PostgreSQL
(``timestamptz``) and as UTC on SQLite, and always read back as an aware
datetime in UTC. The migrations in server/migrations are written from these
definitions; a change here needs a new revision there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "DAILY_COUNTS",
    "UTCDateTime",
    "cards",
    "cases",
    "events",
    "metadata",
    "projection_queue",
    "quarantine",
    "seq_gaps",
    "server_state",
    "streams",
    "tokens",
]


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: takes aware datetimes only and always returns them aware, in UTC.

    PostgreSQL keeps the instant in ``timestamp with time zone``; SQLite has no
    time zones, so the value is written as naive UTC and read back as UTC.
    A naive datetime is refused (ValueError): its instant is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no UTC offset; the store keeps instants")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # the column type guarantees it
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    # On SQLite, one step each way instead of the decorator's two: the same text as
    # SQLAlchemy's SQLite DATETIME (ISO 8601, a space, microseconds), for a third of the
    # time. The projector and ingest convert thousands of instants a batch.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.utcoffset() is None:
                raise ValueError(f"{value.isoformat()} has no UTC offset; the store keeps instants")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            # Parsed with its zone, as the bind processor's text always takes it: `replace`
            # costs several times the parse. Other text (not written here) as before.
            try:
                parsed = datetime.fromisoformat(value + "+00:00")
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
            return parsed

        return process


#: Naming convention, so constraints have the same names on every database and in migrations.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing rowid.
_Id = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("department", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("case_id", String(128), nullable=False),
    Column("item", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("seq", BigInteger(), nullable=True),
    Column("source_agent", String(128), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("body", Text(), nullable=False, comment="the event as wire-format v1 JSON"),
    UniqueConstraint("department", "event_id"),
    Index(None, "department", "case_id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("agent", String(128), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("body", Text(), nullable=False, comment="the rejected event as received"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("agent", String(128), nullable=False, unique=True),
    Column("departments", Text(), nullable=False, comment="department codes, comma-separated"),
    Column("token_sha256", String(64), nullable=False, unique=True, comment="hex digest"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

seq_gaps = Table(
    "seq_gaps",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("agent", String(128), nullable=False),
    Column("source", String(256), nullable=False),
    Column("expected_seq", BigInteger(), nullable=False),
    Column("got_seq", BigInteger(), nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False),
)

streams = Table(
    "streams",
    metadata,
    Column("agent", String(128), primary_key=True),
    Column("source", String(256), primary_key=True, comment="'' when events name no source"),
    Column("last_seq", BigInteger(), nullable=True),
    Column("last_seen_at", UTCDateTime(), nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("department", String(64), primary_key=True),
    Column("case_id", String(128), primary_key=True),
    Column("item", String(64), nullable=False),
    Column("state", String(16), nullable=False, comment="open, closed or invalid"),
    Column("level", String(16), nullable=False),
    Column("accepted_at", UTCDateTime(), nullable=True, comment="null while invalid"),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("timeliness", String(16), nullable=True),
    Column("promised_due", Date(), nullable=True, comment="local date"),
    Column("legal_due", Date(), nullable=True, comment="local date"),
    Column("card", String(16), nullable=True, comment="the highest card reached"),
    Column("next_change_at", UTCDateTime(), nullable=True),
    Column("anomalies", Integer(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column(
        "schedule",
        Text(),
        nullable=True,
        comment="the open case's next changes as time passes (server.schedules), JSON",
    ),
    Index(None, "next_change_at"),
    Index(None, "state", "department", "item"),
)

cards = Table(
    "cards",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("department", String(64), nullable=False),
    Column("case_id", String(128), nullable=False),
    Column("level", String(16), nullable=False, comment="warning, yellow or red"),
    Column("reached_at", UTCDateTime(), nullable=False),
    Column("voided_at", UTCDateTime(), nullable=True),
    Column("void_reason", Text(), nullable=True),
    UniqueConstraint("department", "case_id", "level"),
    Index(None, "reached_at"),
)

server_state = Table(
    "server_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: The counts of `daily_counts`, in the order of its columns (see server.dailycounts).
DAILY_COUNTS = (
    "received",
    "left_open",
    "completed",
    "withdrawn",
    "early",
    "on_time",
    "late",
    "overdue_began",
    "overdue_ended",
    "warnings",
    "yellow_cards",
    "red_cards",
)

daily_counts = Table(
    "daily_counts",
    metadata,
    Column("department", String(64), primary_key=True),
    Column("item", String(64), primary_key=True),
    Column("day", Date(), primary_key=True, comment="local date in the deployment's zone"),
    *(Column(name, Integer(), nullable=False, server_default="0") for name in DAILY_COUNTS),
)

projection_queue = Table(
    "projection_queue",
    metadata,
    Column("department", String(64), primary_key=True),
    Column("case_id", String(128), primary_key=True),
    Column("version", BigInteger(), nullable=False),
    Column("marked_at", UTCDateTime(), nullable=False),
    Index(None, "marked_at"),
)
