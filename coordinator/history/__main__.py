"""``python -m coordinator.history``: ``jm history`` without the installed entry point."""

import argparse
import sys

from coordinator.commands import history


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jm")
    history.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["history", *argv])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
