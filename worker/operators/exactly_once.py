"""The exactly-once side of ``kafka_sink`` (``delivery: exactly_once``).

docs/checkpoints.md ("Exactly-once sink") is the design; in short, a
write-ahead two-phase commit:

- Between two barriers the sink keeps its records in memory (the *interval*).
  At barrier n the interval becomes *pending n* and every pending interval is
  part of the sink's snapshot (pre-commit: the records are durable in the
  checkpoint, not yet in the topic).
- On ``NotifyCheckpointComplete`` m the pending intervals up to m go to the
  topic in ONE Kafka transaction, with a *commit marker* (``{"checkpoint": m}``
  keyed by the sink subtask) written to the cluster's ``<prefix>.sink-commits``
  topic in the same transaction: the records and the marker become visible to
  read_committed consumers together, or not at all. An aborted checkpoint
  drops nothing (its records were processed and the sources will not send them
  again): they are committed with the next completed checkpoint.
- The producer's ``transactional.id`` is ``<cluster>-<job>-<vertex>-<subtask>``,
  the same for every attempt: a new attempt's producer fences the previous
  one and aborts its open transaction, then reads its marker (read_committed, up to
  the high watermark: see ``read_marker``) to learn which checkpoint the sink
  committed last.
- On restore from checkpoint n, the pending intervals of the snapshot that
  are later than the marker are written and committed (marker n): a
  checkpoint that completed but was not committed before a crash is neither
  lost (the sources resume after it) nor written twice.
- At the end of a bounded input, everything pending and the last interval are
  committed with a *final* marker; an attempt that finds a final marker
  (a restart after the sink had finished) drops its input: the sink's output
  is complete already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import IllegalOperation, ProducerFenced

from schemas import kafkaio
from schemas.snapshot import TaskSnapshot
from worker.errors import MissingTopicError, OperatorConfigError
from worker.operators.api import KafkaEnv, TaskSpec

#: Role of the commit-marker topic: ``<prefix>.sink-commits``.
MARKER_ROLE: Final = "sink-commits"
#: Longer than the producers' transaction timeout (aiokafka's default, 60 s): a
#: transaction left open by a dead producer has ended by then.
_READ_TIMEOUT_S: Final = 120.0

AT_LEAST_ONCE: Final = "at_least_once"
EXACTLY_ONCE: Final = "exactly_once"
DELIVERIES: Final = (AT_LEAST_ONCE, EXACTLY_ONCE)

#: A record as the sink sends it: (key, value), both text (UTF-8 on the wire).
Entry = tuple[str | None, str]


def delivery_of(raw: str) -> str:
    """The sink's ``delivery`` config value, checked."""
    value = raw.strip().lower().replace("-", "_")
    if value not in DELIVERIES:
        raise OperatorConfigError(f"config delivery={raw!r}: {' or '.join(DELIVERIES)}")
    return value


def transactional_id(env: KafkaEnv, spec: TaskSpec) -> str:
    """Stable across attempts of one sink subtask (fencing depends on it)."""
    t = spec.task
    return f"{env.catalog.cluster_id}-{t.job_id}-{t.vertex_id}-{t.subtask_index}"


def marker_topic(env: KafkaEnv) -> str:
    return f"{env.catalog.prefix}.{MARKER_ROLE}"


