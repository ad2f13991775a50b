"""Alembic migrations of the server's tables; `server.store.migrate` applies them.

A new revision goes in versions/, named ``rNNNN_what.py`` with revision id
``rNNNN``, written against `server.store.tables` (compare with
``alembic.autogenerate.compare_metadata``; tests/server checks they agree).
"""
