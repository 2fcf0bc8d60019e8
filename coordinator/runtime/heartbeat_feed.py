"""Every replica, leader or standby, reads jm.heartbeats into its own MetricsStore.

Heartbeats are volatile: they never enter the journal, the folded state or its
digest. This feed only reads them (its own consumer, no group, from the start of
the compacted topic, so a replica that just started knows the latest report of
every worker at once) and keeps the latest per worker for the REST API and the
dashboard. Only heartbeats of incarnations the replica's state has registered are
kept, and workers the state no longer has (lost, deregistered, a new incarnation)
are forgotten after every poll. A record that does not decode, is not a heartbeat
or is over the limits is skipped and counted; nothing a heartbeat carries stops
the feed, and a Kafka error is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from coordinator.runtime.clock import Clock
from coordinator.runtime.metrics import MetricsStore, TaskMetrics, TaskSample, WorkerSample
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.limits import MAX_TASK_METRICS_PER_HEARTBEAT
from schemas.signing import KeyRing

log = logging.getLogger(__name__)


class RegisteredWorker(Protocol):
    """What the feed needs of the state's workers (coordinator.domain.state.Worker)."""

    @property
    def incarnation(self) -> str: ...


Workers = Callable[[], Mapping[str, RegisteredWorker]]


def task_sample(tm_id: str, m: ev.TaskIoMetrics) -> TaskSample:
    """The store's sample of one reported task (the counters have the same names)."""
    t = m.task
    counters = {f.name: getattr(m, f.name) for f in dataclasses.fields(TaskMetrics)}
    return TaskSample(
        tm_id=tm_id,
        job_id=t.job_id,
        vertex_id=t.vertex_id,
        subtask=t.subtask_index,
        attempt=t.attempt,
        metrics=TaskMetrics(**counters),
    )


class HeartbeatFeed:
    """Reads jm.heartbeats into `store`; `workers` gives the state's registered workers."""

    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        store: MetricsStore,
        workers: Workers,
        clock: Clock,
        poll_ms: int = 500,
        keys: KeyRing | None = None,
    ) -> None:
        """`keys`: heartbeats without a valid worker signature are skipped (counted)."""
        self.catalog = catalog
        self.store = store
        self._workers = workers
        self._clock = clock
        self._poll_ms = poll_ms
        self._bootstrap = bootstrap
        self._decoder = kafkaio.InputDecoder(catalog, keys=keys)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        #: heartbeats kept, records skipped (undecodable, not a heartbeat, over the
        #: limits), heartbeats of incarnations the state does not have.
        self.recorded = 0
        self.skipped = 0
        self.unknown = 0

    async def start(self) -> None:
        consumer = kafkaio.consumer(
            self._bootstrap, fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS
        )
        await consumer.start()
        topic = self.catalog.heartbeats
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="heartbeat-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        failures = 0
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=self._poll_ms)
                failures = 0
            except Exception as err:  # Kafka trouble: try again, never stop the replica
                failures += 1
                log.warning("reading heartbeats failed (%d): %s: %s", failures,
                            type(err).__name__, err)  # fmt: skip
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                continue
            for records in fetched.values():
                for record in records:
                    self.handle(record)
            self.forget_removed()

    def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Keep the heartbeat in `record` if it is one of a registered incarnation."""
        try:
            event, _dead = self._decoder.decode(record)
        except Exception:  # the decoder turns bad bytes into dead letters; be sure anyway
            event = None
        if not isinstance(event, ev.TaskManagerHeartbeat) or (
            len(event.task_metrics) > MAX_TASK_METRICS_PER_HEARTBEAT
        ):
            self.skipped += 1
            return
        worker = self._workers().get(event.tm_id)
        if worker is None or worker.incarnation != event.incarnation:
            self.unknown += 1
            return
        self.store.record_heartbeat(
            WorkerSample(
                tm_id=event.tm_id,
                incarnation=event.incarnation,
                sequence=event.sequence,
                slots_free=event.slots_free,
                running_tasks=event.running_tasks,
                received_ms=self._clock.wall_ms(),
            ),
            (task_sample(event.tm_id, m) for m in event.task_metrics),
        )
        self.recorded += 1

    def forget_removed(self) -> None:
        """Forget the workers the state no longer has as they were reported."""
        workers = self._workers()
        for sample in self.store.workers():
            known = workers.get(sample.tm_id)
            if known is None or known.incarnation != sample.incarnation:
                self.store.forget_worker(sample.tm_id)
