"""The `esup-server` command.

    esup-server run --config FILE
    esup-server recompute --config FILE [--closed]
    esup-server db upgrade [--database URL]
    esup-server token create --agent NAME --departments A,B [--config DIR] [--database URL]
    esup-server token list [--database URL]
    esup-server token revoke --agent NAME [--database URL]
    esup-server import|scores|appeal|period|operator|feed ...   (server/scores/commands.py)

`run` serves the HTTP API with the settings in FILE (config/server.yaml is
an example) and, every `advance_seconds`, advances the levels of the cases
whose next change has come (once across all servers sharing a PostgreSQL
database; see server/jobs.py); it migrates the embedded SQLite database itself, and refuses to
start on a PostgreSQL database that `db upgrade` has not brought up to date.
Before serving, `run` recomputes the open cases if the catalog, calendar or time
zone changed since the cases were last computed (see server/reconfigure.py);
`recompute` does so on demand, with `--closed` for closed cases too.
`--database` defaults to the embedded SQLite file ``var/esup.db`` under the
working directory. Problems are printed to stderr as whole sentences; the
exit status is 0 on success, 1 when the database or a token refuses the
action, and 2 for bad input (argparse's usage errors, an unknown department,
an invalid configuration directory).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Engine

from casework.config import Deployment
from casework.configfiles import load_config
from casework.errors import ConfigErrors, EsupError
from server.errors import TokenError, UnknownDepartmentError
from server.scores.commands import register as register_score_commands
from server.settings import load_settings
from server.store.database import DEFAULT_URL, make_engine, shown
from server.store.migrate import check_current, upgrade_engine
from server.store.tokens import TokenStore

EXIT_REFUSED: Final = 1
EXIT_INVALID: Final = 2

Handler = Callable[[argparse.Namespace, IO[str]], int]


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"SQLAlchemy database URL (default: {DEFAULT_URL}; PostgreSQL: "
        "postgresql+psycopg://user@host:5432/esup)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esup-server",
        description="The esup server: its database and the tokens of its agents.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="serve the HTTP API",
        description="Serve the HTTP API (ingest, health, OpenAPI) with the given settings.",
    )
    run.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the server's settings file (example: config/server.yaml)",
    )
    run.set_defaults(handler=_run)

    recompute = commands.add_parser(
        "recompute",
        help="recompute the cases with the current configuration",
        description="Recompute every open case with the catalog and calendar of the settings' "
        "configuration directory, and record that configuration as the one the cases follow. "
        "With --closed, closed cases too; each closed case that changes is logged before "
        "and after.",
    )
    recompute.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the server's settings file (example: config/server.yaml)",
    )
    recompute.add_argument(
        "--closed",
        action="store_true",
        help="recompute closed cases too (their timeliness and cards may change)",
    )
    recompute.set_defaults(handler=_recompute)

    db = commands.add_parser("db", help="manage the database", description="Manage the database.")
    db_actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = db_actions.add_parser(
        "upgrade",
        help="create or migrate the tables to this version",
        description="Apply every missing migration; a database already up to date is unchanged.",
    )
    _database_option(upgrade)
    upgrade.set_defaults(handler=_db_upgrade)

    token = commands.add_parser(
        "token",
        help="create, list and revoke agent tokens",
        description="Each agent sends one bearer token; it names the departments the agent "
        "may report for. Only the token's SHA-256 is stored.",
    )
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser(
        "create",
        help="create an agent's token and print it once",
        description="Create a token for an agent and print it; it cannot be shown again.",
    )
    create.add_argument("--agent", required=True, metavar="NAME", help="the agent's name")
    create.add_argument(
        "--departments",
        required=True,
        metavar="A,B",
        help="comma-separated department codes the agent may report for",
    )
    create.add_argument(
        "--config",
        type=Path,
        default=Path("config"),
        metavar="DIR",
        help="configuration directory whose departments.yaml defines the codes (default: config)",
    )
    _database_option(create)
    create.set_defaults(handler=_token_create)

    listing = token_actions.add_parser(
        "list", help="list every agent's token", description="List agents and their tokens' state."
    )
    _database_option(listing)
    listing.set_defaults(handler=_token_list)

    revoke = token_actions.add_parser(
        "revoke",
        help="revoke an agent's token at once",
        description="Revoke an agent's token; its next request is refused.",
    )
    revoke.add_argument("--agent", required=True, metavar="NAME", help="the agent's name")
    _database_option(revoke)
    revoke.set_defaults(handler=_token_revoke)
    register_score_commands(commands)
    return parser


def _with_tokens(args: argparse.Namespace, action: Callable[[TokenStore], int]) -> int:
    engine: Engine = make_engine(args.database)
    try:
        check_current(engine)
        return action(TokenStore(engine))
    finally:
        engine.dispose()


LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _run(args: argparse.Namespace, out: IO[str]) -> int:
    import uvicorn  # only the server process needs it

    from server.app import create_app
    from server.cases import CaseProjector
    from server.dailycounts import ensure_daily_counts
    from server.jobs import AdvanceJob, start_scheduler
    from server.liveconfig import ConfigReloader, Configuration, ConfigWatcher, LiveConfig
    from server.projection import Projection, ProjectionWorker, ProjectorProcess
    from server.reconfigure import put_in_service, recompute_on_start

    settings = load_settings(args.config)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    engine = make_engine(settings.database)
    try:
        if engine.dialect.name == "sqlite":
            upgrade_engine(engine)  # the embedded database looks after itself
        else:
            check_current(engine)  # several servers may share it: an operator migrates
        # Readiness probes read the revision; the migration context need not say so each time.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
        # The job logs each run itself; the scheduler's own line per run adds nothing.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        # The alert jobs log each run; httpx's line per request adds nothing.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        live = LiveConfig(Configuration.of(load_config(settings.config_dir)))
        projector = CaseProjector(
            engine, live().clock, live().deployment, config=live().fingerprint
        )
        # Cases computed with another catalog or calendar are brought up to date first.
        recompute_on_start(projector, live().fingerprint)
        # The figures add up per local day; built afresh when the zone is new to them.
        ensure_daily_counts(engine, live().deployment.settings.zone)
        # Ingest answers once the events are stored; their cases are queued in the same
        # transaction and projected here in the background (server/projection.py).
        worker: ProjectionWorker | ProjectorProcess
        if settings.projection == "thread":
            worker = ProjectionWorker(Projection(engine, projector.refresh))
            heard = worker.wake
        else:
            worker, heard = ProjectorProcess(args.config), None
        # A changed config/ (watched, or SIGHUP) is put in service the same way; the
        # projection process watches it too, and hears the server's SIGHUP.
        live.listen(lambda old, new: put_in_service(projector, old, new))
        reload = ConfigReloader(settings.config_dir, live)

        def on_sighup(*_: object) -> None:
            threading.Thread(target=reload).start()
            if isinstance(worker, ProjectorProcess):
                worker.reload()

        signal.signal(signal.SIGHUP, on_sighup)
        watcher = (
            ConfigWatcher(settings.config_dir, reload, quiet=settings.config_quiet_seconds).start()
            if settings.watch_config
            else None
        )
        app = create_app(settings, engine=engine, config=live, on_accepted=heard)
        app.state.metrics_collector.warm_up()  # the first scrape need not read the store
        print(
            f"esup-server on http://{settings.listen.host}:{settings.listen.port}"
            f" with the database at {shown(settings.database)}",
            file=out,
            flush=True,
        )
        job = AdvanceJob.for_engine(
            engine, projector.advance, interval=timedelta(seconds=settings.advance_seconds)
        )
        scheduler = start_scheduler(job)
        # Per-case alerts to Alertmanager or a webhook, when the settings name one.
        from server.alerts import alert_jobs
        from server.jobs import schedule
        from server.metrics.jobs import JobsCollector

        extra_jobs = alert_jobs(engine, live().deployment, settings, listen=live.listen)
        for extra in extra_jobs:
            schedule(extra, scheduler)
        app.state.metrics_registry.register(JobsCollector([job, *extra_jobs]))
        feed_scheduler = _start_feed(engine, live().deployment, settings.config_dir)
        worker.start()  # it first projects whatever a previous process left queued
        try:
            uvicorn.run(
                app,
                host=settings.listen.host,
                port=settings.listen.port,
                log_config=None,
                access_log=False,  # the app logs one line per request itself
            )
        finally:
            job.stop()  # a run holding the lock lets go at once
            for extra in extra_jobs:
                extra.stop()
            worker.stop()
            scheduler.shutdown(wait=True)
            feed_scheduler.shutdown(wait=True)
            if watcher is not None:
                watcher.stop()
    finally:
        engine.dispose()
    return 0


def _start_feed(engine: Engine, deployment: Deployment, config_dir: Path) -> Any:
    """The scores' scheduler: closed periods checked for late changes, and the feed."""
    from server.scores.feedjob import FeedJob, start_feed_scheduler
    from server.scores.rules import rules_for
    from server.scores.service import ScoreService

    rules = rules_for(config_dir)
    job = FeedJob(ScoreService(engine, deployment, rules), rules.feed)
    return start_feed_scheduler(job, deployment.settings.zone)


