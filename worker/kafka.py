"""The worker's Kafka adapters: its commands partition in, reports and heartbeats out.

- ``KafkaCommands`` reads the one jm.commands partition the catalog maps the
  tm id to, with ``assign()`` (no group: no rebalance delay, no committed
  offsets to go stale), read_committed (a fenced leader's aborted writes are
  never acted on), from the END: commands written before this incarnation
  started are not for it. Records that do not decode, or whose ``command``
  signature is missing or wrong (schemas/signing.py), are logged, counted and
  skipped.
- ``KafkaReports`` is a plain idempotent producer (acks=all): reports and
  heartbeats are keyed by tm id, so one worker's reports stay in order, and
  signed with the ``worker`` key. A
  report Kafka refuses for good (too large, ...) is dropped, logged and
  counted; it never stops the others nor the worker. Other failures raise, and
  the TaskManager retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import DecodeError, Headers, default_codec
from schemas.signing import KeyRing

log = logging.getLogger(__name__)


class Commands(Protocol):
    """Port: the commands addressed to this worker's partition, in log order."""

    async def poll(self, timeout_ms: int) -> list[ev.WorkerCommand]: ...


class Reports(Protocol):
    """Port: where reports and heartbeats go, in order."""

    async def send(self, events: Sequence[ev.WorkerReport]) -> None: ...


class KafkaCommands:
    """Reads this worker's jm.commands partition from its end."""

    def __init__(self, bootstrap: str, catalog: Catalog, tm_id: str, keys: KeyRing) -> None:
        self.keys = keys
        self.partition = catalog.commands_partition(tm_id)
        self._tp = TopicPartition(catalog.commands.name, self.partition)
        self._allowed = catalog.commands.allowed
        # The broker answers the waiting fetch as soon as a command is committed: the
        # wait only bounds how often an idle worker asks (kafkaio.CONTROL_FETCH_WAIT_MS).
        self._consumer = kafkaio.consumer(
            bootstrap, fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS
        )
        self.undecodable = 0
        self.unverified = 0  # commands with a missing or bad signature, ignored
        #: sees each verified command with its record's headers (trace context)
        self.on_headers: Callable[[ev.WorkerCommand, Headers | None], None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_end(self._tp)
        # Resolve the end offset now: what is written after start() returns
        # (and after the registration that follows it) is read.
        position = int(await self._consumer.position(self._tp))
        log.info("reading %s[%d] from offset %d", self._tp.topic, self._tp.partition, position)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int) -> list[ev.WorkerCommand]:
        fetched = await self._consumer.getmany(self._tp, timeout_ms=timeout_ms)
        out: list[ev.WorkerCommand] = []
        for record in fetched.get(self._tp, ()):
            try:
                if record.value is None:
                    raise DecodeError("record has no value")
                event = default_codec().decode(record.value, self._allowed)
            except DecodeError as err:
                self.undecodable += 1
                log.warning("skipped undecodable command at offset %d: %s", record.offset, err)
                continue
            problem = self.keys.problem("commands", record.topic, record.key, record.value,
                                        record.headers)  # fmt: skip
            if problem is not None:
                self.unverified += 1
                log.error("ignored %s at offset %d (%d so far): %s", type(event).__name__,
                          record.offset, self.unverified, problem)  # fmt: skip
                continue
            assert isinstance(event, ev.WorkerCommand)
            if self.on_headers is not None:
                self.on_headers(event, record.headers)
            out.append(event)
        return out


class KafkaReports:
    """Sends reports to jm.reports and heartbeats to jm.heartbeats, keyed by tm id."""

    def __init__(self, bootstrap: str, catalog: Catalog, keys: KeyRing) -> None:
        self._catalog = catalog
        self._keys = keys
        self._producer = kafkaio.producer(
            bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0
        )
        #: reports Kafka refused for good (or that could not be encoded).
        self.dropped = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, events: Sequence[ev.WorkerReport]) -> None:
        """Send in order and wait until every one is acknowledged, or dropped (see
        the module docstring). Raises on a retriable failure."""
        futures = []
        for event in events:
            try:
                value, headers = default_codec().encode(event)
                spec = self._catalog.topic_for(type(event))
                key = self._catalog.key_for(event)
                headers = self._keys.sign(spec.role, spec.name, key, value, headers)
                topic = spec.name
                future = await self._producer.send(topic, value, key=key, headers=headers)
            except Exception as err:
                self._refused(event, err)
                continue
            futures.append((event, future))
        for event, future in futures:
            try:
                await future
            except KafkaError as err:
                self._refused(event, err)

    def _refused(self, event: ev.WorkerReport, err: Exception) -> None:
        # A timeout means "not yet", not "never": retry it like a retriable error.
        if isinstance(err, KafkaTimeoutError) or (isinstance(err, KafkaError) and err.retriable):
            raise err
        self.dropped += 1
        what = f"{type(event).__name__} {event.event_id}"
        log.error("dropped %s (%d so far): %s: %s", what, self.dropped, type(err).__name__, err)
