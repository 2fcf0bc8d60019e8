"""``jm coordinator``: run one JobManager replica (hot standby; leads when it holds the lease)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

from coordinator.commands.common import add_connection_flags, run, settings_from
from coordinator.ha.lease import LeaseConfig
from coordinator.runtime import machine
from coordinator.runtime.leader import LeaderConfig
from coordinator.runtime.replica import Replica, ReplicaConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("coordinator", help="run a coordinator replica (leader or hot standby)")
    add_connection_flags(p)
    p.add_argument("--id", dest="replica_id", default=None,
                   help="replica id (default: host-pid)")  # fmt: skip
    p.add_argument("--lease-ttl-ms", type=int, default=3_000)
    p.add_argument("--heartbeat-timeout-ms", type=int, default=5_000)
    p.add_argument("--slot-wait-timeout-ms", type=int, default=300_000)
    p.add_argument("--max-batch", type=int, default=500)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--skip-lease-check-for-tests", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=lambda a: run(_coordinator(a)))


def configure_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


async def _coordinator(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    replica_id = args.replica_id or f"{socket.gethostname()}-{__import__('os').getpid()}"
    configure_logging(args.log_level, replica_id)
    config = ReplicaConfig(
        lease=LeaseConfig(ttl_ms=args.lease_ttl_ms),
        leader=LeaderConfig(
            max_batch=args.max_batch, skip_lease_check=args.skip_lease_check_for_tests
        ),
        domain=machine.Config(
            heartbeat_timeout_ms=args.heartbeat_timeout_ms,
            slot_wait_timeout_ms=args.slot_wait_timeout_ms,
        ),
    )
    replica = Replica(
        settings, replica_id, config, on_role=lambda role: print(f"role {role}", flush=True)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, replica.stop)
    await replica.run()
    return 0