def _recompute(args: argparse.Namespace, out: IO[str]) -> int:
    from casework.clock import Clock
    from server.cases import CaseProjector
    from server.reconfigure import clock_fingerprint, recompute_cases

    settings = load_settings(args.config)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    deployment = load_config(settings.config_dir)
    engine = make_engine(settings.database)
    try:
        check_current(engine)
        fingerprint = clock_fingerprint(deployment)
        clock = Clock.for_deployment(deployment)
        projector = CaseProjector(engine, clock, deployment, config=fingerprint)
        done = recompute_cases(projector, fingerprint, closed=args.closed)
    finally:
        engine.dispose()
    which = "every case" if args.closed else "the open cases"
    print(
        f"Recomputed {which}: {done.looked_at} looked at, {done.changed} changed,"
        f" {done.closed_changed} of them closed.",
        file=out,
    )
    print(f"The cases now follow the configuration {fingerprint[:12]}.", file=out)
    return 0


def _db_upgrade(args: argparse.Namespace, out: IO[str]) -> int:
    engine = make_engine(args.database)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()
    print(f"The database at {shown(args.database)} is up to date.", file=out)
    return 0


def _department_codes(text: str, config: Path) -> list[str]:
    """The codes in `text` (comma-separated), each checked against `config`'s departments."""
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes:
        raise ValueError(f"--departments names no department code (got {text!r})")
    known = {d.code for d in load_config(config).departments}
    for code in codes:
        if code not in known:
            near = difflib.get_close_matches(code, sorted(known), n=1)
            raise UnknownDepartmentError(code, str(config / "departments.yaml"), near)
    return codes


