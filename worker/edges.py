"""Edges at runtime: the topics between vertices, their writer and their reader.

Names, partition choice and markers come from ``schemas.edges`` (shared with
the coordinator, which deletes a terminal job's edge topics by prefix); this
module is the aiokafka side:

- ``create_edge_topics``: a task creates every edge topic it touches, input
  and output, idempotently (whoever comes first wins; TOPIC_ALREADY_EXISTS is
  success), with as many partitions as the downstream vertex has subtasks,
  and waits until every partition has a leader before the task uses them.
- ``EdgeWriter``: the output of a task with outgoing edges. Every record goes
  to every outgoing edge, to the partition(s) its partitioning picks, through
  one idempotent producer (acks=all). ``finish`` writes the end-of-stream
  markers and flushes; a failed delivery fails the task.
- ``EdgeReader``: the input of a task with incoming edges. It reads partition
  = its subtask index of every input topic, read_committed, from the
  beginning, and returns once every upstream subtask that may write there has
  sent its end-of-stream marker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import edges, kafkaio
from schemas import events as ev
from worker.errors import EdgeProtocolError, TaskError
from worker.operators.api import KafkaEnv, Record, TaskSpec

log = logging.getLogger(__name__)

P = ev.Partitioning

# Throughput over latency for data, within reason: a 5 ms linger batches a
# busy edge without holding a trickle back noticeably.
_LINGER_MS: Final = 5
_MAX_BATCH_BYTES: Final = 256 * 1024


class EdgeTopicError(TaskError):
    """An edge topic could not be created."""


def encode_record(record: Record) -> bytes:
    """A record as edge (and sink) value: compact JSON; non-JSON values as strings."""
    return json.dumps(record, separators=(",", ":"), default=str).encode()


def _partitions_of(spec: TaskSpec, vertex: str) -> int:
    if vertex == spec.task.vertex_id:
        return spec.parallelism
    try:
        return spec.vertex_parallelism[vertex]
    except KeyError:
        raise EdgeProtocolError(
            f"DeployTask has no parallelism for vertex {vertex!r}: cannot size its edge"
        ) from None


def edge_topic(env: KafkaEnv, spec: TaskSpec, edge: ev.Edge) -> str:
    return edges.edge_topic(
        env.catalog, spec.task.job_id, spec.task.attempt, edge.source, edge.target
    )


async def create_edge_topics(env: KafkaEnv, spec: TaskSpec) -> list[str]:
    """Create the topics of every edge into and out of the task's vertex (idempotent)."""
    wanted: dict[str, int] = {}
    for edge in (*spec.inputs, *spec.outputs):
        wanted[edge_topic(env, spec, edge)] = _partitions_of(spec, edge.target)
    if not wanted:
        return []
    catalog = env.catalog
    config = {
        "cleanup.policy": "delete",
        "retention.ms": str(edges.EDGE_RETENTION_MS),
        "min.insync.replicas": str(max(1, catalog.replication_factor - 1)),
    }
    rf = catalog.replication_factor
    specs = [NewTopic(name, n, rf, topic_configs=config) for name, n in wanted.items()]
    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(specs)
        for name, code, message in response.topic_errors:
            if code not in (0, kafkaio.TOPIC_ALREADY_EXISTS):
                raise EdgeTopicError(f"creating edge topic {name} failed: error {code} {message}")
        # Produce and fetch only once every partition has a leader: no "topic not
        # found" / NotLeaderForPartition retries in the logs of a healthy deploy.
        try:
            await kafkaio.wait_for_leaders(admin, wanted)
        except kafkaio.TopicError as err:
            raise EdgeTopicError(str(err)) from err
    finally:
        await admin.close()
    return list(wanted)


@dataclass(slots=True)
class _Channel:
    """One outgoing edge as seen by one upstream subtask."""

    topic: str
    partitions: int
    partitioning: ev.Partitioning
    key_field: str | None
    sent: int = 0
    markers: Sequence[int] = field(default_factory=tuple)


