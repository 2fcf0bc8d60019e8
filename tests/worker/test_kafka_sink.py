"""``kafka_sink`` (at-least-once) on the real broker: the bytes it writes, where, in
what order, and how its batches leave (worker/operators/sink_batches.py)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog, murmur2
from schemas.edges import key_string
from tests.conftest import Stack
from worker.operators.api import KafkaEnv, TaskContext, TaskSpec
from worker.operators.jsonvalues import encode_record, encode_records
from worker.operators.kafka_io import KafkaSink

#: What the sink wrote before its own encoder (and what a JSON reader expects).
PLAIN = json.JSONEncoder(separators=(",", ":"), default=str).encode

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(record=st.dictionaries(st.text(), JSONISH, max_size=5))
def test_the_sinks_encoder_writes_what_json_writes(record: dict[str, Any]) -> None:
    assert encode_record(record) == PLAIN(record)


@given(records=st.lists(st.dictionaries(st.text(), JSONISH, max_size=4), max_size=8))
def test_a_batch_encodes_to_what_json_writes_record_by_record(
    records: list[dict[str, Any]],
) -> None:
    """Flat records (one C call for the batch) and records holding lists of objects
    or empty ones (the boundary also inside a record: one call per record) alike."""
    assert encode_records(records) == [PLAIN(r).encode() for r in records]


def test_a_batch_with_the_boundary_inside_a_record_is_still_exact() -> None:
    records: list[dict[str, Any]] = [
        {"a": [{"b": 1}, {"c": "\x00}"}]},
        {},
        {"d": "}\x00{"},
        {"e": 1.5},
    ]
    assert encode_records(records) == [PLAIN(r).encode() for r in records]
    flat = [{"k": i, "s": "x\x00}{\x01", "f": None} for i in range(50)]
    assert encode_records(flat) == [PLAIN(r).encode() for r in flat]


def test_values_json_cannot_write_become_their_str() -> None:
    record = {"set": {1, 2}, "nan": math.nan, "é": "ü", "t": (1, "a"), "b": True, "n": None}
    assert encode_record(record) == PLAIN(record)


async def _read(bootstrap: str, topic: str, partitions: int) -> dict[int, list[Any]]:
    """Every (key, value) of the topic's partitions, raw bytes, in offset order."""
    consumer = kafkaio.consumer(bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[int, list[Any]] = {p: [] for p in range(partitions)}
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += [(r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def _open_sink(stack: Stack, topic: str, **config: str) -> KafkaSink:
    task = ev.TaskRef(job_id="j", vertex_id="out", subtask_index=0, attempt=0)
    spec = TaskSpec(task=task, operator="kafka_sink", vertex_name="out", parallelism=1,
                    max_parallelism=8, config={"topic": topic, **config})  # fmt: skip
    env = KafkaEnv(stack.bootstrap, Catalog("sinktest"))
    sink = KafkaSink()
    await sink.open(TaskContext(spec, logging.getLogger("test"), env))
    return sink


class _Nowhere:
    async def emit(self, record: dict[str, Any]) -> None:
        raise AssertionError("a sink emits nothing")


async def test_small_calls_gather_into_rounds_and_every_record_lands_in_order(
    stack: Stack, new_topic: Callable[..., Awaitable[str]]
) -> None:
    """300 calls of 1 to 3 records: the first call's batch leaves at once, the calls
    made while it is out gather into the next round, so far fewer batches than calls;
    each record is in its key's partition (murmur2 of the key string), in call order,
    its value the bytes plain JSON gives."""
    partitions = 3
    topic = await new_topic("sink", partitions=partitions)
    sink = await _open_sink(stack, topic, key_field="key")
    sent: list[dict[str, Any]] = []
    try:
        for call in range(300):
            # int keys, and every fifth call string keys: "3" and 3 share a Kafka key
            keys: list[int | str] = [(call + i) % 7 for i in range(1 + call % 3)]
            if call % 5 == 0:
                keys = [str(k) for k in keys]
            records = [{"key": k, "n": call, "i": i, "s": "é"} for i, k in enumerate(keys)]
            sent += records
            await sink.process_batch(records, _Nowhere())
        await sink.end_of_input(_Nowhere())
        assert 2 <= sink.batches.batches < 100, sink.batches.batches
    finally:
        await sink.close()
    got = await _read(stack.bootstrap, topic, partitions)
    expected: dict[int, list[Any]] = {p: [] for p in range(partitions)}
    for record in sent:
        key = key_string(record["key"]).encode()
        expected[(murmur2(key) & 0x7FFFFFFF) % partitions].append((key, PLAIN(record).encode()))
    assert got == expected


async def test_records_without_a_key_go_one_partition_per_call(
    stack: Stack, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("sink", partitions=2)
    sink = await _open_sink(stack, topic)
    try:
        for call in range(4):
            await sink.process_batch([{"call": call, "i": i} for i in range(3)], _Nowhere())
        await sink.end_of_input(_Nowhere())
    finally:
        await sink.close()
    got = await _read(stack.bootstrap, topic, 2)
    calls = {p: sorted({json.loads(v)["call"] for _, v in rs}) for p, rs in got.items()}
    assert calls == {0: [0, 2], 1: [1, 3]}
    assert all(k is None for rs in got.values() for k, _ in rs)


async def test_a_checkpoint_waits_for_the_records_before_it_not_for_the_ones_after(
    stack: Stack, new_topic: Callable[..., Awaitable[str]]
) -> None:
    """At-least-once: the snapshot sends the open batches and returns without waiting;
    ``snapshot_durable`` returns once Kafka acknowledged everything sent before the
    snapshot, while records written after it may still be out; the barrier's records
    are then all in the topic."""
    topic = await new_topic("sink", partitions=2)
    sink = await _open_sink(stack, topic, key_field="key")
    try:
        before = [{"key": i % 5, "n": i} for i in range(500)]
        await sink.process_batch(before, _Nowhere())
        await sink.snapshot_state_at(7)
        marked = sink._marks[7]
        assert marked, "the open batches left with the snapshot"
        after = [{"key": i % 5, "n": 1000 + i} for i in range(500)]
        await sink.process_batch(after, _Nowhere())
        await sink.snapshot_durable(7)
        assert all(f.done() and f.exception() is None for f in marked)
        assert 7 not in sink._marks
        got = await _read(stack.bootstrap, topic, 2)
        written = {json.loads(v)["n"] for rs in got.values() for _, v in rs}
        assert {r["n"] for r in before} <= written
        await sink.end_of_input(_Nowhere())
    finally:
        await sink.close()
    got = await _read(stack.bootstrap, topic, 2)
    assert sum(len(rs) for rs in got.values()) == 1000
