"""What the server benchmarks share: a scratch database, the reference city, target lines.

    scratch_database(kind, folder, name) -> URL   a fresh SQLite file or PostgreSQL database,
                                                   dropped (PostgreSQL) when the block ends
    reference_city() -> (Deployment, [(department, [item, ...]), ...])
    verdict(what, ok, measured) -> bool            prints ``target <what>: PASS|FAIL (...)``
    positive_int(text) -> int                      an argparse type: a count of at least 1

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust), reached
through the maintenance database ``test``, as in the test suite.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import create_engine, text

from casework.config import Deployment
from casework.configfiles import load_config

ROOT: Final = Path(__file__).resolve().parents[1]
CONFIG: Final = ROOT / "config"
POSTGRES_SERVER: Final = "postgresql+psycopg://postgres@127.0.0.1:5432"
MAINTENANCE_DATABASE: Final = "test"


@contextmanager
def scratch_database(kind: str, folder: Path, name: str) -> Iterator[str]:
    """The URL of an empty database of `kind` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / name}.db"
        return
    admin = create_engine(f"{POSTGRES_SERVER}/{MAINTENANCE_DATABASE}", isolation_level="AUTOCOMMIT")
    database = f"esup_bench_{name}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        try:
            yield f"{POSTGRES_SERVER}/{database}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def reference_city() -> tuple[Deployment, list[tuple[str, list[str]]]]:
    """The configuration in config/ and its supervised departments with their item codes."""
    deployment = load_config(CONFIG)
    departments = [
        (d.code, [item.code for item in deployment.items_of(d.code)])
        for d in deployment.supervised_departments()
    ]
    return deployment, [(code, items) for code, items in departments if items]


def verdict(what: str, ok: bool, measured: str) -> bool:
    """Print the target line the benchmarks end with; return `ok`."""
    print(f"target {what}: {'PASS' if ok else 'FAIL'} (measured {measured})")
    return ok


def positive_int(text: str) -> int:
    """An argparse type for counts: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
