"""Assembles one worker process: settings, topics check, Kafka adapters, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.settings import ClusterSettings
from schemas.signing import KeyRing
from worker.kafka import KafkaCommands, KafkaReports
from worker.operators.api import KafkaEnv
from worker.operators.registry import OperatorRegistry
from worker.settings import WorkerSettings
from worker.taskmanager import TaskManager

if TYPE_CHECKING:
    from schemas.telemetry.providers import Telemetry

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_TOPICS = 3
EXIT_TIMING = 2  # timeouts unsafe against the leader's: a usage error, see schemas/timing.py


async def run_worker(
    cluster: ClusterSettings,
    settings: WorkerSettings,
    keys: KeyRing,
    log_level: int = logging.INFO,
    protected_topic_prefixes: tuple[str, ...] = (),
    otel: Telemetry | None = None,
) -> int:
    """Run a TaskManager until SIGTERM or SIGINT; then deregister and return 0.

    `keys`: what it signs reports and verifies commands with (schemas/signing.py).
    `protected_topic_prefixes`: topics no task may name besides the cluster's own
    (``--protected-topic-prefix``, docs/security.md). `otel`: the exporters when
    telemetry is on (docs/observability.md)."""
    catalog = Catalog(cluster.cluster_id)
    bootstrap = cluster.bootstrap_servers
    try:
        await kafkaio.check_topics(bootstrap, catalog, roles=["commands", "reports", "heartbeats"])
    except kafkaio.TopicError as err:
        log.error("%s", err)
        return EXIT_TOPICS
    registry = OperatorRegistry.load()
    log.info("signing keys %s", keys.describe())
    commands = KafkaCommands(bootstrap, catalog, settings.tm_id, keys)
    reports = KafkaReports(bootstrap, catalog, keys)
    telemetry = None
    if otel is not None:
        from worker.telemetry import WorkerTelemetry

        telemetry = WorkerTelemetry(otel, settings.tm_id)
        commands.on_headers = telemetry.note
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await reports.start()
        await commands.start()
        manager = TaskManager(
            settings,
            registry,
            commands,
            reports,
            log_level=log_level,
            kafka=KafkaEnv(bootstrap, catalog, protected_topic_prefixes),
            telemetry=telemetry,
        )
        log.info(
            "worker %s incarnation %s: %d slot(s), commands partition %d, operators %s",
            settings.tm_id,
            manager.incarnation,
            settings.slots,
            commands.partition,
            ", ".join(registry.names()),
        )
        await manager.run(stop)
        if manager.timing_error is not None:
            log.error("stopped: %s", manager.timing_error)
            return EXIT_TIMING
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await commands.stop()
        await reports.stop()
    return EXIT_OK