async def create_topic(
    env: KafkaEnv, topic: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    """Create `topic` with `partitions` and `configs` (broker defaults otherwise); an
    existing one is kept as it is."""
    admin = kafkaio.admin_client(bootstrap_servers=env.bootstrap)
    await admin.start()
    try:
        rf = env.catalog.replication_factor
        new = NewTopic(topic, partitions, rf, topic_configs=configs or {})
        response = await admin.create_topics([new])
    finally:
        await admin.close()
    for name, code, message in response.topic_errors:
        if code not in (0, kafkaio.TOPIC_ALREADY_EXISTS):
            raise MissingTopicError(f"creating topic {name!r} failed: error {code} {message}")


async def create_marker_topic(env: KafkaEnv) -> None:
    """One partition, compacted (only the latest marker per sink subtask matters)."""
    configs = {
        "cleanup.policy": "compact",
        "segment.ms": "600000",
        "min.cleanable.dirty.ratio": "0.1",
        "min.insync.replicas": str(max(1, env.catalog.replication_factor - 1)),
    }
    await create_topic(env, marker_topic(env), 1, configs)


def sink_producer(bootstrap: str, transactional_id: str | None = None) -> AIOKafkaProducer:
    """The sink's producer: idempotent, acks=all; transactional for exactly-once."""
    return kafkaio.producer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


class Marker:
    """The latest commit marker of one sink subtask (``checkpoint`` -1: none)."""

    def __init__(self, checkpoint: int = -1, final: bool = False) -> None:
        self.checkpoint, self.final = checkpoint, final

    def encode(self) -> bytes:
        return json.dumps({"checkpoint": self.checkpoint, "final": self.final}).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Marker:
        if value is None:  # a tombstone
            return cls()
        data = json.loads(value)
        return cls(int(data["checkpoint"]), bool(data.get("final", False)))

    def __repr__(self) -> str:
        return f"Marker(checkpoint={self.checkpoint}, final={self.final})"


async def _high_watermark(bootstrap: str, tp: TopicPartition) -> int:
    consumer = kafkaio.consumer(bootstrap, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def read_marker(env: KafkaEnv, key: str) -> Marker:
    """The latest committed marker of `key`, read_committed up to the end.

    The end is the partition's high watermark when the reading starts, once every
    transaction below it has ended: a read_committed consumer's end is the last
    stable offset, which stops at the first record of a transaction still open. The
    marker topic is shared by every sink subtask, so another subtask's transaction
    left open (its worker killed between writing its marker and committing) would
    hide this subtask's later markers, and an interval committed already would be
    committed again. The open transaction ends when that subtask's next attempt
    fences it, or at the latest when the broker aborts it (transaction timeout)."""
    topic = marker_topic(env)
    tp = TopicPartition(topic, 0)
    high = await _high_watermark(env.bootstrap, tp)
    consumer = kafkaio.consumer(env.bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READ_TIMEOUT_S
        while (end := (await consumer.end_offsets([tp]))[tp]) < high:
            if loop.time() > deadline:
                raise TimeoutError(f"{topic}: a transaction below offset {high} stays open")
            await asyncio.sleep(0.1)
        marker = Marker()
        wanted = key.encode()
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} did not reach offset {end}")
            fetched = await consumer.getmany(tp, timeout_ms=200)
            for record in fetched.get(tp, []):
                if record.key == wanted:
                    marker = Marker.decode(record.value)
        return marker
    finally:
        await consumer.stop()


class TransactionalWriter:
    """One sink subtask's pending output and its transactions (see the module docstring)."""

    def __init__(self, env: KafkaEnv, spec: TaskSpec, topic: str, log: logging.Logger) -> None:
        self.env, self.spec, self.topic, self.log = env, spec, topic, log
        self.transactional_id = transactional_id(env, spec)
        self.marker_topic = marker_topic(env)
        self.current: list[Entry] = []
        self.pending: dict[int, list[Entry]] = {}
        self.committed = Marker()
        self.lock = asyncio.Lock()
        self.in_transaction = False
        #: records committed by this attempt (tests, logs).
        self.records_committed = 0
        self.producer: AIOKafkaProducer | None = None
        #: a transaction that failed: its outcome may be unknown (a commit that timed
        #: out may have gone through), so this attempt commits nothing more; the next
        #: attempt learns from the marker what was committed.
        self.broken: BaseException | None = None

    async def start(self) -> None:
        """Create the marker topic if needed, fence older attempts, read the marker."""
        await create_marker_topic(self.env)
        self.producer = sink_producer(self.env.bootstrap, self.transactional_id)
        # start() initialises the transactional id: the previous attempt's producer
        # is fenced and its open transaction aborted (or a commit in flight finished)
        # before the marker is read.
        await self.producer.start()
        self.committed = await read_marker(self.env, self.transactional_id)
        if self.committed.final:
            self.log.info(
                "exactly-once sink: output already complete (%r): this attempt drops its input",
                self.committed,
            )
        elif self.committed.checkpoint >= 0:
            self.log.info("exactly-once sink: last commit %r", self.committed)

    @property
    def dropping(self) -> bool:
        return self.committed.final

    def add(self, entry: Entry) -> None:
        if not self.dropping:
            self.current.append(entry)

    def snapshot(self, checkpoint_id: int) -> TaskSnapshot:
        """Pre-commit: the interval becomes pending `checkpoint_id`; the snapshot holds
        every pending interval (a copy: processing goes on while it is written)."""
        if self.current:
            self.pending.setdefault(checkpoint_id, []).extend(self.current)
            self.current = []
        state = {
            "pending": [[cid, [list(e) for e in entries]] for cid, entries in self.pending.items()]
        }
        return TaskSnapshot(operator_state=state)

    async def restore(self, restored_id: int, state: bytes | Mapping[str, Any]) -> None:
        """Commit the snapshot's pending intervals the marker says were not committed."""
        if not isinstance(state, Mapping):
            return
        if self.committed.checkpoint > restored_id and not self.committed.final:
            self.log.warning(
                "exactly-once sink: restoring checkpoint %d but %r was committed",
                restored_id, self.committed,
            )  # fmt: skip
        todo = {
            int(cid): [(k, v) for k, v in entries]
            for cid, entries in state.get("pending", [])
            if int(cid) > self.committed.checkpoint and not self.committed.final
        }
        skipped = len(state.get("pending", [])) - len(todo)
        self.log.info(
            "exactly-once sink: restoring checkpoint %d: %d pending interval(s) to commit, "
            "%d committed already (%r)",
            restored_id, len(todo), skipped, self.committed,
        )  # fmt: skip
        self.pending = todo
        await self.commit(restored_id)

    async def commit(self, upto: int, *, final: bool = False) -> None:
        """One transaction: the pending intervals up to `upto` (and, `final`, the
        current one) plus the marker. Raises when the transaction fails."""
        async with self.lock:
            if self.broken is not None:
                raise self.broken
            if self.dropping:
                return
            ids = sorted(cid for cid in self.pending if cid <= upto)
            batch = [entry for cid in ids for entry in self.pending[cid]]
            if final:
                batch.extend(self.current)
            if not batch and not final:
                for cid in ids:
                    del self.pending[cid]
                return
            last = max([self.committed.checkpoint, *ids]) if final else upto
            marker = Marker(max(last, self.committed.checkpoint), final)
            await self._transaction(batch, marker)
            for cid in ids:
                del self.pending[cid]
            if final:
                self.current = []
            self.committed = marker
            self.records_committed += len(batch)
            self.log.info(
                "exactly-once sink: committed %d record(s) of checkpoint(s) %s%s",
                len(batch), ids, " and the end of input" if final else "",
            )  # fmt: skip

    async def _transaction(self, batch: list[Entry], marker: Marker) -> None:
        producer = self.producer
        assert producer is not None
        await producer.begin_transaction()
        self.in_transaction = True
        try:
            try:
                futures = [
                    await producer.send(
                        self.topic, value.encode(), key=None if key is None else key.encode()
                    )
                    for key, value in batch
                ]
                futures.append(
                    await producer.send(
                        self.marker_topic, marker.encode(), key=self.transactional_id.encode()
                    )
                )
            except IllegalOperation as err:
                # The producer left the transaction between two sends: the broker fenced
                # it (a newer attempt started with the same transactional id).
                raise ProducerFenced(
                    f"{self.transactional_id}: transaction ended by the broker"
                ) from err
            await asyncio.gather(*futures)
            await producer.commit_transaction()
        except BaseException as err:
            self.broken = err
            await self._abort()
            raise
        finally:
            self.in_transaction = False

    async def _abort(self) -> None:
        producer = self.producer
        if producer is None or not self.in_transaction:
            return
        with contextlib.suppress(Exception):
            await producer.abort_transaction()
        self.in_transaction = False

    async def close(self) -> None:
        """Abort a transaction still open (a failed or cancelled task); the next
        attempt's producer would abort it anyway when it fences this one."""
        if self.producer is not None:
            await self._abort()
            await self.producer.stop()
