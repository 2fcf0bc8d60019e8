"""The full replay's batch path folds the journal exactly as the general path does,
foreign records included (issue 18, item 1)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from aiokafka import TopicPartition

from coordinator.runtime import machine
from coordinator.runtime.journal import JournalFollower, StopAt
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.bench.workload import JournalGenerator
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def _fold(stack: Stack, catalog: Catalog, stop: StopAt | None) -> tuple[str, int, int, int]:
    follower = JournalFollower(stack.bootstrap, catalog)  # no keys: the batch path
    await follower.start()
    try:
        applied = await follower.catch_up(stop)
    finally:
        await follower.stop()
    return machine.digest(follower.state), applied, follower.foreign_count, follower.last_offset


async def test_batch_path_equals_general_path_with_foreign_records(
    stack: Stack, catalog: Catalog
) -> None:
    gen = JournalGenerator(catalog)
    records = list(itertools.chain.from_iterable(gen.batches(400)))
    codec = default_codec()
    middle = codec.decode(records[200][1])
    assert isinstance(middle, ev.JournalEvent)
    # Foreign: bytes that are not an event, and an epoch no leader held.
    ahead = dataclasses.replace(middle, epoch=middle.epoch + 5, event_id="ahead")
    foreign: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = [
        (b"x", b"not avro", []),
        (b"x", codec.encode(ahead)[0], []),
    ]
    written = records[:150] + foreign + records[150:]
    producer = kafkaio.producer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in written:
            await producer.send(catalog.journal.name, value, key=key, headers=headers, partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    batch = await _fold(stack, catalog, None)
    general = await _fold(stack, catalog, StopAt(offset=len(written)))
    assert batch == general
    digest, applied, foreign_count, last = batch
    assert foreign_count == 2 and applied == len(records) and last == len(written) - 1
    assert digest == gen.digest()


async def test_batch_reading_keeps_committed_records_only(stack: Stack, catalog: Catalog) -> None:
    """``kafkaio.read_batches``: whole record batches of (offset, value, key), the same
    records a plain read_committed consumer returns (an aborted transaction and the
    commit markers left out), and the keyless follower's fold of them."""
    gen = JournalGenerator(catalog)
    records = list(itertools.chain.from_iterable(gen.batches(300)))
    producer = kafkaio.producer(
        bootstrap_servers=stack.bootstrap, transactional_id=f"{catalog.cluster_id}.t"
    )
    await producer.start()
    try:
        for part, commit in ((records[:120], True), (records[:50], False), (records[120:], True)):
            await producer.begin_transaction()
            for key, value, headers in part:
                await producer.send(
                    catalog.journal.name, value, key=key, headers=headers, partition=0
                )
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()

    tp = TopicPartition(catalog.journal.name, 0)

    async def read(batches: bool) -> list[tuple[int, bytes | None, bytes | None]]:
        consumer = kafkaio.consumer(stack.bootstrap)
        await consumer.start()
        if batches:
            kafkaio.read_batches(consumer)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[tuple[int, bytes | None, bytes | None]] = []
        try:
            while await consumer.position(tp) < end:
                for item in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if batches:
                        assert isinstance(item, list)
                        out.extend(item)
                    else:
                        out.append((item.offset, item.value, item.key))
        finally:
            await consumer.stop()
        return out

    whole, plain = await read(True), await read(False)
    assert whole == plain
    assert [value for _, value, _ in whole] == [value for _, value, _ in records]
    digest, applied, foreign_count, _ = await _fold(stack, catalog, None)
    assert (digest, applied, foreign_count) == (gen.digest(), len(records), 0)
