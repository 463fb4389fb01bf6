"""The `reid` command (`python -m reid`): what a researcher runs outside the DVC stages.

Each sub-command is a module here with `add_parser(subparsers)` and `run(args)`. Bad input is
one `error:` line and exit status 1; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reid.commands import compare, embed, export, info, rank
from reid.errors import InputError, one_line

COMMANDS = {"compare": compare, "embed": embed, "export": export, "info": info, "rank": rank}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reid", description="Person re-identification pipeline tools.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(subparsers, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (InputError, FileNotFoundError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
