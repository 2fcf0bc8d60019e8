"""Bad input on the input topics goes to the dead-letter topic with its reason; reading goes on."""

from __future__ import annotations

import struct
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import Codec, default_codec
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def cancel(job: str) -> ev.JobCancelRequested:
    return ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=1, job_id=job)


def report() -> ev.TaskStateChanged:
    task = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=0, attempt=0)
    return ev.TaskStateChanged(
        event_id="r1", event_time=1, tm_id="tm", incarnation="i", task=task,
        state=ev.ExecutionState.RUNNING,
    )  # fmt: skip


async def test_each_kind_of_bad_record_is_dead_lettered(stack: Stack, catalog: Catalog) -> None:
    codec = Codec(max_record_bytes=2_000)
    good, _ = codec.encode(cancel("job-ok"))
    wrong_topic, _ = codec.encode(report())
    unknown_fp = b"\xc3\x01" + struct.pack("<q", 12345) + good[10:]
    bad_inputs = {
        "BadMagicError": b"hello, not avro",
        "UnknownFingerprintError": unknown_fp,
        "CorruptRecordError": good[:-3],  # truncated body
        "WrongTopicError": wrong_topic,  # a worker report on the submissions topic
        "OversizedRecordError": good[:10] + b"\x00" * 3_000,
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        for kind, value in bad_inputs.items():
            await producer.send_and_wait(catalog.submissions.name, value, key=kind.encode(),
                                         partition=0, headers=[("probe", b"1")])  # fmt: skip
        await producer.send_and_wait(catalog.submissions.name, good, key=b"job-ok", partition=0)

        consumer = kafkaio.consumer(stack.bootstrap)
        await consumer.start()
        tp = TopicPartition(catalog.submissions.name, 0)
        consumer.assign([tp])
        decoder = kafkaio.InputDecoder(catalog, codec)
        events: list[ev.Event] = []
        dead: list[ev.DeadLetter] = []
        try:
            while len(events) + len(dead) < 6:
                batch = await kafkaio.poll_inputs(consumer, decoder, 1_000, 100)
                events.extend(e for _, e in batch.events)
                dead.extend(batch.dead_letters)
        finally:
            await consumer.stop()
        # Reading went on past every bad record to the good one.
        assert [type(e) for e in events] == [ev.JobCancelRequested]
        assert decoder.dead_letters == 5
        await kafkaio.send_dead_letters(producer, catalog, dead)
        await producer.flush()
    finally:
        await producer.stop()

    stored = await read_dead_letters(stack, catalog, 5)
    assert {d.error_kind for d in stored} == set(bad_inputs)
    for d in stored:
        assert d.original_value == bad_inputs[d.error_kind]
        assert d.original_key == d.error_kind.encode()
        assert d.source_topic == catalog.submissions.name and d.partition == 0
        assert d.reason
        assert ev.KafkaHeader(key="probe", value=b"1") in d.original_headers
    assert sorted(d.offset for d in stored) == [0, 1, 2, 3, 4]


async def read_dead_letters(stack: Stack, catalog: Catalog, n: int) -> list[ev.DeadLetter]:
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    tp = TopicPartition(catalog.deadletter.name, 0)
    consumer.assign([tp])
    out: list[ev.DeadLetter] = []
    try:
        while len(out) < n:
            for record in (await consumer.getmany(tp, timeout_ms=1_000)).get(tp, []):
                assert record.value is not None
                event = default_codec().decode(record.value, catalog.deadletter.allowed)
                assert isinstance(event, ev.DeadLetter)
                headers = dict(record.headers)
                assert headers["event-type"] == b"DeadLetter"
                assert headers["error-kind"] == event.error_kind.encode()
                out.append(event)
    finally:
        await consumer.stop()
    return out
