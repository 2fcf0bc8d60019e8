"""What every ``jm`` command shares: connection flags, settings, time parsing.

Imported by every command module when ``jm`` builds its parser, so it imports
the heavy modules (pydantic settings, the catalog, asyncio) only when a command
runs: ``jm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from schemas.catalog import Catalog
    from schemas.settings import ClusterSettings

T = TypeVar("T")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--bootstrap-servers", help="Kafka (default $KAFKA_BOOTSTRAP_SERVERS)")
    group.add_argument("--redis-url", help="Redis (default $REDIS_URL)")
    group.add_argument(
        "--cluster-id", help="namespaces topics, ids and keys (default $JM_CLUSTER_ID or jm)"
    )
    from schemas.security import add_flags

    add_flags(parser.add_argument_group("Kafka SASL/TLS (docs/security.md)"))
    add_signing_flags(group)


def add_signing_flags(group: argparse._ArgumentGroup) -> None:
    """The signed-records flags (schemas/signing.py), shared with ``jm worker``."""
    group.add_argument(
        "--signing-keys", metavar="FILE",
        help="key file of signed records (default $JM_SIGNING_KEYS_FILE; `jm keys generate`)",
    )  # fmt: skip
    group.add_argument(
        "--insecure-unsigned", action="store_true",
        help="run without signing or verifying records: anyone who can write the topics "
        "controls the cluster",
    )  # fmt: skip


def settings_from(args: argparse.Namespace) -> ClusterSettings:
    """The command's settings; their Kafka SASL/TLS settings become the process's
    (``schemas.security.install``), so every client it builds uses them."""
    from schemas import security
    from schemas.settings import ClusterSettings

    settings = ClusterSettings.load(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        redis_url=getattr(args, "redis_url", None),
        cluster_id=getattr(args, "cluster_id", None),
        signing_keys=getattr(args, "signing_keys", None),
        insecure_unsigned=getattr(args, "insecure_unsigned", None),
        kafka_security=security.from_flags(args),
    )
    security.install(settings.kafka_security)
    return settings


def catalog_from(settings: ClusterSettings) -> Catalog:
    from schemas.catalog import Catalog

    return Catalog(settings.cluster_id)


def one_shot(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Mark a command that reads, prints and ends (``jm replay``, ``jm status``): run as
    the process's own command, it runs with the collector's thresholds raised over what
    the imports left (frozen) and its process ends as soon as its output is out, without
    the interpreter's teardown (``coordinator.cli.main``)."""
    setattr(handler, "one_shot", True)  # noqa: B010 - an attribute of a function
    return handler


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run an async command; Ctrl-C ends it quietly with 130."""
    import asyncio

    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        return 130


def run_value(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async step of a synchronous command."""
    import asyncio

    return asyncio.run(coro)


def fail(message: str, code: int = 2) -> int:
    print(f"jm: {message}", file=sys.stderr)
    return code


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")  # fullmatch
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time_ms(text: str, now_ms: int) -> int:
    """An instant in ms since the epoch: ISO 8601 (UTC unless it says), epoch ms, or
    a duration back from now (``90s``, ``15m``, ``2h``, ``1d``)."""
    text = text.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        return now_ms - int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601, epoch ms, or a duration like 15m"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
