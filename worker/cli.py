"""``jm worker`` and ``python -m worker``: run a TaskManager.

The connection flags follow the convention of the other ``jm`` commands
(``--bootstrap-servers``, ``--redis-url``, ``--cluster-id``); they are
repeated here because ``worker`` never imports ``coordinator``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from schemas import kafkalog, timing  # standard library only; `jm --help` loads this module

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, help="task slots (default $JM_WORKER_SLOTS or CPUs)")
    parser.add_argument(
        "--id", dest="tm_id", help="TaskManager id (default $JM_WORKER_TM_ID or host-random)"
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        dest="heartbeat_interval_s",
        metavar="SECONDS",
        help=f"time between heartbeats (default {timing.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        dest="heartbeat_timeout_s",
        metavar="SECONDS",
        help="stop every task after this long without hearing a leader (default "
        f"{timing.DEFAULT_WORKER_LEADER_TIMEOUT_S:g}; checked against the leader's heartbeat "
        "timeout, docs/ha.md)",
    )
    parser.add_argument(
        "--cancel-timeout",
        type=float,
        dest="cancel_timeout_s",
        metavar="SECONDS",
        help="kill a slot process whose task ignores a cancel this long (default "
        f"{timing.DEFAULT_WORKER_CANCEL_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--state-checkpoints-dir",
        dest="state_checkpoints_dir",
        metavar="URL",
        help="state.checkpoints.dir: where tasks write checkpoint state, kafka:// (the "
        "cluster's state topic) or file:///dir (default $JM_WORKER_STATE_CHECKPOINTS_DIR "
        "or kafka)",
    )
    parser.add_argument(
        "--artifact-cache-dir",
        metavar="DIR",
        help="where jobs' own code is installed, one directory per package "
        "(default $JM_WORKER_ARTIFACT_CACHE_DIR or <temp dir>/jm-artifacts/<id>)",
    )
    parser.add_argument(
        "--package-index",
        metavar="URL",
        help="package index for the requirements a job's code declares (default "
        "$JM_WORKER_PACKAGE_INDEX; none: offline, missing requirements are refused)",
    )
    parser.add_argument(
        "--protected-topic-prefix",
        dest="protected_topic_prefixes",
        action="append",
        metavar="PREFIX",
        help="fail any task naming a topic under PREFIX, besides the cluster's own "
        "'<cluster id>.' and Kafka's '__' (repeatable; default "
        "$JM_PROTECTED_TOPIC_PREFIXES, comma-separated; docs/security.md)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    from schemas.settings import add_config_flags

    add_config_flags(parser)
    group = parser.add_argument_group("cluster")
    group.add_argument("--bootstrap-servers", help="Kafka (default $KAFKA_BOOTSTRAP_SERVERS)")
    group.add_argument("--redis-url", help="Redis (default $REDIS_URL; unused by workers)")
    group.add_argument(
        "--cluster-id", help="namespaces topics, ids and keys (default $JM_CLUSTER_ID or jm)"
    )
    group.add_argument(
        "--signing-keys", metavar="FILE",
        help="key file of signed records, worker and command roles (default "
        "$JM_SIGNING_KEYS_FILE)",
    )  # fmt: skip
    group.add_argument(
        "--insecure-unsigned", action="store_true",
        help="run without signing reports or verifying commands",
    )  # fmt: skip
    from schemas.security import add_flags

    add_flags(parser.add_argument_group("Kafka SASL/TLS (docs/security.md)"))
    from schemas.telemetry.flags import add_flags as add_telemetry_flags

    add_telemetry_flags(parser)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Entry point of the ``kafka_jobmanager.cli`` group: adds ``jm worker``."""
    parser = sub.add_parser(
        "worker",
        help="run a TaskManager (worker) with N task slots",
        description="Run a TaskManager: register, heartbeat, run the tasks the leader deploys.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from schemas import security
    from schemas.catalog import Catalog
    from schemas.settings import (
        PROTECTED_TOPIC_PREFIXES_ENV,
        ClusterSettings,
        SettingsError,
        listed,
    )
    from schemas.statestore import StateStoreError, open_store
    from worker.app import run_worker
    from worker.settings import WorkerSettings

    level = getattr(logging, args.log_level)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiokafka logs every reconnect at WARNING/ERROR; its INFO is noise here.
    logging.getLogger("aiokafka").setLevel(max(level, logging.WARNING))
    kafkalog.install()  # Kafka 3.9's NotEnoughReplicas retries: one calm line a minute
    from schemas.config import ConfigError, from_args

    try:
        config = from_args(args)
        c = config.settings
        cluster = ClusterSettings.load(
            bootstrap_servers=c.bootstrap_servers,
            redis_url=c.redis_url,
            cluster_id=c.cluster_id,
            signing_keys=c.signing_keys,
            insecure_unsigned=args.insecure_unsigned,
            kafka_security=security.from_flags(args),
        )
        keys = cluster.keyring("worker")  # refuses to start without keys (or the flag)
        # Every client of this process and of its slot processes (environment).
        security.install(cluster.kafka_security)
        settings = WorkerSettings.of(config)
        # Refuse a bad storage URL at start, not at the first checkpoint.
        open_store(settings.state_checkpoints_dir, catalog=Catalog(cluster.cluster_id),
                   bootstrap=cluster.bootstrap_servers)  # fmt: skip
    except (ValidationError, ConfigError, SettingsError, security.SecurityError) as err:
        print(f"jm worker: {err}", file=sys.stderr)
        return EXIT_USAGE
    except StateStoreError as err:
        print(f"jm worker: state.checkpoints.dir: {err}", file=sys.stderr)
        return EXIT_USAGE
    protected = listed(args.protected_topic_prefixes, PROTECTED_TOPIC_PREFIXES_ENV)
    try:
        from schemas.telemetry.providers import start_from_settings
        from schemas.telemetry.settings import TelemetrySettings

        otel = start_from_settings(
            TelemetrySettings.of(config.settings), "jm-worker", settings.tm_id, cluster.cluster_id
        )
    except (ValidationError, OSError, ValueError) as err:
        print(f"jm worker: telemetry not started: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(run_worker(cluster, settings, keys, level, protected, otel))
    finally:
        if otel is not None:
            otel.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=register.__doc__)
    add_arguments(parser)
    return handle(parser.parse_args(argv))
