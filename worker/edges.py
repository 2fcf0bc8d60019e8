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
  sent its end-of-stream marker. It aligns checkpoint barriers: once barrier n
  came from an upstream subtask, that subtask's later records wait (held in
  memory, and the partition is paused once every writer of it is blocked)
  until barrier n came from every upstream subtask that has not ended; then
  the task snapshots and forwards the barrier (docs/checkpoints.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import NewTopic

from schemas import edges, kafkaio
from schemas import events as ev
from worker.errors import EdgeProtocolError, TaskError
from worker.metrics import TaskCounters
from worker.operators.api import KafkaEnv, Record, TaskSpec

log = logging.getLogger(__name__)

P = ev.Partitioning

#: Records per edge batch (per partition): a batch leaves once this many wait.
BATCH_RECORDS: Final = 1000
#: ... or this long (ms) after its first record came, whichever is first.
BATCH_LINGER_MS: Final = 5.0
#: A batch value larger than this is split (Kafka's default message limit is 1 MiB).
MAX_BATCH_VALUE: Final = 900 * 1024
#: The edge consumer: each fetched record is a batch, so fewer of them per poll, and
#: fetches big enough for several full batches per partition.
EDGE_CONSUMER: Final[dict[str, Any]] = {
    "max_poll_records": 50,
    "fetch_max_bytes": 16 * 1024 * 1024,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
}
#: Keys whose partition a writer remembers per edge (cleared when full).
_HASHED_KEYS: Final = 100_000
#: The edge producer: batches are already built, so a short linger only gathers the
#: batches of several partitions into one request (docs/dataplane.md, "Kafka settings").
EDGE_PRODUCER: Final[dict[str, Any]] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 1,
    "max_batch_size": 1024 * 1024,
    "max_request_size": 2 * 1024 * 1024,
}


class EdgeTopicError(TaskError):
    """An edge topic could not be created."""


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
    admin = kafkaio.admin_client(bootstrap_servers=env.bootstrap)
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
    #: records waiting for their batch, per partition
    pending: list[list[Record]] = field(default_factory=list)
    #: key -> partition, for str and int keys (murmur2 in Python is the costly part)
    hashed: dict[Any, int] = field(default_factory=dict)