class EdgeWriter:
    """The ``Output`` of a task with outgoing edges."""

    def __init__(self, env: KafkaEnv, spec: TaskSpec) -> None:
        self._subtask = spec.task.subtask_index
        self._channels = []
        for edge in spec.outputs:
            n = _partitions_of(spec, edge.target)
            self._channels.append(
                _Channel(
                    topic=edge_topic(env, spec, edge),
                    partitions=n,
                    partitioning=edge.partitioning,
                    key_field=edge.key_field,
                    markers=edges.writable_partitions(edge.partitioning, self._subtask, n),
                )
            )
        t = spec.task
        self._data_headers = edges.edge_headers(t.vertex_id, t.subtask_index, t.attempt)
        self._end_headers = edges.edge_headers(t.vertex_id, t.subtask_index, t.attempt, end=True)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=env.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=_LINGER_MS,
            max_batch_size=_MAX_BATCH_BYTES,
        )
        self._started = False
        self._error: BaseException | None = None
        self.records = 0

    @property
    def topics(self) -> list[str]:
        return [c.topic for c in self._channels]

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def emit(self, record: Record) -> None:
        if self._error is not None:
            raise self._error
        value = encode_record(record)
        self.records += 1
        for ch in self._channels:
            key: bytes | None = None
            match ch.partitioning:
                case P.FORWARD:
                    await self._send(ch.topic, value, None, self._subtask)
                case P.HASH:
                    field_name = ch.key_field or ""
                    try:
                        raw = record[field_name]
                    except KeyError:
                        raise EdgeProtocolError(
                            f"record has no field {field_name!r} to hash for edge {ch.topic}"
                        ) from None
                    key = edges.key_string(raw).encode()
                    partition = edges.hash_partition(raw, ch.partitions)
                    await self._send(ch.topic, value, key, partition)
                case P.REBALANCE:
                    partition = edges.rebalance_partition(self._subtask, ch.sent, ch.partitions)
                    ch.sent += 1
                    await self._send(ch.topic, value, None, partition)
                case P.BROADCAST:
                    for partition in range(ch.partitions):
                        await self._send(ch.topic, value, None, partition)

    async def _send(self, topic: str, value: bytes, key: bytes | None, partition: int) -> None:
        future = await self._producer.send(
            topic, value, key=key, partition=partition, headers=self._data_headers
        )
        future.add_done_callback(self._delivered)

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()  # also marks the exception as retrieved
        if error is not None and self._error is None:
            self._error = error

    async def finish(self) -> None:
        """End-of-stream on every partition this subtask may write to, then flush:
        when this returns, everything this subtask wrote is acknowledged."""
        for ch in self._channels:
            for partition in ch.markers:
                future = await self._producer.send(
                    ch.topic, b"", partition=partition, headers=self._end_headers
                )
                future.add_done_callback(self._delivered)
        await self._producer.flush()
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()


@dataclass(slots=True)
class _Input:
    edge: ev.Edge
    waiting_for: set[int]


class EdgeReader:
    """Reads the task's partition of every input edge until all upstreams ended."""

    def __init__(self, env: KafkaEnv, spec: TaskSpec) -> None:
        self._attempt = spec.task.attempt
        index = spec.task.subtask_index
        self._inputs: dict[TopicPartition, _Input] = {}
        for edge in spec.inputs:
            tp = TopicPartition(edge_topic(env, spec, edge), index)
            upstream = _partitions_of(spec, edge.source)
            expected = edges.expected_upstreams(edge.partitioning, index, upstream)
            self._inputs[tp] = _Input(edge, set(expected))
        self._consumer = kafkaio.consumer(env.bootstrap, max_poll_records=2000)
        self._started = False
        self.records = 0

    async def start(self) -> None:
        await self._consumer.start()
        self._started = True
        self._consumer.assign(list(self._inputs))
        await self._consumer.seek_to_beginning(*self._inputs)

    async def run(self, process: Callable[[Record], Awaitable[None]]) -> None:
        """Feed every data record to `process`; return once every input has ended."""
        open_inputs = {tp for tp, i in self._inputs.items() if i.waiting_for}
        while open_inputs:
            fetched = await self._consumer.getmany(*open_inputs, timeout_ms=200)
            for tp, records in fetched.items():
                state = self._inputs[tp]
                for record in records:
                    origin = self._origin(tp, state, record.headers)
                    if origin.end:
                        state.waiting_for.discard(origin.subtask)
                        continue
                    if origin.subtask not in state.waiting_for:
                        raise EdgeProtocolError(
                            f"{tp.topic}[{tp.partition}]: record from subtask {origin.subtask} "
                            "after its end-of-stream (or from a subtask that may not write here)"
                        )
                    if record.value is None:
                        raise EdgeProtocolError(f"{tp.topic}: data record without a value")
                    self.records += 1
                    await process(json.loads(record.value))
                if not state.waiting_for:
                    open_inputs.discard(tp)
                    self._consumer.pause(tp)

    def _origin(
        self, tp: TopicPartition, state: _Input, headers: Sequence[tuple[str, bytes]]
    ) -> edges.Origin:
        try:
            origin = edges.parse_edge_headers(headers)
        except ValueError as err:
            raise EdgeProtocolError(f"{tp.topic}[{tp.partition}]: {err}") from None
        if origin.vertex != state.edge.source or origin.attempt != self._attempt:
            raise EdgeProtocolError(
                f"{tp.topic}[{tp.partition}]: record from {origin.vertex}#{origin.attempt}, "
                f"expected {state.edge.source}#{self._attempt}"
            )
        return origin

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._consumer.stop()
