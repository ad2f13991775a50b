"""Benchmark of ingest over HTTP against raw storage of the same rows.

Starts a real ``esup-server run`` on a fresh database (SQLite, or PostgreSQL
with ``--postgres``), posts seeded events in batches of 1,000 as JSON Lines
from `--agents` agents at once (default 4; each with its own token, its own
keep-alive connection and its own ``source`` and ``seq``, sending its share of
the batches in order, each batch waiting for its answer, as agents beside
several workflow systems do), and again from one agent that sends them all,
and reports events per second from the first post
to the last answer, then how long the server takes to project every case
(``GET /api/v1/projection`` until nothing is pending; the answer comes once
the events are stored, the case state after). The baseline stores the same
rows in a table of the same shape with the database's fastest plain path:
``sqlite3`` ``executemany`` (SQLite) or ``COPY`` through psycopg (PostgreSQL),
one transaction per batch, measured in the same run. With ``--thread`` a row
runs the projection in a server thread instead of its own process; a last row
serves the same application without any projection (``on_accepted=None``, no
projector) in a process of its own, to show what ingest alone costs.

    python bench/ingest.py [--postgres] [--events N] [--batch B] [--seed S]
                           [--repeat R] [--agents A] [--thread] [--skip-no-projection]
                           [--strict]

Times are wall-clock (the server is another process, its projector a third;
on PostgreSQL the database is one more); server CPU counts the server and its
children. Exit status: 2 when the server did not accept every event, stored a
different number of rows than the baseline, or did not project every case;
1 when a target is missed and ``--strict`` is given, else 0. See
docs/benchmarks.md, "Ingest".
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from rich.console import Console
from rich.table import Table
from scratch import CONFIG, positive_int, reference_city, scratch_database, verdict
from sqlalchemy import func, select

from server.store import tables
from server.store.database import make_engine
from server.store.migrate import upgrade_engine
from server.store.tokens import TokenStore

TARGET_RATE = 50_000  # events/s end to end
TARGET_RATIO = 0.3  # of the raw storage rate
CST = timezone(timedelta(hours=8))
AGENT = "bench-agent"


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    body: bytes  # JSON Lines, as posted
    rows: list[tuple[Any, ...]]  # the same events as `events` rows, for the baseline
    stream: int  # which of the `streams` it belongs to (its agent, with several agents)


def make_batches(n_events: int, batch: int, seed: int, streams: int = 1) -> list[Batch]:
    """Seeded events of cases accepted in 2026 and, for most, completed a few days later.

    Each case's events go in the same batch, so each batch names ~batch/2 cases.
    The batches are dealt in turn to `streams` sources (``source`` ``s1``, ``s2``...),
    and `seq` runs 1, 2, 3... in each, as an agent sends it: one agent may send them
    all, or one agent each.
    """
    rng = random.Random(seed)
    _, departments = reference_city()
    start = datetime(2026, 1, 5, 9, 0, tzinfo=CST)
    received = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    batches: list[Batch] = []
    count = 0
    seqs = [0] * streams
    case_no = 0
    while count < n_events:
        lines: list[str] = []
        rows: list[tuple[Any, ...]] = []
        stream = len(batches) % streams
        while len(lines) < batch and count < n_events:
            case_no += 1
            department, items = rng.choice(departments)
            item = rng.choice(items)
            case_id = f"C{case_no:09d}"
            accepted = start + timedelta(minutes=rng.randrange(300 * 24 * 60))
            kinds = [("accepted", accepted)]
            if len(lines) + 1 < batch and count + 1 < n_events:
                kinds.append(("completed", accepted + timedelta(days=rng.randrange(1, 20))))
            for type_, at in kinds:
                count += 1
                seqs[stream] += 1
                seq = seqs[stream]
                event = {
                    "event_id": f"{case_id}-{type_}",
                    "seq": seq,
                    "source": f"s{stream + 1}",
                    "case_id": case_id,
                    "department": department,
                    "item": item,
                    "type": type_,
                    "at": at.isoformat(),
                }
                line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                lines.append(line)
                at_utc = at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
                ids = (department, event["event_id"], case_id, item, type_)
                rows.append((*ids, at_utc, seq, AGENT, received, line))
        batches.append(Batch("\n".join(lines).encode("utf-8"), rows, stream))
    return batches


# -- the server under test -------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command() -> list[str]:
    script = Path(sys.executable).parent / "esup-server"
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


@contextmanager
def running_server(
    folder: Path, database: str, projection: bool, where: str = "process", processes: int = 0
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a ready server on `database`: ``esup-server run`` when `projection`,
    else this script's ``--serve-without-projection`` (the same app, ``on_accepted=None``)."""
    port = free_port()
    config = folder / f"server-{port}.yaml"
    config.write_text(
        f"database: {database}\nconfig_dir: {CONFIG}\n"
        f"listen: {{host: 127.0.0.1, port: {port}}}\nadvance_seconds: 3600\n"
        + (f"projection: {where}\n" if where else "")
        + f"ingest_processes: {processes}\n",
        encoding="utf-8",
    )
    if projection:
        command = [*server_command(), "run", "--config", str(config)]
    else:
        command = [sys.executable, __file__, "--serve-without-projection", str(config)]
    log = (folder / f"server-{port}.log").open("w+", encoding="utf-8")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited early:\n{log.read()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server was not ready within 60 s")
            time.sleep(0.05)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def serve_without_projection(config: Path) -> int:
    """The app of ``esup-server run`` with no case projection and no advancing job."""
    import uvicorn

    from server.app import create_app
    from server.settings import load_settings

    settings = load_settings(config)
    engine = make_engine(settings.database)
    app = create_app(settings, engine=engine, on_accepted=None)
    uvicorn.run(
        app, host=settings.listen.host, port=settings.listen.port, log_config=None, access_log=False
    )
    engine.dispose()
    return 0


def process_cpu(pid: int) -> float:
    """User plus system CPU seconds of process `pid` and its children so far."""
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Run:
    seconds: float  # from the first post to the last answer
    client_cpu: float
    server_cpu: float  # over `seconds`
    stored: int  # events answered accepted
    catch_up: float = 0.0  # from the last answer until no case waits for projection
    catch_up_cpu: float = 0.0  # server CPU over `catch_up`
    cases: int = 0  # rows in `cases` afterwards


def post_all(
    url: str, batches: Sequence[Batch], tokens: Sequence[str], server_pid: int, projection: bool
) -> Run:
    """Post every batch, each agent (one per token) its streams' batches in order over a
    keep-alive connection of its own, the agents at once (one thread each); check each
    batch was accepted. With `projection`, then wait until the server reports no case
    queued for projection."""
    clients = [
        httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
            timeout=120,
        )
        for token in tokens
    ]
    accepted = [0] * len(clients)
    failures: list[BaseException] = []

    def send(agent: int) -> None:
        try:
            for batch in batches[agent :: len(clients)]:
                response = clients[agent].post("/api/v1/events", content=batch.body)
                response.raise_for_status()
                accepted[agent] += response.json()["accepted"]
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    try:
        for client in clients:
            client.get("/healthz")  # open the connections before timing
        agents = [threading.Thread(target=send, args=(n,)) for n in range(len(clients))]
        cpu0, server0 = time.process_time(), process_cpu(server_pid)
        start = time.perf_counter()
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.join()
        seconds = time.perf_counter() - start
        cpu, server = time.process_time() - cpu0, process_cpu(server_pid) - server0
        if failures:
            raise failures[0]
        run = Run(seconds, cpu, server, sum(accepted))
        client = clients[0]
        if projection:
            deadline = time.monotonic() + 600
            while client.get("/api/v1/projection").json()["pending"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the projection did not catch up within 600 s")
                time.sleep(0.01)
            run.catch_up = time.perf_counter() - start - seconds
            run.catch_up_cpu = process_cpu(server_pid) - server0 - server
    finally:
        for client in clients:
            client.close()
    return run


def ingest_over_http(
    kind: str,
    folder: Path,
    batches: Sequence[Batch],
    projection: bool,
    where: str,
    name: str,
    agents: int,
    processes: int,
) -> tuple[Run, int]:
    """One run on a fresh database with `agents` agents sending at once: (timing, rows in
    `events` afterwards)."""
    with scratch_database(kind, folder, name) as url:
        engine = make_engine(url)
        try:
            upgrade_engine(engine)
            codes = [code for code, _ in reference_city()[1]]
            store = TokenStore(engine)
            tokens = [store.create(f"{AGENT}-{n + 1}", codes) for n in range(agents)]
            with running_server(folder, url, projection, where, processes) as (base, pid):
                run = post_all(base, batches, tokens, pid, projection)
            with engine.connect() as connection:
                rows = connection.execute(select(func.count()).select_from(tables.events))
                cases = connection.execute(select(func.count()).select_from(tables.cases))
                run.cases = int(cases.scalar_one())
                return run, int(rows.scalar_one())
        finally:
            engine.dispose()


# -- baselines -------------------------------------------------------------------------------

COLUMNS = "department, event_id, case_id, item, type, at, seq, source_agent, received_at, body"


def raw_sqlite(folder: Path, batches: Sequence[Batch], name: str) -> tuple[float, int]:
    """`executemany` of every batch's rows into an `events` table made by the migrations."""
    path = folder / f"{name}.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_engine(engine)
    engine.dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    insert = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    start = time.perf_counter()
    for batch in batches:
        connection.execute("BEGIN")
        connection.executemany(insert, batch.rows)
        connection.execute("COMMIT")
    seconds = time.perf_counter() - start
    stored = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    connection.close()
    return seconds, stored


def raw_postgres(folder: Path, batches: Sequence[Batch], name: str) -> tuple[float, int]:
    """``COPY`` of every batch's rows into an `events` table made by the migrations."""
    with scratch_database("postgresql", folder, name) as url:
        engine = make_engine(url)
        upgrade_engine(engine)
        engine.dispose()
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        # COPY takes timestamps with an offset; the rows carry naive UTC.
        pg_batches = [
            [(*r[:5], r[5] + "+00", r[6], r[7], r[8] + "+00", r[9]) for r in b.rows]
            for b in batches
        ]
        with psycopg.connect(dsn) as connection:
            start = time.perf_counter()
            for rows in pg_batches:
                with (
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
                connection.commit()
            seconds = time.perf_counter() - start
            stored = connection.execute("SELECT count(*) FROM events").fetchone()
        return seconds, int(stored[0]) if stored else 0


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--events", type=positive_int, default=50_000, help="events posted per run")
    parser.add_argument("--batch", type=positive_int, default=1_000, help="events per request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat", type=positive_int, default=1, help="timed runs; the best counts"
    )
    parser.add_argument(
        "--skip-no-projection",
        dest="without_projection",
        action="store_false",
        help="skip the row without the case projection",
    )
    parser.add_argument(
        "--thread", action="store_true", help="also run with the projection in a server thread"
    )
    parser.add_argument(
        "--agents",
        type=positive_int,
        default=4,
        help="agents sending at once, each its share of the batches in order (default 4)",
    )
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=0,
        metavar="N",
        help="the server's ingest_processes setting in every row (default 0: ingest in the "
        "server process); with N > 0 a last row shows the same agents with 0",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve-without-projection", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_without_projection:
        return serve_without_projection(args.serve_without_projection)
    out = Console(highlight=False, width=120)
    kind = "postgresql" if args.postgres else "sqlite"

    started = time.perf_counter()
    batches = make_batches(args.events, args.batch, args.seed, args.agents)
    n = sum(len(b.rows) for b in batches)
    size = sum(len(b.body) for b in batches)
    out.print(
        f"built {n:,} events in {len(batches):,} batches ({size / len(batches) / 1024:.0f} KiB "
        f"each) in {time.perf_counter() - started:.1f} s (seed {args.seed}); database {kind}"
    )

    with tempfile.TemporaryDirectory(prefix="esup-bench-") as tmp:
        folder = Path(tmp)
        raw = raw_postgres if args.postgres else raw_sqlite
        base_runs = [raw(folder, batches, f"raw{i}") for i in range(args.repeat)]
        base_s, base_rows = min(base_runs)
        http: list[tuple[str, Run, int]] = []
        many = f"{args.agents} agents at once" if args.agents > 1 else "one agent"
        workers = args.ingest_processes
        many += f", {workers} ingest processes" if workers else ""
        variants = [
            (True, "process", args.agents, workers, f"esup over HTTP, {many}, projection process")
        ]
        if args.agents > 1:
            one = f"one agent, {workers} ingest processes" if workers else "one agent"
            label = f"esup over HTTP, {one}, projection process"
            variants.append((True, "process", 1, workers, label))
        if args.thread:
            label = f"esup over HTTP, {many}, thread"
            variants.append((True, "thread", args.agents, workers, label))
        if args.without_projection:
            label = f"esup over HTTP, {many}, no projection"
            variants.append((False, "", args.agents, workers, label))
        if workers:
            label = f"esup over HTTP, {args.agents} agents, ingest in the server process"
            variants.append((True, "process", args.agents, 0, label))
        for number, (projection, where, agents, processes, label) in enumerate(variants):
            runs = [
                ingest_over_http(
                    kind,
                    folder,
                    batches,
                    projection,
                    where,
                    f"http{number}{i}",
                    agents,
                    processes,
                )
                for i in range(args.repeat)
            ]
            run, stored = min(runs, key=lambda r: r[0].seconds + r[0].catch_up)
            http.append((label, run, stored))

    n_cases = len({(row[0], row[2]) for b in batches for row in b.rows})
    for label, run, stored in http:
        if run.stored != n or stored != base_rows:
            print(
                f"{label}: {run.stored:,} events accepted and {stored:,} rows stored, "
                f"but {n:,} were posted and the baseline stored {base_rows:,}",
                file=sys.stderr,
            )
            return 2
    for (projection, *_), (label, run, _) in zip(variants, http, strict=True):
        if projection and run.cases != n_cases:
            print(
                f"{label}: {run.cases:,} cases projected, but the events name {n_cases:,}",
                file=sys.stderr,
            )
            return 2

    base_rate = n / base_s
    baseline_name = "baseline: sqlite3 executemany" if kind == "sqlite" else "baseline: COPY"
    table = Table(title=f"Ingest into {kind}: batches of {args.batch:,}, best of {args.repeat}")
    columns = (
        "implementation",
        "events",
        "wall s",
        "events/s",
        "× baseline",
        "server CPU s",
        "catch-up s",
        "events/s with catch-up",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "implementation" else "right")
    for label, run, _ in http:
        rate = n / run.seconds
        whole = n / (run.seconds + run.catch_up)
        table.add_row(
            label,
            f"{n:,}",
            f"{run.seconds:.2f}",
            f"{rate:,.0f}",
            f"{rate / base_rate:.2f}",
            f"{run.server_cpu:.2f}",
            f"{run.catch_up:.2f}" if run.cases else "never",
            f"{whole:,.0f}" if run.cases else "",
        )
    table.add_row(baseline_name, f"{n:,}", f"{base_s:.2f}", f"{base_rate:,.0f}", "1.00", "", "", "")
    out.print(table)
    for label, run, _ in http:
        out.print(
            f"{label}: client CPU {run.client_cpu:.2f} s, server process CPU {run.server_cpu:.2f} "
            f"s ({run.server_cpu / run.seconds:.0%} of a core) over {run.seconds:.2f} s"
        )
    for (projection, *_), (label, run, _) in zip(variants, http, strict=True):
        if projection:
            out.print(
                f"{label}: all {run.cases:,} cases projected {run.catch_up:.2f} s after the "
                f"last answer (server CPU {run.catch_up_cpu:.2f} s meanwhile)"
            )

    rate = n / http[0][1].seconds
    ok = verdict(f"ingest {kind} >= {TARGET_RATE:,} events/s", rate >= TARGET_RATE, f"{rate:,.0f}")
    ok &= verdict(
        f"ingest {kind} ratio >= {TARGET_RATIO}",
        rate / base_rate >= TARGET_RATIO,
        f"{rate / base_rate:.2f}",
    )
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
