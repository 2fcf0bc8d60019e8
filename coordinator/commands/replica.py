"""``jm coordinator``: run one JobManager replica (hot standby; leads when it holds the lease)."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, Final

from coordinator.commands.common import (
    add_connection_flags,
    catalog_from,
    fail,
    run,
    settings_from,
)
from schemas import kafkalog, timing  # standard library only
from schemas.security import add_flags as add_kafka_security_flags
from schemas.settings import add_config_flags
from schemas.telemetry.flags import add_flags as add_telemetry_flags

if TYPE_CHECKING:  # the rest is imported when a command runs: `jm --help` stays fast
    from coordinator.rest.server import RestServer
    from coordinator.runtime.replica import Replica
    from schemas import events as ev
    from schemas.config import Effective
    from schemas.settings import ClusterSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("coordinator", help="run a coordinator replica (leader or hot standby)")
    add_connection_flags(p)
    p.add_argument("--id", dest="replica_id", default=None,
                   help="replica id (default: host-pid)")  # fmt: skip
    # The flags below set keys of the settings model (docs/configuration.md); given,
    # they win over -D, the environment and the config file; their defaults are the model's.
    add_config_flags(p)
    p.add_argument(
        "--lease-ttl-ms",
        type=int,
        help=f"high-availability.lease.ttl (default {timing.DEFAULT_LEASE_TTL_MS})",
    )
    p.add_argument(
        "--heartbeat-timeout-ms",
        type=int,
        help="heartbeat.timeout: declare a worker lost after this long without a heartbeat "
        f"(default {timing.DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS}; checked against the "
        "lease ttl, docs/ha.md)",
    )
    p.add_argument("--slot-wait-timeout-ms", type=int, help="slot.request.timeout")
    p.add_argument(
        "--allow-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accept jobs that enable checkpointing (default; docs/checkpoints.md); "
        "--no-allow-checkpointing rejects them",
    )
    p.add_argument(
        "--state-checkpoints-dir",
        dest="state_checkpoints_dir",
        metavar="URL",
        help="state.checkpoints.dir, as the workers have it: savepoints are exported from "
        "it and discarded checkpoint state deleted from it (default kafka)",
    )
    p.add_argument(
        "--artifact-retention-ms",
        type=int,
        metavar="MS",
        help="delete a job's user-code package from the blob store this long after the "
        "last job using it ended (default 3600000; docs/user-code.md)",
    )
    p.add_argument(
        "--default-savepoint-dir",
        metavar="DIR",
        help="state.savepoints.dir: where a savepoint request naming no --target is "
        "written (relative: to the coordinator's working directory)",
    )
    p.add_argument(
        "--archive-after-ms",
        type=int,
        help="jobmanager.retention.ended-jobs.max-age: an ended job leaves memory after "
        "this long (its id stays taken; default 1 h)",
    )
    p.add_argument(
        "--protected-topic-prefix",
        dest="protected_topic_prefixes",
        action="append",
        metavar="PREFIX",
        help="reject jobs naming a topic under PREFIX, besides the cluster's own "
        "'<cluster id>.' and Kafka's '__' (repeatable; default "
        "$JM_PROTECTED_TOPIC_PREFIXES, comma-separated; docs/security.md)",
    )
    p.add_argument(
        "--allowed-workers",
        dest="allowed_workers",
        action="append",
        metavar="IDS",
        help="only these worker ids may register (comma-separated, repeatable; default "
        "$JM_ALLOWED_WORKERS; empty: any worker; docs/security.md)",
    )
    p.add_argument("--max-batch", type=int, help="jobmanager.max-batch")
    p.add_argument("--snapshot-every-events", type=int, help="jobmanager.snapshot.every-events")
    p.add_argument("--snapshot-every-ms", type=int, help="jobmanager.snapshot.interval")
    p.add_argument(
        "--snapshot-ladder-every", type=int, metavar="OFFSETS",
        help="jobmanager.snapshot.ladder.every",
    )  # fmt: skip
    p.add_argument(
        "--snapshot-ladder-rungs", type=int, metavar="N", help="jobmanager.snapshot.ladder.rungs",
    )  # fmt: skip
    p.add_argument("--no-snapshots", action="store_true", help="start by full replay")
    p.add_argument("--log-level", default="INFO")
    add_rest_flags(p)
    add_telemetry_flags(p)
    p.set_defaults(handler=lambda a: run(_coordinator(a)))

    c = sub.add_parser(
        "config",
        help="the settings of the coordinator and the worker (docs/configuration.md)",
    )
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = csub.add_parser(
        "show", help="print every effective setting and where it came from, secrets masked"
    )
    add_config_flags(show)
    add_kafka_security_flags(show.add_argument_group("Kafka SASL/TLS (listed as kafka.*)"))
    show.add_argument("--for", dest="process", choices=["coordinator", "worker"],
                      help="only the settings this process reads (default: all)")  # fmt: skip
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_config_show)

    r = sub.add_parser("replicas", help="every replica's role, epoch, position, lag and digest")
    add_connection_flags(r)
    r.add_argument("--json", action="store_true")
    r.add_argument(
        "--all", action="store_true", help="also replicas stopped or silent past their retention"
    )
    r.set_defaults(handler=lambda a: run(_replicas(a)))

    # `jm drill` runs replicas and breaks them: registered with them, so an install made
    # before it existed (its entry points read from older metadata) has it too.
    from coordinator.commands import drill

    drill.register(sub)


def _config_show(args: argparse.Namespace) -> int:
    from schemas.config import ConfigError, effective

    try:
        rows = effective(config_file=args.config, dynamic=args.dynamic).rows(args.process)
    except ConfigError as err:
        return fail(f"jm config show: {err}")
    # Kafka's SASL/TLS settings are not in the model (schemas/security.py reads them):
    # listed after it, from the same flags, environment and defaults, the password masked.
    from schemas.security import shown_rows

    rows += shown_rows(args)
    if args.json:
        print(json.dumps([{"key": k, "value": v, "source": s} for k, v, s in rows]))
        return 0
    width = max(len(k) for k, _, _ in rows)
    vwidth = min(40, max(len(v) for _, v, _ in rows))
    print(f"{'KEY':{width}}  {'VALUE':{vwidth}}  SOURCE")
    for key, value, source in rows:
        print(f"{key:{width}}  {value:{vwidth}}  {source}")
    return 0


def add_rest_flags(p: argparse.ArgumentParser) -> None:
    rest = p.add_argument_group("REST API (docs/rest.md)")
    rest.add_argument(
        "--rest-host",
        help="rest.address: where the REST API listens (default $JM_REST_HOST or 127.0.0.1)",
    )
    rest.add_argument(
        "--rest-port",
        type=int,
        help="rest.port (default $JM_REST_PORT or 8081; 0 picks a free port and prints it)",
    )
    rest.add_argument("--no-rest", action="store_true", help="serve no REST API")
    rest.add_argument(
        "--history-url",
        metavar="URL",
        help="historyserver.web.url: the job history server (jm history) whose archive the "
        "REST API relays under /history/ and the dashboard lists (docs/history.md)",
    )
    rest.add_argument(
        "--rest-token-file",
        metavar="PATH",
        help="file holding the token mutating requests need ($JM_REST_TOKEN holds the "
        "token itself); without either, they need none",
    )


def rest_token(args: argparse.Namespace, config: Effective) -> str | None:
    """The REST token from --rest-token-file, else rest.token (None: no token)."""
    if args.rest_token_file:
        with open(args.rest_token_file, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"{args.rest_token_file} holds no token")
        return token
    return config.settings.rest_token or None


def rest_options(
    args: argparse.Namespace, settings: ClusterSettings, config: Effective
) -> dict[str, str]:
    """The replica's configuration as ``/jobmanager/config`` shows it: every key of the
    settings model (secrets masked), Kafka's SASL/TLS settings with the password masked."""
    options = {
        "rest.token-configured": str(
            args.rest_token_file is not None or bool(config.settings.rest_token)
        ).lower(),
        "jobmanager.snapshots-enabled": str(not args.no_snapshots).lower(),
    }
    for key, value in settings.kafka_security.masked().items():
        options["jm.kafka." + key] = value
    for key, value, _ in config.rows("coordinator"):
        options[key] = value
    return options


