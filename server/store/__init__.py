"""The server's storage: tables, migrations, the raw event store and agent tokens.

tables.py     the SQLAlchemy Core schema (the migrations are made from it)
database.py   building an Engine from a URL (SQLite by default, PostgreSQL by URL)
migrate.py    applying the Alembic migrations in server/migrations
events.py     EventStore: append-only raw events, quarantine, sequence gaps
tokens.py     TokenStore: agent tokens, stored as their SHA-256 only
"""

# The scores' tables share `tables.metadata`; importing them here puts them in it whenever
# the store is used, so the migrations' environment and their checks always see them.
from server.store import scoretables as scoretables
