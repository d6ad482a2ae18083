"""``apiward``: the collector and its readers, and the demo.

Subcommands come from the modules that own them (``collector.cli.add_commands``, ``apiward.demo``);
this module only assembles the parser and turns failures into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from apiward.console import guard_stdout


def build_parser() -> argparse.ArgumentParser:
    from apiward import demo
    from collector import cli as collector_cli

    parser = argparse.ArgumentParser(
        prog="apiward",
        description="apiward collector, inventory readers and demo",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    collector_cli.add_commands(sub)
    demo.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # "apiward endpoints | head": stop quietly when the reader goes away, as Unix tools do
    return guard_stdout(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
