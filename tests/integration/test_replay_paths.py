"""The full replay's batch path folds the journal exactly as the general path does,
foreign records included, with and without signatures to check (issue 18, item 1)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Final

import pytest
from aiokafka import TopicPartition

from coordinator.runtime import machine
from coordinator.runtime.journal import JournalFollower, StopAt
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.signing import KeyRing
from tests.bench.workload import JournalGenerator
from tests.conftest import Stack, run_keys

pytestmark = pytest.mark.integration

#: A stop no record reaches: the general, record by record path (``_fold_records``).
GENERAL: Final = StopAt(until_ms=2**62)


async def _follow(
    stack: Stack, catalog: Catalog, stop: StopAt | None, keys: KeyRing | None = None
) -> JournalFollower:
    follower = JournalFollower(stack.bootstrap, catalog, keys=keys)
    await follower.start()
    try:
        await follower.catch_up(stop)
    finally:
        await follower.stop()
    return follower


async def _fold(stack: Stack, catalog: Catalog, stop: StopAt | None) -> tuple[str, int, int, int]:
    follower = await _follow(stack, catalog, stop)
    return machine.digest(follower.state), follower.applied, follower.foreign_count, \
        follower.last_offset  # fmt: skip


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
    assert await _fold(stack, catalog, GENERAL) == batch
    assert await _fold(stack, catalog, StopAt(offset=len(written))) == batch
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

    whole, plain = await _read(stack, tp, True), await _read(stack, tp, False)
    assert [r[:3] for r in whole] == [r[:3] for r in plain]
    assert all(r[3] == () for r in whole)  # headers only when asked for
    assert await _read(stack, tp, True, headers=True) == plain
    assert [r[1] for r in whole] == [value for _, value, _ in records]
    assert [r[3] for r in plain] == [headers for _, _, headers in records]
    digest, applied, foreign_count, _ = await _fold(stack, catalog, None)
    assert (digest, applied, foreign_count) == (gen.digest(), len(records), 0)


async def _read(
    stack: Stack, tp: TopicPartition, batches: bool, headers: bool = False
) -> list[kafkaio.LightRecord]:
    """Every committed record of `tp` as (offset, value, key, headers): by whole record
    batches (``kafkaio.read_batches``) or by aiokafka's ConsumerRecords."""
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    if batches:
        kafkaio.read_batches(consumer, headers=headers)
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    out: list[kafkaio.LightRecord] = []
    try:
        while await consumer.position(tp) < end:
            for item in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if batches:
                    assert isinstance(item, list)
                    out.extend(item)
                else:
                    out.append((item.offset, item.value, item.key, list(item.headers)))
    finally:
        await consumer.stop()
    return out


async def test_a_forged_record_inside_a_record_batch_is_skipped_and_its_neighbours_applied(
    stack: Stack, catalog: Catalog
) -> None:
    """A signature-checking follower (every replica) reads whole record batches too: a
    record in the middle of one whose signature is not the journal's (a LeaderElected
    signed with a client key) is skipped and reported with its reason and headers, the
    records before and after it in the same batch are applied, and the fold equals the
    general path's and the generator's."""
    keys = run_keys()
    topic = catalog.journal.name
    gen = JournalGenerator(catalog)
    records = [(k, v, keys.sign("journal", topic, k, v, h))
               for k, v, h in itertools.chain.from_iterable(gen.batches(400))]  # fmt: skip
    codec = default_codec()
    forged_event = ev.LeaderElected(event_id="forged", event_time=gen.now, epoch=99,
                                    replica_id="mallory", previous_offset=0)  # fmt: skip
    value, headers = codec.encode(forged_event)
    key = catalog.key_for(forged_event)
    forged = (key, value, keys.sign("submissions", topic, key, value, headers))
    # A copy of a real record without its signature (applied, it would fail as a repeat),
    # with a header that has no value.
    unsigned: tuple[bytes, bytes, list[tuple[str, bytes | None]]] = (
        *records[300][:2], [("note", None)])  # fmt: skip
    written = [*records[:200], forged, *records[200:300], unsigned, *records[300:]]
    producer = kafkaio.producer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=200,
                                max_batch_size=1024 * 1024)  # fmt: skip
    await producer.start()
    try:
        for k, v, h in written:
            sent = await producer.send(topic, v, key=k, headers=h, partition=0)
        await producer.flush()
        await sent
    finally:
        await producer.stop()

    # The forged record sits inside a record batch, between records of its own batch.
    tp = TopicPartition(topic, 0)
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    kafkaio.read_batches(consumer, headers=True)
    consumer.assign([tp])
    try:
        fetched = (await consumer.getmany(tp, timeout_ms=2_000)).get(tp, [])
    finally:
        await consumer.stop()
    holding = [[r[0] for r in b] for b in fetched if any(r[0] == 200 for r in b)]
    assert holding and holding[0][0] < 200 < holding[0][-1], holding

    batch = await _follow(stack, catalog, None, keys)
    assert batch.applied == len(records) and batch.last_offset == len(written) - 1
    assert machine.digest(batch.state) == gen.digest()
    assert machine.epoch(batch.state) < 99
    assert [f.offset for f in batch.foreign] == [200, 301] and batch.foreign_count == 2
    first, second = batch.foreign
    assert first.reason.startswith("SignatureError: bad signature: does not match journal key")
    assert first.value == value and ("jm-sig", forged[2][-1][1]) in first.headers
    assert second.reason.startswith("SignatureError: unsigned record")
    assert second.headers == (("note", None),)
    general = await _follow(stack, catalog, GENERAL, keys)
    assert machine.digest(general.state) == gen.digest()
    assert (general.applied, general.foreign, general.last_offset) == (
        batch.applied, batch.foreign, batch.last_offset)  # fmt: skip
