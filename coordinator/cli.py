"""The ``jm`` command line.

Each command group registers itself on the parser. Commands that belong to
other packages (the worker's ``jm worker``) arrive through the
``kafka_jobmanager.cli`` entry-point group, so this module never imports
``worker``: the two packages share only ``schemas``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:  # `jm --help` loads no Kafka module: aiokafka is imported by the commands
    from aiokafka.errors import KafkaError

CLI_ENTRY_POINTS = "kafka_jobmanager.cli"
#: This package's command groups, also declared under CLI_ENTRY_POINTS, each with the
#: commands it registers. Loaded directly: reading the entry points means importing
#: importlib.metadata and scanning every installed distribution (60 ms of every jm
#: command), needed only for a command another package adds (`jm worker`) and for the
#: whole list (`jm --help`). A command of this table loads its own group alone: the
#: other six and their parsers took 45-75 ms of every `jm replay` and `jm status`.
BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    "coordinator.commands.events": ("events",),
    "coordinator.commands.history": ("history",),
    "coordinator.commands.jobs": ("artifacts", "cancel", "savepoint", "stop", "submit"),
    "coordinator.commands.keys": ("keys",),
    "coordinator.commands.replica": ("config", "coordinator", "drill", "replicas"),
    "coordinator.commands.state": ("list", "replay", "state", "status"),
    "coordinator.commands.topics": ("acls", "topics"),
}

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[SubParsers], None]
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("kafka-jobmanager")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


class _Version(argparse.Action):
    """``--version``, the installed distribution's version looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


#: What ``jm`` exits with (README "Exit codes" says the same).
EXIT_CODES = """exit codes:
  0    done (accepted, found, printed)
  1    refused or failed: the coordinator rejected the request (the reasons are
       printed), an invalid job file, no such job, a job that did not reach the
       awaited state
  2    usage: a wrong flag or argument
  3    timeout: no answer (no leader running?) or the awaited state not reached in time
  4    Kafka unreachable or refusing (check --bootstrap-servers / $KAFKA_BOOTSTRAP_SERVERS)
  130  interrupted (Ctrl-C)"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; `command`: the command about to be parsed, whose group,
    when it is one of BUILTIN_GROUPS, spares reading the entry points."""
    parser = argparse.ArgumentParser(
        prog="jm",
        description="kafka-jobmanager: a Flink-style JobManager on Kafka",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    owner = [m for m, commands in BUILTIN_GROUPS.items() if command in commands]
    for module in owner or BUILTIN_GROUPS:
        register: Register = importlib.import_module(module).register
        register(sub)
    if command is not None and command in sub.choices:
        return parser
    from importlib import metadata

    for entry in sorted(metadata.entry_points(group=CLI_ENTRY_POINTS), key=lambda e: e.name):
        if entry.module in BUILTIN_GROUPS:
            continue
        try:
            register = entry.load()
        except ImportError as err:  # one broken plugin must not take every command down
            print(f"jm: command group {entry.name!r} unavailable: {err}", file=sys.stderr)
            continue
        register(sub)
    return parser


#: Collector thresholds of a one-shot command (``common.one_shot``): a fold allocates
#: hundreds of thousands of objects, and the default 700 made 150 collections of about
#: 40 ms in all in one `jm replay --until`; these, with what the imports left frozen, 11
#: of about 15 ms.
ONE_SHOT_GC: Final = (20_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    entry = argv is None  # the process's own command (`jm`, `python -m coordinator`)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    handler: Handler = args.handler
    # A jm command says itself what went wrong with Kafka; the long-running ones
    # (coordinator, worker) configure their own logging, aiokafka's level included.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    one_shot = entry and getattr(handler, "one_shot", False)
    if one_shot:
        gc.freeze()
        gc.set_threshold(*ONE_SHOT_GC)
    try:
        code = handler(args)
        if one_shot:
            _end_now(code)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jm events dump | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        settings = sys.modules.get("schemas.settings")
        security = sys.modules.get("schemas.security")
        if (settings is not None and isinstance(err, settings.SettingsError)) or (
            security is not None and isinstance(err, security.SecurityError)
        ):
            print(f"jm: {err}", file=sys.stderr)  # a setting that cannot be used: usage
            return 2
        if "aiokafka" not in sys.modules:  # a Kafka error needs aiokafka loaded first
            raise
        from aiokafka.errors import KafkaError

        if not isinstance(err, KafkaError):
            raise
        print(f"jm: {kafka_failure(args, err)}", file=sys.stderr)
    _collect_quietly()
    return 4


def kafka_failure(args: argparse.Namespace, err: KafkaError) -> str:
    """One line for a Kafka that cannot be reached or refuses (exit 4, no traceback)."""
    servers = getattr(args, "bootstrap_servers", None) or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS", "the default bootstrap servers"
    )
    from aiokafka.errors import KafkaConnectionError

    if isinstance(err, KafkaConnectionError):
        return (
            f"cannot reach Kafka at {servers} (is it running? "
            "check --bootstrap-servers or $KAFKA_BOOTSTRAP_SERVERS)"
        )
    detail = str(err).removeprefix(f"{type(err).__name__}: ").strip()
    what = f"Kafka at {servers} failed the request: {type(err).__name__}"
    return what + (f" ({detail})" if detail and detail != type(err).__name__ else "")


def _end_now(code: int) -> None:
    """End a one-shot command's process once its output is out, without tearing the
    interpreter down (freeing a folded state's objects one by one took 30-50 ms)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _collect_quietly() -> None:
    """Clients that never connected are garbage once the error is handled: collect
    them with asyncio's "Unclosed AIOKafka..." complaint silenced (no loop runs)."""
    asyncio_log = logging.getLogger("asyncio")
    was = asyncio_log.disabled
    asyncio_log.disabled = True
    try:
        gc.collect()
    finally:
        asyncio_log.disabled = was


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