class EdgeWriter:
    """The ``Output`` of a task with outgoing edges (counted in `counters`: records
    emitted, bytes written, time the producer made it wait).

    Records wait per edge and partition and leave as one Kafka record per batch
    (``schemas.edges.encode_batch``): when `batch_records` are waiting there, or at
    most `linger_ms` after the first of them came, whichever is first, and always
    before a barrier or the end-of-stream markers (so both stay exact at batch
    boundaries). One lock orders every send: batches, barriers and markers reach
    each partition in the order they were emitted."""

    def __init__(
        self,
        env: KafkaEnv,
        spec: TaskSpec,
        counters: TaskCounters | None = None,
        *,
        batch_records: int = BATCH_RECORDS,
        linger_ms: float = BATCH_LINGER_MS,
    ) -> None:
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
                    pending=[[] for _ in range(n)],
                )
            )
        t = self._task = spec.task
        self._batch_headers = edges.edge_headers(
            t.vertex_id, t.subtask_index, t.attempt, batch=True
        )
        self._end_headers = edges.edge_headers(t.vertex_id, t.subtask_index, t.attempt, end=True)
        self._producer = kafkaio.producer(bootstrap_servers=env.bootstrap, **EDGE_PRODUCER)
        self._batch_records = max(1, batch_records)
        self._linger_s = linger_ms / 1000
        self._lock = asyncio.Lock()
        self._waiting = asyncio.Event()  # something is pending: the flusher's timer runs
        self._flusher: asyncio.Task[None] | None = None
        self._started = False
        self._error: BaseException | None = None
        self.counters = counters if counters is not None else TaskCounters()
        #: batches sent (tests and logs).
        self.batches = 0

    @property
    def records(self) -> int:
        return self.counters.write_records

    @property
    def topics(self) -> list[str]:
        return [c.topic for c in self._channels]

    async def start(self) -> None:
        await self._producer.start()
        self._started = True
        self._flusher = asyncio.create_task(self._flush_on_time())

    async def emit(self, record: Record) -> None:
        await self.emit_batch([record])

    async def emit_batch(self, records: list[Record]) -> None:
        """Queue `records` for their partitions; send every batch that is full."""
        if self._error is not None:
            raise self._error
        if not records:
            return
        self.counters.write_records += len(records)
        full: list[tuple[_Channel, int]] = []
        size = self._batch_records
        for ch in self._channels:
            pending = ch.pending
            match ch.partitioning:
                case P.FORWARD:
                    queue = pending[self._subtask]
                    queue.extend(records)
                    if len(queue) >= size:
                        full.append((ch, self._subtask))
                case P.HASH:
                    self._hash(ch, records)
                    full.extend((ch, p) for p, q in enumerate(pending) if len(q) >= size)
                case P.REBALANCE:
                    n, u = ch.partitions, self._subtask
                    for record in records:
                        pending[edges.rebalance_partition(u, ch.sent, n)].append(record)
                        ch.sent += 1
                    full.extend((ch, p) for p, q in enumerate(pending) if len(q) >= size)
                case P.BROADCAST:
                    for queue in pending:
                        queue.extend(records)
                    full.extend((ch, p) for p, q in enumerate(pending) if len(q) >= size)
        self._waiting.set()
        if full:
            async with self._lock:
                for ch, partition in full:
                    await self._send_pending(ch, partition)

    def _hash(self, ch: _Channel, records: list[Record]) -> None:
        field_name = ch.key_field or ""
        pending, hashed, n = ch.pending, ch.hashed, ch.partitions
        for record in records:
            try:
                raw = record[field_name]
            except KeyError:
                raise EdgeProtocolError(
                    f"record has no field {field_name!r} to hash for edge {ch.topic}"
                ) from None
            kind = type(raw)
            if kind is str or kind is int:  # remembered (not True, == 1 as a dict key)
                try:
                    partition = hashed[raw]
                except KeyError:
                    partition = edges.hash_partition(raw, n)
                    if len(hashed) >= _HASHED_KEYS:
                        hashed.clear()
                    hashed[raw] = partition
            else:
                partition = edges.hash_partition(raw, n)
            pending[partition].append(record)

    async def _send_pending(self, ch: _Channel, partition: int) -> None:
        """Send what waits for `partition` of `ch` (the caller holds the lock)."""
        records = ch.pending[partition]
        if not records:
            return
        ch.pending[partition] = []
        for value in _encoded(records):
            await self._send(ch.topic, value, partition)

    async def _send(self, topic: str, value: bytes, partition: int) -> None:
        counters = self.counters
        began = time.monotonic()
        # Returns at once unless the producer's buffer is full: then downstream (the
        # brokers) holds this task back, which is what backpressured time measures.
        future = await self._producer.send(
            topic, value, partition=partition, headers=self._batch_headers
        )
        counters.backpressured_s += time.monotonic() - began
        counters.write_bytes += len(value)
        self.batches += 1
        future.add_done_callback(self._delivered)

    async def flush_batches(self) -> None:
        """Send every batch waiting, full or not (the caller must not hold the lock)."""
        async with self._lock:
            await self._send_all()

    async def _send_all(self) -> None:
        self._waiting.clear()
        for ch in self._channels:
            for partition in range(ch.partitions):
                await self._send_pending(ch, partition)

    async def _flush_on_time(self) -> None:
        """The time bound: a batch leaves at most `linger_ms` after it began."""
        try:
            while True:
                await self._waiting.wait()
                await asyncio.sleep(self._linger_s)
                await self.flush_batches()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the task fails at its next emit, barrier or end
            if self._error is None:
                self._error = err

    def _delivered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()  # also marks the exception as retrieved
        if error is not None and self._error is None:
            self._error = error

    async def finish(self) -> None:
        """The last batches, then end-of-stream on every partition this subtask may
        write to, then flush: when this returns, everything this subtask wrote is
        acknowledged."""
        async with self._lock:
            await self._send_all()
            for ch in self._channels:
                for partition in ch.markers:
                    future = await self._producer.send(
                        ch.topic, b"", partition=partition, headers=self._end_headers
                    )
                    future.add_done_callback(self._delivered)
        began = time.monotonic()
        await self._producer.flush()
        self.counters.backpressured_s += time.monotonic() - began
        if self._error is not None:
            raise self._error

    async def barrier(self, checkpoint_id: int) -> None:
        """The barrier of `checkpoint_id` on every partition this subtask may write
        to, behind every record emitted before it: the pending batches go first."""
        if self._error is not None:
            raise self._error
        t = self._task
        headers = edges.barrier_headers(t.vertex_id, t.subtask_index, t.attempt, checkpoint_id)
        async with self._lock:
            await self._send_all()
            for ch in self._channels:
                for partition in ch.markers:
                    future = await self._producer.send(
                        ch.topic, b"", partition=partition, headers=headers
                    )
                    future.add_done_callback(self._delivered)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._started:
            self._started = False
            await self._producer.stop()


