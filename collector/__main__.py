"""``python -m collector COMMAND``: the collector's commands without the umbrella ``apiward`` CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from collector.cli import add_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector", description="apiward collector")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
