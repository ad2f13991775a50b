"""The `esup` command: one sub-command per module, each registering itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from esup import configcmd, demo, explain, simulatecmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esup",
        description="Electronic supervision of approval and service cases.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    configcmd.register(sub)
    explain.register(sub)
    simulatecmd.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
