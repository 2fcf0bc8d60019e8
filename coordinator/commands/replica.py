"""``jm coordinator``: run one JobManager replica (hot standby; leads when it holds the lease)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import time

from coordinator.commands.common import add_connection_flags, fail, run, settings_from
from coordinator.ha.lease import LeaseConfig
from coordinator.runtime import machine
from coordinator.runtime.leader import LeaderConfig
from coordinator.runtime.replica import Replica, ReplicaConfig
from coordinator.runtime.snapshots import SnapshotPolicy
from schemas import events as ev
from schemas import kafkaio, timing
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.jsonview import to_jsonable
from schemas.settings import ClusterSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("coordinator", help="run a coordinator replica (leader or hot standby)")
    add_connection_flags(p)
    p.add_argument("--id", dest="replica_id", default=None,
                   help="replica id (default: host-pid)")  # fmt: skip
    p.add_argument("--lease-ttl-ms", type=int, default=timing.DEFAULT_LEASE_TTL_MS)
    p.add_argument(
        "--heartbeat-timeout-ms",
        type=int,
        default=timing.DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS,
        help="declare a worker lost after this long without a heartbeat "
        "(checked against the lease ttl, docs/ha.md)",
    )
    p.add_argument("--slot-wait-timeout-ms", type=int, default=300_000)
    p.add_argument("--max-batch", type=int, default=500)
    p.add_argument("--snapshot-every-events", type=int, default=10_000)
    p.add_argument("--snapshot-every-ms", type=int, default=60_000)
    p.add_argument("--no-snapshots", action="store_true", help="start by full replay")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--skip-lease-check-for-tests", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--hold-transaction-ms-for-tests", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(handler=lambda a: run(_coordinator(a)))

    r = sub.add_parser("replicas", help="every replica's role, epoch, position, lag and digest")
    add_connection_flags(r)
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=lambda a: run(_replicas(a)))


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
    problems = timing.coordinator_problems(
        heartbeat_timeout_ms=args.heartbeat_timeout_ms,
        keepalive_interval_ms=LeaderConfig().keepalive_interval_ms,
        lease_ttl_ms=args.lease_ttl_ms,
    )
    if problems:
        return fail("coordinator: " + "; ".join(problems))
    config = ReplicaConfig(
        lease=LeaseConfig(ttl_ms=args.lease_ttl_ms),
        leader=LeaderConfig(
            max_batch=args.max_batch,
            skip_lease_check=args.skip_lease_check_for_tests,
            hold_transaction_ms=args.hold_transaction_ms_for_tests,
            snapshots=SnapshotPolicy(args.snapshot_every_events, args.snapshot_every_ms),
        ),
        use_snapshots=not args.no_snapshots,
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


async def read_replicas(settings: ClusterSettings) -> dict[str, ev.ReplicaStatus]:
    """The latest status of every replica (the topic is compacted by replica id)."""
    catalog = Catalog(settings.cluster_id)
    latest: dict[str, ev.ReplicaStatus] = {}
    for record in await kafkaio.read_partition(settings.bootstrap_servers, catalog.replicas.name):
        status = default_codec().decode(record.value or b"", catalog.replicas.allowed)
        assert isinstance(status, ev.ReplicaStatus)
        latest[status.replica_id] = status
    return latest


async def _replicas(args: argparse.Namespace) -> int:
    statuses = await read_replicas(settings_from(args))
    now = int(time.time() * 1000)
    rows = sorted(statuses.values(), key=lambda s: s.replica_id)
    if args.json:
        print(json.dumps([{**to_jsonable(s), "age_ms": now - s.event_time} for s in rows]))
        return 0
    print(f"{'REPLICA':20} {'ROLE':8} {'EPOCH':>5} {'APPLIED':>9} {'LAG':>6} {'AGE':>7}  DIGEST")
    for s in rows:
        age = f"{(now - s.event_time) / 1000:.1f}s"
        print(f"{s.replica_id:20} {s.role.value:8} {s.epoch:>5} {s.applied_offset:>9} "
              f"{s.lag:>6} {age:>7}  {s.digest[:16]}")  # fmt: skip
    return 0
