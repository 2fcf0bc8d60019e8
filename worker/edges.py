"""Edges at runtime: the topics between vertices, their writer and their reader.

Names, partition choice and markers come from ``schemas.edges`` (shared with
the coordinator, which deletes a terminal job's edge topics by prefix); this
module is the aiokafka side:

- ``create_edge_topics``: a task makes sure every edge topic it touches, input
  and output, exists (the leader creates them ahead as it decides the run; a task
  that comes first creates them itself, TOPIC_ALREADY_EXISTS is success), with as
  many partitions as the downstream vertex has subtasks, and every partition has a
  leader before the task uses them. A task runs it in the background: the writer's
  first send and the reader's assignment wait for it, not the task's RUNNING.
- ``EdgeClients`` / ``WarmEdgeClients``: where the writer, the reader and the topic
  check get their Kafka clients; a slot process keeps one of each started and
  connected while it waits, so a deploy does not pay for connecting.
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
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

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


class EdgeClients:
    """Where a task's edge clients come from: each made and started when asked for.
    The caller owns what it gets (and stops it). ``WarmEdgeClients`` is the fast kind."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def _make(self, kind: str) -> Any:
        if kind == "producer":
            return kafkaio.producer(bootstrap_servers=self.bootstrap, **EDGE_PRODUCER)
        if kind == "consumer":
            return kafkaio.consumer(self.bootstrap, **EDGE_CONSUMER)
        return kafkaio.admin_client(bootstrap_servers=self.bootstrap)

    async def _fresh(self, kind: str) -> Any:
        client = self._make(kind)
        try:
            await client.start()
        except BaseException:
            await _close(client)
            raise
        return client

    async def _connected(self, kind: str) -> Any:
        """A started client connected to every broker: ``start`` only bootstraps (the
        consumer's and the admin client's first request would open the connection)."""
        client = await self._fresh(kind)
        try:
            # aiokafka (pinned) keeps the network client of consumers and admin clients
            # in ``_client``; ``ready`` opens the connection a request would.
            network = client.client if kind == "producer" else client._client
            for broker in network.cluster.brokers():
                await network.ready(broker.nodeId)
        except BaseException:  # cancelled (discarded) or failed: nobody else stops it
            await _close(client)
            raise
        return client

    async def take(self, kind: str) -> Any:
        """A started client: ``producer`` (EDGE_PRODUCER), ``consumer`` (EDGE_CONSUMER,
        nothing assigned) or ``admin``."""
        return await self._fresh(kind)

    async def producer(self) -> AIOKafkaProducer:
        client: AIOKafkaProducer = await self.take("producer")
        return client

    async def consumer(self) -> AIOKafkaConsumer:
        client: AIOKafkaConsumer = await self.take("consumer")
        return client

    async def admin(self) -> AIOKafkaAdminClient:
        client: AIOKafkaAdminClient = await self.take("admin")
        return client


#: A warm client older than this is replaced (an idempotent producer's id expires on
#: the broker after a day of silence; metadata of an idle client goes stale).
WARM_MAX_AGE_S: Final = 600.0


