"""``kafka_source`` and ``kafka_sink``: the data plane's way in and out of Kafka.

kafka_source (config):
  topic: the topic to read; a missing one fails the job at once (a
    non-recoverable error, no restart).
  start: ``earliest`` (default), ``latest``, or a timestamp in ms (the first
    offset at or after it; past the end: the end). ``latest`` is resolved
    once per job, not per attempt: it is the job's acceptance time (journaled
    in ``JobAccepted``, sent in every ``DeployTask``), taken as a timestamp.
    A restart therefore reads what was produced since the job was accepted,
    not only what comes after the restart. Record timestamps decide: with the
    default CreateTime, a producer whose clock is off from the leader's can
    land a record on the wrong side; ``message.timestamp.type=LogAppendTime``
    on the topic leaves only the broker's clock against the leader's. (From a
    coordinator that sends no acceptance time, ``latest`` is the end offsets
    when the task starts.)
  bounded: ``true`` reads up to the end offsets seen when the task starts,
    then finishes; ``false`` (default) reads until cancelled.
  Checkpoints keep the next offset of every partition it reads (after the
  last record it emitted); a restored task seeks there instead of `start`.
  The topic's partitions are split across the source's subtasks: partition p
  goes to subtask ``p % parallelism``. No consumer group: ``assign()`` only,
  read_committed, nothing committed (a restart reads from `start` again).
  A value that is a JSON object becomes the record; any other JSON value, or
  text that is not JSON, becomes ``{"value": ...}``.

kafka_sink (config):
  topic: the topic to write. A missing topic fails the job at once (a
    non-recoverable error, no restart) unless ``partitions`` is set.
  partitions: when set (>= 1), the sink creates a missing topic with this many
    partitions (the cluster's replication factor, broker default configs); an
    existing topic is used as it is. Absent or 0: the topic must exist.
  key_field: the record field whose string form (``schemas.edges.key_string``)
    is the Kafka key; absent: no key.
  delivery: ``at_least_once`` (default) or ``exactly_once``.
  Values are the record as compact JSON.
  at_least_once: an idempotent producer (acks=all) fed Kafka record batches the
  sink builds (worker/operators/sink_batches.py); a checkpoint and the end of
  input flush it and a failed delivery fails the task, so a FINISHED sink has
  had everything acknowledged; a restart may write records again.
  exactly_once: each checkpoint interval's records are committed in one Kafka
  transaction on ``NotifyCheckpointComplete`` (worker/operators/exactly_once.py,
  docs/checkpoints.md "Exactly-once sink"); read the topic read_committed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from aiokafka import TopicPartition

from schemas import kafkaio
from schemas.catalog import murmur2
from schemas.edges import key_string
from schemas.snapshot import TaskSnapshot
from worker.errors import MissingTopicError, OperatorConfigError, TaskError
from worker.operators import exactly_once
from worker.operators.api import (
    KafkaEnv,
    Output,
    Record,
    RecordOperator,
    SourceOperator,
    TaskContext,
    emit_batch,
)
from worker.operators.jsonvalues import encode_record, encode_records
from worker.operators.sink_batches import Pair, SinkBatches

_POLL_MS: Final = 200
#: Keys whose Kafka key and partition a sink remembers (cleared when full).
_HASHED_KEYS: Final = 100_000


class MissingKeyFieldError(TaskError):
    """A record reaching ``kafka_sink`` lacks its ``key_field`` (a data error, not config)."""


def decode_value(value: bytes | None) -> Record:
    """A Kafka value as a record (see the module docstring)."""
    if value is None:
        return {"value": None}
    text = value.decode(errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"value": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


async def _partitions(bootstrap: str, topic: str, fix: str) -> int:
    """The partition count of `topic`; a missing topic fails the job (non-recoverable:
    a restart would find it missing again), with `fix` telling how to fix it."""
    found = await kafkaio.describe_topics(bootstrap, [topic])
    if topic not in found:
        raise MissingTopicError(f"topic {topic!r} does not exist: {fix}")
    return found[topic].partitions


async def _create_topic(env: KafkaEnv, topic: str, partitions: int) -> None:
    """Create `topic` with `partitions` (broker defaults otherwise); an existing one is kept
    as it is."""
    await exactly_once.create_topic(env, topic, partitions)


class KafkaSource(SourceOperator):
    """Reads this subtask's share of a topic's partitions."""

    async def open(self, ctx: TaskContext) -> None:
        env = ctx.kafka
        self.topic = ctx.config_str("topic")
        start = ctx.config_str("start", "earliest").strip().lower()
        self.bounded = ctx.config_bool("bounded", False)
        if start not in ("earliest", "latest") and not start.isdigit():
            raise OperatorConfigError(
                f"config start={start!r}: earliest, latest or a timestamp in ms"
            )
        if start == "latest" and ctx.spec.job_accepted_at is not None:
            start = str(ctx.spec.job_accepted_at)  # the same on every attempt
        count = await _partitions(
            env.bootstrap, self.topic, "create it before the job runs (kafka_source only reads)"
        )
        spec = ctx.spec
        self.mine = [
            TopicPartition(self.topic, p)
            for p in range(count)
            if p % spec.parallelism == spec.task.subtask_index
        ]
        self.consumer = kafkaio.consumer(env.bootstrap, max_poll_records=2000)
        await self.consumer.start()
        if not self.mine:
            ctx.log.info("no partition of %s for this subtask (%d partitions)", self.topic, count)
            self.end: dict[TopicPartition, int] = {}
            self.positions: dict[TopicPartition, int] = {}
            return
        self.consumer.assign(self.mine)
        if start == "earliest":
            await self.consumer.seek_to_beginning(*self.mine)
        else:
            # The end offsets are sought explicitly: aiokafka's seek_to_end after an
            # offsets_for_times was seen to leave the position at the beginning.
            found = {}
            if start != "latest":
                found = await self.consumer.offsets_for_times({tp: int(start) for tp in self.mine})
            past = [tp for tp in self.mine if found.get(tp) is None]  # latest, or past the end
            ends = await self.consumer.end_offsets(past) if past else {}
            for tp in self.mine:
                at = found.get(tp)
                self.consumer.seek(tp, ends[tp] if at is None else at.offset)
        # Under read_committed these are the last stable offsets.
        self.end = await self.consumer.end_offsets(self.mine) if self.bounded else {}
        # Next offset per partition after what was emitted: the checkpointed state.
        self.positions = {tp: await self.consumer.position(tp) for tp in self.mine}
        partitions = [tp.partition for tp in self.mine]
        ctx.log.info("reading %s partitions %s from %s", self.topic, partitions, start)

    async def run(self, ctx: TaskContext, out: Output) -> None:
        if not self.mine:
            if self.bounded:
                return
            await asyncio.Event().wait()  # nothing to read, ever: wait for the cancel
        positions = self.positions
        remaining = set(self.mine)
        if self.bounded:
            await self._drop_finished(remaining)
        while remaining:
            fetched = await self.consumer.getmany(*remaining, timeout_ms=_POLL_MS)
            for tp, fetched_records in fetched.items():
                end = self.end.get(tp)
                records = fetched_records
                if end is not None:
                    records = [r for r in fetched_records if r.offset < end]
                if not records:
                    continue
                # One batch per partition fetch; the position moves with it, no await
                # in between (a barrier goes before or after the whole batch).
                await emit_batch(out, [decode_value(r.value) for r in records])
                positions[tp] = records[-1].offset + 1
            if self.bounded:
                await self._drop_finished(remaining)

    async def snapshot_state(self) -> TaskSnapshot:
        mine = {tp.partition: offset for tp, offset in self.positions.items()}
        return TaskSnapshot(source_positions={self.topic: mine} if mine else {})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        restored = snapshot.source_positions.get(self.topic, {})
        for tp in self.mine:
            offset = restored.get(tp.partition)
            if offset is not None:  # a partition added since starts at `start`
                self.consumer.seek(tp, offset)
                self.positions[tp] = offset

    async def _drop_finished(self, remaining: set[TopicPartition]) -> None:
        for tp in list(remaining):
            if await self.consumer.position(tp) >= self.end[tp]:
                remaining.discard(tp)
                self.consumer.pause(tp)

    async def close(self) -> None:
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            await consumer.stop()


class KafkaSink(RecordOperator):
    """Writes every record to a topic; emits nothing."""

    async def open(self, ctx: TaskContext) -> None:
        env = ctx.kafka
        self.topic = ctx.config_str("topic")
        key_field = ctx.config.get("key_field") or None
        self.key_field = key_field
        partitions = ctx.config_int("partitions", 0)
        if partitions < 0:
            raise OperatorConfigError(f"config partitions={partitions} must be >= 1")
        if partitions:
            await _create_topic(env, self.topic, partitions)
        fix = "create it, or give the kafka_sink vertex config `partitions: N` to create it"
        # A topic just created may take a moment to appear in the metadata.
        for wait in (0.1, 0.2, 0.5, 1.0, 2.0) if partitions else ():
            try:
                await _partitions(env.bootstrap, self.topic, fix)
                break
            except MissingTopicError:
                await asyncio.sleep(wait)
        self.partitions = await _partitions(env.bootstrap, self.topic, fix)
        self.keys: dict[Any, tuple[bytes, int]] = {}  # see _by_partition
        self.sent = 0  # round robin of records without a key, a batch at a time
        self.error: BaseException | None = None
        self.records = 0
        self.restore_id = ctx.spec.restore_checkpoint_id
        self._marks: dict[int, list[asyncio.Future[Any]]] = {}  # see snapshot_durable
        delivery = exactly_once.delivery_of(ctx.config_str("delivery", exactly_once.AT_LEAST_ONCE))
        self.writer: exactly_once.TransactionalWriter | None = None
        if delivery == exactly_once.EXACTLY_ONCE:
            self.writer = exactly_once.TransactionalWriter(env, ctx.spec, self.topic, ctx.log)
            await self.writer.start()
            return
        self.producer = exactly_once.sink_producer(env.bootstrap)
        await self.producer.start()
        self.batches = SinkBatches(self.producer, self.topic, self.partitions)

    async def process(self, record: Record, out: Output) -> None:
        await self.process_batch([record], out)

    async def process_batch(self, records: list[Record], out: Output) -> None:
        """Each record one Kafka record of the topic, as before batches (key = the
        key field's string form, value = compact JSON), in the partition Kafka's
        default partitioner picks for its key (murmur2; records without a key: one
        partition per call, round robin); sent as ``sink_batches`` says."""
        if self.error is not None:
            raise self.error
        if self.writer is not None:
            kf = self.key_field
            for record in records:
                key = None if kf is None else key_string(self._key_of(record, kf))
                self.writer.add((key, encode_record(record)))
            self.records += len(records)
            return
        if self.batches.error is not None:
            raise self.batches.error
        by_partition = self._by_partition(records)
        self.records += len(records)
        await self.batches.write(by_partition)

    @staticmethod
    def _key_of(record: Record, kf: str) -> Any:
        try:
            return record[kf]
        except KeyError:
            raise MissingKeyFieldError(
                f"kafka_sink: record has no key field {kf!r}: {record}"
            ) from None

    def _by_partition(self, records: list[Record]) -> dict[int, list[Pair]]:
        """The records as (key, value) bytes, grouped by partition, in order."""
        kf, n = self.key_field, self.partitions
        values = encode_records(records)
        if kf is None:
            spread = self.sent % n
            self.sent += 1
            return {spread: [(None, v) for v in values]}
        # raw key -> (Kafka key, partition), for str and int keys (others vary too
        # much, and True == 1 as a dict key while their key strings differ)
        known = self.keys
        grouped: dict[int, list[Pair]] = {}
        for record, value in zip(records, values, strict=True):
            try:
                raw = record[kf]
            except KeyError:
                raw = self._key_of(record, kf)  # raises MissingKeyFieldError
            kind = type(raw)
            found = known.get(raw) if kind is str or kind is int else None
            if found is None:
                key = key_string(raw).encode()
                found = (key, (murmur2(key) & 0x7FFFFFFF) % n)
                if kind is str or kind is int:
                    if len(known) >= _HASHED_KEYS:
                        known.clear()
                    known[raw] = found
            key, partition = found
            try:
                grouped[partition].append((key, value))
            except KeyError:
                grouped[partition] = [(key, value)]
        return grouped

    async def snapshot_state_at(self, checkpoint_id: int) -> TaskSnapshot:
        if self.error is not None:
            raise self.error
        if self.writer is not None:  # pre-commit: the interval's records in the snapshot
            return self.writer.snapshot(checkpoint_id)
        # At-least-once: everything before the barrier is acknowledged by Kafka before
        # the checkpoint counts (no state of its own). The open batches leave now; their
        # acknowledgements are awaited in the background (``snapshot_durable``), so
        # records keep flowing meanwhile (a flush here held the whole chain still).
        self._marks[checkpoint_id] = await self.batches.mark()
        return TaskSnapshot()

    async def snapshot_durable(self, checkpoint_id: int) -> None:
        sent = self._marks.pop(checkpoint_id, None)
        for older in [c for c in self._marks if c < checkpoint_id]:
            del self._marks[older]  # a checkpoint given up before it got here
        if sent is not None:
            await self.batches.delivered(sent)

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        if self.writer is not None and self.restore_id is not None:
            await self.writer.restore(self.restore_id, snapshot.operator_state)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.writer is None:
            return
        try:
            await self.writer.commit(checkpoint_id)
        except Exception as err:  # fails the task at its next record or at the end
            if self.error is None:
                self.error = err
            raise

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.writer is not None:
            pending = sorted(self.writer.pending)
            self.writer.log.info(
                "checkpoint %d aborted: pending %s wait for the next completed one",
                checkpoint_id, pending,
            )  # fmt: skip

    async def end_of_input(self, out: Output) -> None:
        if self.error is not None:
            raise self.error
        if self.writer is not None:
            await self.writer.commit(2**62, final=True)
            return
        await self.batches.flush()

    async def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            await writer.close()
        batches = getattr(self, "batches", None)
        if batches is not None:
            await batches.close()
        producer = getattr(self, "producer", None)
        if producer is not None:
            await producer.stop()
