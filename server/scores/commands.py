"""The `esup-server` sub-commands of scores; each reads the server's settings file (--config).

    esup-server import KIND FILE [--by WHO] --config FILE
    esup-server scores PERIOD --config FILE [--format json|csv|xlsx] [--output FILE]
    esup-server appeal file --department D --case C --level L --by WHO --reason WHY --config FILE
    esup-server appeal decide ID (--uphold | --reject) --by WHO --reason WHY --config FILE
    esup-server appeal list [--department D] [--status S] --config FILE
    esup-server period close PERIOD --by WHO --config FILE
    esup-server period restate PERIOD --reason WHY [--by WHO] --config FILE
    esup-server operator create --name N --role office|supervisor|department [--department D]
    esup-server operator revoke --name N
    esup-server feed write PERIOD --config FILE

`import` shows a progress bar on a terminal, reports every bad row (row,
column, value) and stores the good ones; its exit status is 2 when any row was
rejected. Whoever runs these commands on the server acts as the `--by` they
name; the HTTP API checks operator tokens instead.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from casework.config import Deployment
from casework.configfiles import load_config
from server.scores import feed
from server.scores.appeals import AppealStore
from server.scores.importer import import_file, record_import
from server.scores.inputs import KINDS
from server.scores.operators import ROLES, OperatorStore
from server.scores.period import Period
from server.scores.rules import ScoreRules, rules_for
from server.scores.service import ScoreService

__all__ = ["register"]

Handler = Callable[[argparse.Namespace, IO[str]], int]
EXIT_ROWS_REJECTED = 2


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the server's settings file (example: config/server.yaml)",
    )


def _open(args: argparse.Namespace) -> tuple[Engine, Deployment, ScoreRules]:
    from server.settings import load_settings
    from server.store.database import make_engine
    from server.store.migrate import check_current

    settings = load_settings(args.config)
    deployment = load_config(settings.config_dir)
    rules = rules_for(settings.config_dir)
    engine = make_engine(settings.database)
    try:
        check_current(engine)
    except Exception:
        engine.dispose()
        raise
    return engine, deployment, rules


def _with(args: argparse.Namespace, action: Callable[[Engine, Deployment, ScoreRules], int]) -> int:
    engine, deployment, rules = _open(args)
    try:
        return action(engine, deployment, rules)
    finally:
        engine.dispose()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the scores' commands to `esup-server`."""
    imp = commands.add_parser(
        "import",
        help="import the evaluation office's inputs from CSV or XLSX",
        description="Import a CSV (UTF-8) or XLSX file of one input kind; the header row "
        "names the columns (docs/scores.md). Re-importing replaces records with the same "
        "natural key. Every bad row is reported; the good ones are stored.",
    )
    imp.add_argument("kind", choices=sorted(KINDS), metavar="KIND", help=", ".join(KINDS))
    imp.add_argument("file", type=Path, metavar="FILE", help="a .csv or .xlsx file")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.add_argument("--by", default="esup-server import", help="who imports (audit trail)")
    _config(imp)
    imp.set_defaults(handler=_import)

    show = commands.add_parser(
        "scores",
        help="print or save a period's scores",
        description="The scores of a period (2025 or 2025-03) as JSON, CSV or XLSX.",
    )
    show.add_argument("period", metavar="PERIOD")
    show.add_argument("--format", choices=("json", "csv", "xlsx"), default="json")
    show.add_argument("--output", type=Path, metavar="FILE", help="write here (xlsx needs it)")
    _config(show)
    show.set_defaults(handler=_scores)

    appeal = commands.add_parser("appeal", help="file, decide and list appeals against cards")
    actions = appeal.add_subparsers(dest="action", required=True, metavar="ACTION")
    file_ = actions.add_parser("file", help="file a department's appeal against a card")
    file_.add_argument("--department", required=True)
    file_.add_argument("--case", required=True, dest="case_id")
    file_.add_argument("--level", required=True, choices=("warning", "yellow", "red"))
    file_.add_argument("--by", required=True, help="who files it")
    file_.add_argument("--reason", required=True)
    _config(file_)
    file_.set_defaults(handler=_appeal_file)
    decide = actions.add_parser("decide", help="uphold (void the card) or reject an appeal")
    decide.add_argument("appeal_id", type=int, metavar="ID")
    verdict = decide.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--uphold", action="store_true")
    verdict.add_argument("--reject", action="store_true")
    decide.add_argument("--by", required=True, help="the supervisor deciding")
    decide.add_argument("--reason", required=True)
    _config(decide)
    decide.set_defaults(handler=_appeal_decide)
    listing = actions.add_parser("list", help="list appeals with their audit trail")
    listing.add_argument("--department")
    listing.add_argument("--status", choices=("pending", "upheld", "rejected"))
    _config(listing)
    listing.set_defaults(handler=_appeal_list)

    period = commands.add_parser("period", help="close or restate an evaluation period")
    p_actions = period.add_subparsers(dest="action", required=True, metavar="ACTION")
    close = p_actions.add_parser("close", help="freeze a period's results")
    close.add_argument("period", metavar="PERIOD")
    close.add_argument("--by", required=True)
    _config(close)
    close.set_defaults(handler=_period_close)
    restate = p_actions.add_parser("restate", help="apply late changes to a closed period")
    restate.add_argument("period", metavar="PERIOD")
    restate.add_argument("--reason", required=True)
    restate.add_argument("--by", default="esup")
    _config(restate)
    restate.set_defaults(handler=_period_restate)

    operator = commands.add_parser("operator", help="tokens of the office and supervisors")
    o_actions = operator.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = o_actions.add_parser("create", help="create an operator's token and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--department", help="for the department role: its code")
    _config(create)
    create.set_defaults(handler=_operator_create)
    revoke = o_actions.add_parser("revoke", help="revoke an operator's token")
    revoke.add_argument("--name", required=True)
    _config(revoke)
    revoke.set_defaults(handler=_operator_revoke)

    feed_ = commands.add_parser("feed", help="write the scoring feed now")
    f_actions = feed_.add_subparsers(dest="action", required=True, metavar="ACTION")
    write = f_actions.add_parser(
        "write", help="write and post a period's feed as scores.yaml's feed section says"
    )
    write.add_argument("period", metavar="PERIOD")
    _config(write)
    write.set_defaults(handler=_feed_write)


