"""The full replay's batch path folds the journal exactly as the general path does,
foreign records included (issue 18, item 1)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

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
