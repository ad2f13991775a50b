"""The `esup-agent` command.

    esup-agent run --config FILE
    esup-agent status --config FILE [--json]
    esup-agent dead-letters list --config FILE [--limit N] [--json]
    esup-agent dead-letters replay --config FILE (--all | --id N [--id N ...])

`run` reads the sources and delivers until SIGTERM or SIGINT, then stops the
sources, flushes for at most ``delivery.stop_flush_seconds`` and exits 0;
whatever was not delivered stays in the outbox. `status` and `dead-letters`
read the state database and may run while the agent runs (a replay is seen
by a running agent at once; its counters catch up at its next start).
Problems are printed to stderr as whole sentences; the exit status is 0 on
success, 1 when the agent failed while running and 2 for bad input (usage,
an invalid config file).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Final

from agent.config import AgentConfig, load_agent_config
from agent.outbox import Outbox
from agent.status import OpenCasesSection, StatusSection, collect_status, render_status
from casework.errors import ConfigErrors

__all__ = ["build_parser", "main"]

EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the agent's config file (example: config/agent.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esup-agent",
        description="The esup agent: reads case events and delivers them to the server.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="read the sources and deliver until stopped")
    _config_option(run)
    status = commands.add_parser("status", help="outbox, dead letters and sources")
    _config_option(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    dead = commands.add_parser("dead-letters", help="events the server refused")
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list the dead letters, oldest first")
    _config_option(listing)
    listing.add_argument("--limit", type=int, default=None, metavar="N")
    listing.add_argument("--json", action="store_true", help="print JSON Lines")
    replay = actions.add_parser("replay", help="put dead letters back into the outbox")
    _config_option(replay)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("--id", type=int, action="append", metavar="N", help="this dead letter")
    return parser


def _run(config: AgentConfig, err: IO[str]) -> int:
    from agent.catalogcache import CatalogError
    from agent.service import AgentService

    try:
        service = AgentService(config)
    except CatalogError as exc:
        print(f"esup-agent: {exc}", file=err)
        return EXIT_FAILED

    def _stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.run()
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    sections: Sequence[StatusSection] | None = None,
) -> int:
    """Run one command; its exit status. `sections` are the further parts of `status`
    (by default: open cases by level)."""
    if sections is None:
        sections = (OpenCasesSection(),)
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        config = load_agent_config(args.config)
    except ConfigErrors as exc:
        print(exc, file=err)
        return EXIT_INVALID
    if args.command == "run":
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        try:
            return _run(config, err)
        except ConfigErrors as exc:
            print(exc, file=err)
            return EXIT_INVALID
        except OSError as exc:
            print(f"esup-agent: {exc}", file=err)
            return EXIT_FAILED
    from agent.statedb import open_state_db

    conn = open_state_db(config.state_db)
    try:
        outbox = Outbox(config.outbox_cap_bytes)
        outbox.load(conn)
        if args.command == "status":
            report = collect_status(config, conn, sections)
            text = json.dumps(report, ensure_ascii=False, indent=2) if args.json else None
            print(text or render_status(report), file=out)
            return 0
        if args.action == "list":
            letters = outbox.list_dead(conn, args.limit)
            for letter in letters:
                if args.json:
                    record = {
                        "id": letter.id,
                        "source": letter.source,
                        "seq": letter.seq,
                        "event_id": letter.event_id,
                        "status": letter.status,
                        "reason": letter.reason,
                        "event": json.loads(letter.body),
                    }
                    print(json.dumps(record, ensure_ascii=False), file=out)
                else:
                    print(
                        f"#{letter.id} {letter.source} seq {letter.seq} event"
                        f" {letter.event_id!r}: {letter.reason}",
                        file=out,
                    )
            if not args.json:
                print(f"{len(letters)} dead letter(s)", file=out)
            return 0
        count = outbox.replay(conn, None if args.all else args.id)
        print(f"{count} dead letter(s) put back into the outbox", file=out)
        return 0
    finally:
        conn.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
