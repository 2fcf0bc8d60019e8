"""``jm drill SCENARIO``: a recovery drill with a verdict (coordinator/drill.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from coordinator.commands.common import run

#: The scenarios of coordinator/drill.py, named here so `jm --help` imports no asyncio
#: (tests/test_drill.py checks the two lists are the same).
SCENARIOS = (
    "leader-kill",
    "leader-freeze",
    "worker-kill",
    "redis-outage",
    "snapshot-corrupt",
    "broker-kill",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drill",
        help="break a cluster of the drill's own on purpose, check nothing was lost",
        description=(
            "Starts a cluster of its own (a new cluster id on the given Kafka, its own "
            "Redis, replicas and workers; its own broker for broker-kill), injects the "
            "fault under a load of submissions, then checks the journal: lost 0, "
            "duplicated 0, no deposed-leader write, at most one leader at once, equal "
            "digests. Exit 0 when every check passed, 1 on any violation. "
            "See docs/operations.md."
        ),
    )
    p.add_argument(
        "scenario",
        nargs="+",
        choices=[*SCENARIOS, "all"],
        help="one or more, run in turn (those that leave the brokers alone share a cluster)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the fault timing (default 1)")
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of faults per scenario (default 60; about one fault per 10 s)",
    )
    p.add_argument("--json", action="store_true", help="the reports as JSON on stdout")
    p.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka for the drill's topics (default $KAFKA_BOOTSTRAP_SERVERS)",
    )
    p.set_defaults(handler=lambda a: run(_drill(a)))


async def _drill(args: argparse.Namespace) -> int:
    from coordinator.drill import run_drill

    def progress(line: str) -> None:
        print(f"drill: {line}", file=sys.stderr, flush=True)

    reports = await run_drill(
        args.scenario,
        bootstrap=args.bootstrap_servers,
        seed=args.seed,
        duration_s=args.duration,
        progress=progress,
    )
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(r.text() for r in reports))
    return 1 if any(r.violations for r in reports) else 0
