"""The server's storage: tables, migrations, the raw event store and agent tokens.

tables.py     the SQLAlchemy Core schema (the migrations are made from it)
database.py   building an Engine from a URL (SQLite by default, PostgreSQL by URL)
migrate.py    applying the Alembic migrations in server/migrations
events.py     EventStore: append-only raw events, quarantine, sequence gaps
tokens.py     TokenStore: agent tokens, stored as their SHA-256 only
"""