def _token_create(args: argparse.Namespace, out: IO[str]) -> int:
    codes = _department_codes(args.departments, args.config)

    def create(store: TokenStore) -> int:
        token = store.create(args.agent, codes)
        print(f"Token for agent {args.agent!r} ({', '.join(sorted(set(codes)))}):", file=out)
        print(token, file=out)
        print("Keep it now: it cannot be shown again; only its hash is stored.", file=out)
        return 0

    return _with_tokens(args, create)


def _token_list(args: argparse.Namespace, out: IO[str]) -> int:
    def listing(store: TokenStore) -> int:
        infos = store.list()
        if not infos:
            print("No agent has a token yet.", file=out)
            return 0
        width = max(len("AGENT"), *(len(i.agent) for i in infos))
        print(f"{'AGENT':<{width}}  {'STATE':<7}  {'CREATED (UTC)':<20}  DEPARTMENTS", file=out)
        for info in infos:
            state = "live" if info.live else "revoked"
            created = info.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            departments = ",".join(info.departments)
            print(f"{info.agent:<{width}}  {state:<7}  {created:<20}  {departments}", file=out)
        return 0

    return _with_tokens(args, listing)


def _token_revoke(args: argparse.Namespace, out: IO[str]) -> int:
    def revoke(store: TokenStore) -> int:
        store.revoke(args.agent)
        print(f"The token of agent {args.agent!r} is revoked.", file=out)
        return 0

    return _with_tokens(args, revoke)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run `esup-server` with `argv` (default: the command line); the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, out)
    except ConfigErrors as exc:
        for problem in exc.errors:
            print(problem, file=err)
        print(f"{len(exc.errors)} problem(s) in {args.config}; nothing was done.", file=err)
        return EXIT_INVALID
    except TokenError as exc:
        print(exc, file=err)
        return EXIT_REFUSED
    except ValueError as exc:  # an unknown department, a bad URL or name
        print(exc, file=err)
        return EXIT_INVALID
    except EsupError as exc:
        print(exc, file=err)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