def configure_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    kafkalog.install()  # Kafka 3.9's NotEnoughReplicas retries: one calm line a minute


async def _coordinator(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from coordinator.ha.lease import LeaseConfig
    from coordinator.runtime import machine
    from coordinator.runtime.journal import JournalError
    from coordinator.runtime.leader import LeaderConfig
    from coordinator.runtime.memory import process_size_problem
    from coordinator.runtime.replica import Replica, ReplicaConfig
    from coordinator.runtime.snapshots import SnapshotPolicy
    from schemas.config import ConfigError, from_args
    from schemas.settings import ALLOWED_WORKERS_ENV, PROTECTED_TOPIC_PREFIXES_ENV, listed
    from schemas.validation import protected_prefixes

    try:
        cfg = from_args(args)
    except ConfigError as err:
        return fail(f"coordinator: {err}")
    c = cfg.settings
    for name in ("cluster_id", "bootstrap_servers", "redis_url", "signing_keys"):
        setattr(args, name, getattr(c, name))  # the model's, whatever their source
    settings = settings_from(args)
    settings.keyring("coordinator")  # no keys (nor --insecure-unsigned): refuse at once
    replica_id = args.replica_id or f"{socket.gethostname()}-{__import__('os').getpid()}"
    configure_logging(args.log_level, replica_id)
    problems = timing.coordinator_problems(
        heartbeat_timeout_ms=c.heartbeat_timeout_ms,
        keepalive_interval_ms=LeaderConfig().keepalive_interval_ms,
        lease_ttl_ms=c.lease_ttl_ms,
    )
    too_small = process_size_problem(c)
    if too_small:
        problems.append(too_small)
    if problems:
        return fail("coordinator: " + "; ".join(problems))
    # Before anything starts: a bad token file or a taken port stops it at once.
    from coordinator.rest.server import bind

    try:
        token = rest_token(args, cfg)
    except (OSError, ValueError) as err:
        return fail(f"coordinator {replica_id}: REST token not read: {err}", 1)
    try:
        sock = None if args.no_rest else bind(c.rest_address, c.rest_port)
    except OSError as err:
        return fail(f"coordinator {replica_id}: REST API not started on {c.rest_address}:"
                    f"{c.rest_port}: {err} (--rest-port chooses another port, --no-rest "
                    f"serves none)", 1)  # fmt: skip
    try:
        from schemas.telemetry.providers import start_from_settings
        from schemas.telemetry.settings import TelemetrySettings

        otel = start_from_settings(
            TelemetrySettings.of(cfg.settings), "jm-coordinator", replica_id, settings.cluster_id
        )
    except (OSError, ValueError) as err:
        return fail(f"coordinator {replica_id}: telemetry not started: {err}", 1)
    config = ReplicaConfig(
        lease=LeaseConfig(ttl_ms=c.lease_ttl_ms),
        leader=LeaderConfig(
            max_batch=c.max_batch,
            snapshots=SnapshotPolicy(
                c.snapshot_every_events,
                c.snapshot_every_ms,
                c.snapshot_ladder_every,
                c.snapshot_ladder_rungs,
            ),
            state_checkpoints_dir=c.state_checkpoints_dir,
            artifact_retention_ms=c.artifact_retention_ms,
        ),
        use_snapshots=not args.no_snapshots,
        domain=machine.Config(
            heartbeat_timeout_ms=c.heartbeat_timeout_ms,
            slot_wait_timeout_ms=c.slot_wait_timeout_ms,
            archive_after_ms=c.ended_jobs_max_age_ms,
            max_ended_jobs=c.ended_jobs_max_count,
            max_jobs=c.max_jobs,
            max_subtasks=c.max_subtasks,
            allow_checkpointing=c.allow_checkpointing,
            default_savepoint_dir=c.default_savepoint_dir,
            protected_topic_prefixes=protected_prefixes(
                catalog_from(settings).prefix,
                listed(args.protected_topic_prefixes, PROTECTED_TOPIC_PREFIXES_ENV),
            ),
            allowed_workers=frozenset(listed(args.allowed_workers, ALLOWED_WORKERS_ENV)),
        ),
    )
    from schemas.security import mask_url

    logging.getLogger(__name__).info(
        "cluster %s: Kafka %s (%s), Redis %s", settings.cluster_id, settings.bootstrap_servers,
        ", ".join(f"{k}={v}" for k, v in settings.kafka_security.masked().items()),
        mask_url(settings.redis_url),
    )  # fmt: skip
    allowed = sorted(config.domain.allowed_workers)
    logging.getLogger(__name__).info(
        "jobs may name no topic under %s; workers allowed to register: %s",
        ", ".join(repr(p) for p in config.domain.protected_topic_prefixes),
        ", ".join(allowed) if allowed else "any",
    )
    try:
        pruned = await prune_replicas(settings)
        if pruned:
            logging.getLogger(__name__).info("pruned replica statuses: %s", ", ".join(pruned))
    except Exception:  # listing hygiene only: never a reason not to start
        logging.getLogger(__name__).warning("pruning replica statuses failed", exc_info=True)
    replica = Replica(
        settings, replica_id, config, on_role=lambda role: print(f"role {role}", flush=True),
        telemetry=otel,
    )  # fmt: skip
    server = None if sock is None else await _start_rest(args, replica, settings, cfg, token, sock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, replica.stop)
    try:
        await replica.run()
    except JournalError as err:  # a record it cannot follow: stop, saying which and why
        return fail(f"coordinator {replica_id} stopped: {err}", 1)
    finally:
        if server is not None:
            await server.stop()
        if otel is not None:
            otel.shutdown()
    return 0


async def _start_rest(
    args: argparse.Namespace,
    replica: Replica,
    settings: ClusterSettings,
    config: Effective,
    token: str | None,
    sock: socket.socket,
) -> RestServer:
    """Serve the REST API of `replica` (docs/rest.md); prints ``rest http://host:port``."""
    from coordinator.rest.context import LogTail, RestContext
    from coordinator.rest.server import start_rest

    tail = LogTail()
    root = logging.getLogger()
    if root.handlers:
        tail.setFormatter(root.handlers[0].formatter)
    root.addHandler(tail)
    ctx = RestContext.of_replica(
        replica, replica.metrics, token=token, options=rest_options(args, settings, config),
        log_tail=tail,
    )  # fmt: skip
    ctx.history_url = config.settings.history_url.rstrip("/")
    ctx.history_timeout_ms = config.settings.history_timeout_ms
    if config.settings.allow_checkpointing:  # else the leader would reject what it filled in
        ctx.checkpoint_interval_ms = config.settings.checkpoint_interval_ms
    server = await start_rest(ctx, config.settings.rest_address, config.settings.rest_port, sock)
    logging.getLogger(__name__).info("REST API on %s", server.url)
    print(f"rest {server.url}", flush=True)
    return server


#: A replica that said STOPPED this long ago is no longer listed, and pruned.
REPLICA_STOPPED_RETENTION_MS: Final = 600_000
#: A replica silent this long (killed without a last word) is no longer listed,
#: and pruned. Live replicas publish every second or so.
REPLICA_STALE_RETENTION_MS: Final = 3_600_000


def is_gone(status: ev.ReplicaStatus, now: int) -> bool:
    """A status past its retention: stopped long enough ago, or silent for too long."""
    from schemas import events as ev

    age = now - status.event_time
    if status.role is ev.ReplicaRole.STOPPED:
        return age > REPLICA_STOPPED_RETENTION_MS
    return age > REPLICA_STALE_RETENTION_MS


async def read_replicas(
    settings: ClusterSettings, *, include_gone: bool = False, now: int | None = None
) -> dict[str, ev.ReplicaStatus]:
    """The latest status of every replica (the topic is compacted by replica id),
    without those past their retention (``is_gone``) unless `include_gone`."""
    from schemas import events as ev
    from schemas import kafkaio
    from schemas.catalog import Catalog
    from schemas.codec import default_codec

    catalog = Catalog(settings.cluster_id)
    now = int(time.time() * 1000) if now is None else now
    latest: dict[str, ev.ReplicaStatus] = {}
    for record in await kafkaio.read_partition(settings.bootstrap_servers, catalog.replicas.name):
        if record.value is None:  # a tombstone: pruned
            latest.pop((record.key or b"").decode(errors="replace"), None)
            continue
        status = default_codec().decode(record.value, catalog.replicas.allowed)
        assert isinstance(status, ev.ReplicaStatus)
        latest[status.replica_id] = status
    if include_gone:
        return latest
    return {rid: s for rid, s in latest.items() if not is_gone(s, now)}


async def prune_replicas(settings: ClusterSettings, now: int | None = None) -> list[str]:
    """Write a tombstone for every replica past its retention (compaction then drops
    its records); returns their ids. Every coordinator does it as it starts."""

    from schemas import kafkaio
    from schemas.catalog import Catalog

    now = int(time.time() * 1000) if now is None else now
    statuses = await read_replicas(settings, include_gone=True, now=now)
    gone = sorted(rid for rid, s in statuses.items() if is_gone(s, now))
    if not gone:
        return []
    catalog = Catalog(settings.cluster_id)
    producer = kafkaio.producer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for rid in gone:
            await producer.send_and_wait(catalog.replicas.name, None, key=rid.encode())
    finally:
        await producer.stop()
    return gone


async def _replicas(args: argparse.Namespace) -> int:
    from schemas.jsonview import to_jsonable

    statuses = await read_replicas(settings_from(args), include_gone=args.all)
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
    for s in rows:
        for line in replica_alerts(s):
            print(f"{s.replica_id}: {line}")
    return 0


def replica_alerts(status: ev.ReplicaStatus) -> list[str]:
    """What an operator must look at about one replica (empty: nothing)."""
    alerts = []
    if status.problem:
        alerts.append(f"PROBLEM {status.problem}")
    if status.foreign_records:
        alerts.append(
            f"ALERT {status.foreign_records} journal record(s) not written by a leader were "
            f"skipped; copies are in the dead-letter topic (error kind ForeignJournalRecord)"
        )
    if status.refused_inputs:
        alerts.append(
            f"NOTE {status.refused_inputs} input(s) refused because deciding them failed; "
            f"each is journaled as a rejection with the reason"
        )
    if status.unknown_heartbeats:
        alerts.append(
            f"NOTE {status.unknown_heartbeats} heartbeat(s) from no registered worker "
            f"incarnation were ignored (a worker not registered yet or gone, or another "
            f"writer on the heartbeats topic)"
        )
    return alerts
