"""The ``jm`` command line.

Each command group registers itself on the parser. Commands that belong to
other packages (the worker's ``jm worker``) arrive through the
``kafka_jobmanager.cli`` entry-point group, so this module never imports
``worker``: the two packages share only ``schemas``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TypeAlias

CLI_ENTRY_POINTS = "kafka_jobmanager.cli"

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[SubParsers], None]
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def _version() -> str:
    try:
        return metadata.version("kafka-jobmanager")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jm", description="kafka-jobmanager: a Flink-style JobManager on Kafka"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(metadata.entry_points(group=CLI_ENTRY_POINTS), key=lambda e: e.name):
        try:
            register: Register = entry.load()
        except ImportError as err:  # one broken plugin must not take every command down
            print(f"jm: command group {entry.name!r} unavailable: {err}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jm events dump | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