class WarmEdgeClients(EdgeClients):
    """Edge clients started while the slot process waits for its next task, so a
    deploy finds them connected: the bootstrap, metadata and producer-id round trips
    (20-90 ms on a busy 2-core host) leave the deploy path. ``prepare`` starts one of
    each kind that is missing or too old, in the background; ``take`` hands over the
    prepared one (waiting for its start if it is under way) or, when there is none or
    it failed to start, makes one on the spot."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self._ready: dict[str, tuple[float, asyncio.Task[Any]]] = {}
        self._discarding: set[asyncio.Task[None]] = set()

    def prepare(self) -> None:
        now = time.monotonic()
        for kind in ("producer", "consumer", "admin"):
            held = self._ready.get(kind)
            if held is not None and now - held[0] < WARM_MAX_AGE_S:
                continue
            if held is not None:
                task = asyncio.create_task(_discard(held[1]))
                self._discarding.add(task)
                task.add_done_callback(self._discarding.discard)
            self._ready[kind] = (now, asyncio.create_task(self._connected(kind)))

    async def take(self, kind: str) -> Any:
        held = self._ready.pop(kind, None)
        if held is not None:
            try:
                return await held[1]
            except Exception as err:  # e.g. the broker was away: try once more now
                log.info("warm %s client did not start (%r): making one", kind, err)
        return await self._fresh(kind)

    async def close(self) -> None:
        held, self._ready = self._ready, {}
        await asyncio.gather(*(_discard(task) for _, task in held.values()), *self._discarding)


async def _close(client: Any) -> None:
    if isinstance(client, AIOKafkaAdminClient):
        await client.close()
    else:
        await client.stop()


async def _discard(start: asyncio.Task[Any]) -> None:
    """Stop a warm client nobody took (whether or not it had started)."""
    if not start.done():
        start.cancel()
    try:
        client = await start
    except BaseException:  # it never started: _fresh closed it
        return
    with contextlib.suppress(Exception):
        await _close(client)


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


async def create_edge_topics(
    env: KafkaEnv, spec: TaskSpec, clients: EdgeClients | None = None
) -> list[str]:
    """Make the topics of every edge into and out of the task's vertex exist, every
    partition led. The leader creates a run's edge topics as it decides the run
    (coordinator/runtime/edge_topics.py), so a task usually finds them ready and this
    is one metadata request; a task that is first creates them. Returns their names."""
    wanted: dict[str, int] = {}
    for edge in (*spec.inputs, *spec.outputs):
        wanted[edge_topic(env, spec, edge)] = _partitions_of(spec, edge.target)
    if not wanted:
        return []
    catalog = env.catalog
    admin = await (clients or EdgeClients(env.bootstrap)).admin()
    try:
        await kafkaio.ensure_topics(
            admin, wanted, catalog.replication_factor, edges.edge_topic_config(catalog)
        )
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
        clients: EdgeClients | None = None,
        topics: Awaitable[object] | None = None,
    ) -> None:
        self._clients = clients or EdgeClients(env.bootstrap)
        self._topics = topics  # awaited before the first send, then None
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
        self._producer: AIOKafkaProducer  # from start() on
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
        self._producer = await self._clients.producer()
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

    async def _topics_ready(self) -> None:
        if self._topics is not None:
            await self._topics  # raises EdgeTopicError if they cannot be made
            self._topics = None

    async def _send(self, topic: str, value: bytes, partition: int) -> None:
        if self._topics is not None:
            await self._topics_ready()
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
            await self._topics_ready()
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
            await self._topics_ready()
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

    def __init__(
        self,
        env: KafkaEnv,
        spec: TaskSpec,
        counters: TaskCounters | None = None,
        clients: EdgeClients | None = None,
        topics: Awaitable[object] | None = None,
    ) -> None:
        self._clients = clients or EdgeClients(env.bootstrap)
        self._topics = topics  # awaited before the inputs are assigned
        self._attempt = spec.task.attempt
        index = spec.task.subtask_index
        self._inputs: dict[TopicPartition, _Input] = {}
        for edge in spec.inputs:
            tp = TopicPartition(edge_topic(env, spec, edge), index)
            upstream = _partitions_of(spec, edge.source)
            expected = edges.expected_upstreams(edge.partitioning, index, upstream)
            self._inputs[tp] = _Input(edge, set(expected))
        self._consumer: AIOKafkaConsumer  # from connect() on
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
            self._consumer = await self._clients.consumer()
            self._started = True

    async def start(self) -> None:
        """Read the inputs from their start (once their topics exist, when the reader
        was given their creation to wait for; else they must exist)."""
        await self.connect()
        if self._topics is not None:
            await self._topics  # raises EdgeTopicError if they cannot be made
            self._topics = None
        self._consumer.assign(list(self._inputs))
        # Every run has topics of its own, written from offset 0: no ListOffsets round
        # trip to find their beginning (auto_offset_reset=earliest covers a log whose
        # start retention moved on).
        for tp in self._inputs:
            self._consumer.seek(tp, 0)

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