def _import(args: argparse.Namespace, out: IO[str]) -> int:
    from rich.progress import Progress

    kind = KINDS[args.kind]

    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        departments = {d.code for d in deployment.departments}
        with Progress(disable=args.quiet, transient=True) as bar:
            task = bar.add_task(f"{kind.name} from {args.file.name}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            at = _utcnow()
            report = import_file(
                engine,
                kind,
                args.file,
                departments=departments,
                platforms=rules.platforms,
                now=at,
                progress=progress,
            )
        record_import(engine, report, actor=args.by, source=str(args.file), at=at)
        for error in report.errors:
            print(f"{args.file}: {error}", file=out)
        rejected = len({e.row for e in report.errors})
        print(
            f"{kind.name}: {report.rows} rows read, {report.stored} stored, {rejected} rejected.",
            file=out,
        )
        service = ScoreService(engine, deployment, rules)
        for restated in service.restate_closed(f"{kind.name} imported from {args.file.name}"):
            print(f"Closed period {restated['period']} restated: "
                  f"{len(restated['changes'])} change(s).", file=out)  # fmt: skip
        return EXIT_ROWS_REJECTED if rejected else 0

    return _with(args, run)


def _scores(args: argparse.Namespace, out: IO[str]) -> int:
    period = Period.parse(args.period)

    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        scores = ScoreService(engine, deployment, rules).scores(period)
        if args.format == "xlsx":
            if args.output is None:
                raise ValueError("--format xlsx needs --output FILE")
            args.output.write_bytes(feed.to_xlsx(scores))
            print(f"Wrote {args.output}.", file=out)
            return 0
        text = (
            feed.to_csv(scores)
            if args.format == "csv"
            else json.dumps(scores.to_json(), ensure_ascii=False, indent=2)
        )
        if args.output is None:
            print(text, file=out)
        else:
            args.output.write_text(text, encoding="utf-8")
            print(f"Wrote {args.output}.", file=out)
        return 0

    return _with(args, run)


def _show_appeal(appeal: Any, out: IO[str]) -> None:
    print(
        f"appeal {appeal.id}: {appeal.department}/{appeal.case_id} {appeal.level} — "
        f"{appeal.status}",
        file=out,
    )
    for entry in appeal.trail:
        print(f"  {entry.at.isoformat()} {entry.actor}: {entry.action} — {entry.detail}", file=out)


def _appeal_file(args: argparse.Namespace, out: IO[str]) -> int:
    def run(engine: Engine, _d: Deployment, _r: ScoreRules) -> int:
        appeal = AppealStore(engine).file(
            args.department, args.case_id, args.level, args.reason, args.by
        )
        _show_appeal(appeal, out)
        return 0

    return _with(args, run)


def _appeal_decide(args: argparse.Namespace, out: IO[str]) -> int:
    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        appeal = AppealStore(engine).decide(args.appeal_id, args.uphold, args.reason, args.by)
        _show_appeal(appeal, out)
        if args.uphold:
            service = ScoreService(engine, deployment, rules)
            for done in service.restate_closed(f"appeal {appeal.id} upheld", args.by):
                print(f"Closed period {done['period']} restated.", file=out)
        return 0

    return _with(args, run)


def _appeal_list(args: argparse.Namespace, out: IO[str]) -> int:
    def run(engine: Engine, _d: Deployment, _r: ScoreRules) -> int:
        appeals = AppealStore(engine).list(args.department, args.status)
        if not appeals:
            print("No appeal matches.", file=out)
        for appeal in appeals:
            _show_appeal(appeal, out)
        return 0

    return _with(args, run)


def _period_close(args: argparse.Namespace, out: IO[str]) -> int:
    period = Period.parse(args.period)

    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        scores = ScoreService(engine, deployment, rules).close(period, args.by)
        print(f"Period {period} closed: {len(scores.departments)} departments frozen.", file=out)
        return 0

    return _with(args, run)


def _period_restate(args: argparse.Namespace, out: IO[str]) -> int:
    period = Period.parse(args.period)

    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        done = ScoreService(engine, deployment, rules).restate(period, args.reason, args.by)
        if done is None:
            print(f"Period {period}: nothing to restate (open, or unchanged).", file=out)
        else:
            print(json.dumps(done, ensure_ascii=False, indent=2), file=out)
        return 0

    return _with(args, run)


def _operator_create(args: argparse.Namespace, out: IO[str]) -> int:
    def run(engine: Engine, deployment: Deployment, _r: ScoreRules) -> int:
        if args.department is not None:
            deployment.department(args.department)  # an unknown code is refused
        token = OperatorStore(engine).create(args.name, args.role, args.department)
        print(f"Token for operator {args.name!r} ({args.role}):", file=out)
        print(token, file=out)
        print("Keep it now: it cannot be shown again; only its hash is stored.", file=out)
        return 0

    return _with(args, run)


def _operator_revoke(args: argparse.Namespace, out: IO[str]) -> int:
    def run(engine: Engine, _d: Deployment, _r: ScoreRules) -> int:
        OperatorStore(engine).revoke(args.name)
        print(f"The token of operator {args.name!r} is revoked.", file=out)
        return 0

    return _with(args, run)


def _feed_write(args: argparse.Namespace, out: IO[str]) -> int:
    from server.scores.feedjob import FeedJob

    period = Period.parse(args.period)
    logging.basicConfig(level=logging.INFO)

    def run(engine: Engine, deployment: Deployment, rules: ScoreRules) -> int:
        job = FeedJob(ScoreService(engine, deployment, rules), rules.feed)
        for line in job.deliver(period):
            print(line, file=out)
        return 0

    return _with(args, run)