def _encoded(records: list[Record]) -> list[bytes]:
    """`records` as batch values, split in halves until each fits `MAX_BATCH_VALUE`
    (a single record too large goes alone, and Kafka refuses it: the task fails)."""
    value = edges.encode_batch(records)
    if len(value) <= MAX_BATCH_VALUE or len(records) == 1:
        return [value]
    half = len(records) // 2
    return _encoded(records[:half]) + _encoded(records[half:])


@dataclass(slots=True)
class _Input:
    edge: ev.Edge
    waiting_for: set[int]  # upstream subtasks that have not ended
    blocked: dict[int, int] = field(default_factory=dict)  # upstream -> barrier it waits at
    held: deque[tuple[edges.Origin, ConsumerRecord[bytes, bytes]]] = field(default_factory=deque)


#: Called once barrier n came from every live upstream: (n, when alignment began).
OnAligned = Callable[[int, float], Awaitable[None]]
#: Called when the alignment of barrier n is given up: (n, why).
OnAbandoned = Callable[[int, str], None]


class EdgeReader:
    """Reads the task's partition of every input edge until all upstreams ended
    (counted in `counters`: data records and their bytes, time waiting for them)."""

    def __init__(self, env: KafkaEnv, spec: TaskSpec, counters: TaskCounters | None = None) -> None:
        self._attempt = spec.task.attempt
        index = spec.task.subtask_index
        self._inputs: dict[TopicPartition, _Input] = {}
        for edge in spec.inputs:
            tp = TopicPartition(edge_topic(env, spec, edge), index)
            upstream = _partitions_of(spec, edge.source)
            expected = edges.expected_upstreams(edge.partitioning, index, upstream)
            self._inputs[tp] = _Input(edge, set(expected))
        self._consumer = kafkaio.consumer(env.bootstrap, **EDGE_CONSUMER)
        self._started = False
        self.counters = counters if counters is not None else TaskCounters()
        self._aligning: int | None = None  # the barrier being aligned
        self._align_began = 0.0
        self._paused: set[TopicPartition] = set()
        self._released = False  # inputs were unblocked: held records to replay
        self._process: Callable[[list[Record]], Awaitable[None]] | None = None
        self._on_aligned: OnAligned | None = None
        self._on_abandoned: OnAbandoned | None = None
        #: checkpoint ids aligned so far, in order (tests and logs).
        self.aligned: list[int] = []

    @property
    def records(self) -> int:
        return self.counters.read_records

    async def connect(self) -> None:
        """Bootstrap the consumer: needs no edge topic yet, so it may overlap their creation."""
        if not self._started:
            await self._consumer.start()
            self._started = True

    async def start(self) -> None:
        """Read the inputs from their start (their topics must exist)."""
        await self.connect()
        self._consumer.assign(list(self._inputs))
        await self._consumer.seek_to_beginning(*self._inputs)

    async def run(
        self,
        process: Callable[[list[Record]], Awaitable[None]],
        on_aligned: OnAligned | None = None,
        on_abandoned: OnAbandoned | None = None,
    ) -> None:
        """Feed the data records to `process`, a batch at a time (one edge record's
        batch), and every aligned barrier to `on_aligned`; return once every input
        has ended."""
        self._process, self._on_aligned, self._on_abandoned = process, on_aligned, on_abandoned
        open_inputs = {tp for tp, i in self._inputs.items() if i.waiting_for}
        counters = self.counters
        while open_inputs:
            readable = open_inputs - self._paused
            began = time.monotonic()
            fetched = await self._consumer.getmany(*readable, timeout_ms=200)
            counters.idle_s += time.monotonic() - began
            for tp, records in fetched.items():
                state = self._inputs[tp]
                for record in records:
                    await self._handle(tp, state, self._origin(tp, state, record.headers), record)
            for tp in list(open_inputs):
                if not self._inputs[tp].waiting_for:
                    open_inputs.discard(tp)
                    self._consumer.pause(tp)

    async def _handle(
        self,
        tp: TopicPartition,
        state: _Input,
        origin: edges.Origin,
        record: ConsumerRecord[bytes, bytes],
    ) -> None:
        upstream = origin.subtask
        if upstream in state.blocked:  # past its barrier: waits for the others
            state.held.append((origin, record))
            return
        if upstream not in state.waiting_for:
            raise EdgeProtocolError(
                f"{tp.topic}[{tp.partition}]: record from subtask {upstream} "
                "after its end-of-stream (or from a subtask that may not write here)"
            )
        if origin.end:
            state.waiting_for.discard(upstream)  # an ended input counts as aligned
        elif origin.barrier is not None:
            self._block(tp, state, upstream, origin.barrier)
        else:
            if record.value is None:
                raise EdgeProtocolError(f"{tp.topic}: data record without a value")
            try:
                batch = edges.decode_batch(record.value) if origin.batch else None
            except ValueError as err:
                raise EdgeProtocolError(f"{tp.topic}[{tp.partition}]: {err}") from None
            records = batch if batch is not None else [json.loads(record.value)]
            counters = self.counters
            counters.read_records += len(records)
            counters.read_bytes += len(record.value)
            assert self._process is not None
            await self._process(records)  # type: ignore[arg-type]
            return
        await self._check_aligned()

    def _block(self, tp: TopicPartition, state: _Input, upstream: int, checkpoint_id: int) -> None:
        """Barrier `checkpoint_id` came from `upstream` on `tp`."""
        if self._aligning is not None and checkpoint_id < self._aligning:
            return  # an older checkpoint that some upstream skipped: superseded, dropped
        if self._aligning is not None and checkpoint_id > self._aligning:
            # A newer barrier overtook the one being aligned: give that one up.
            old = self._aligning
            if self._on_abandoned is not None:
                self._on_abandoned(old, f"barrier {checkpoint_id} arrived before {old} aligned")
            self._unblock()
        if self._aligning is None:
            self._aligning, self._align_began = checkpoint_id, time.monotonic()
        state.blocked[upstream] = checkpoint_id
        if state.blocked.keys() >= state.waiting_for:
            self._paused.add(tp)  # every live writer of the partition waits: stop reading it
            self._consumer.pause(tp)

    def _unblock(self) -> None:
        self._aligning = None
        for state in self._inputs.values():
            state.blocked.clear()
        self._released = True

    async def _check_aligned(self) -> None:
        n = self._aligning
        if n is not None and all(s.blocked.keys() >= s.waiting_for for s in self._inputs.values()):
            began = self._align_began
            self._unblock()
            self.aligned.append(n)
            if self._on_aligned is not None:
                await self._on_aligned(n, began)
        if self._released:
            self._released = False
            await self._replay_held()

    async def _replay_held(self) -> None:
        """Resume the paused partitions and handle the held records of the upstreams
        no longer blocked, in their order (one may block again at a later barrier)."""
        for tp, state in self._inputs.items():
            if tp in self._paused and not state.blocked.keys() >= state.waiting_for:
                self._paused.discard(tp)
                self._consumer.resume(tp)
            if any(o.subtask not in state.blocked for o, _ in state.held):
                held, state.held = state.held, deque()
                for origin, record in held:
                    await self._handle(tp, state, origin, record)

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
