"""The journal as the benchmarks watch it: every record from offset 0, in the
batches the consumer returns, each stamped with the monotonic time it arrived."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas import kafkaio
from schemas.catalog import Catalog


async def arrivals(
    bootstrap: str, catalog: Catalog
) -> AsyncIterator[tuple[float, list[ConsumerRecord[bytes, bytes]]]]:
    """(perf_counter at arrival, records) per fetch, until the caller stops (or is
    cancelled while it waits here: the consumer stops either way)."""
    consumer = kafkaio.consumer(bootstrap, fetch_max_wait_ms=5)
    tp = TopicPartition(catalog.journal.name, 0)
    await consumer.start()
    consumer.assign([tp])
    consumer.seek(tp, 0)
    try:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=100)
            yield time.perf_counter(), batch.get(tp, [])
    finally:
        await consumer.stop()


async def end_offset(bootstrap: str, catalog: Catalog) -> int:
    """The journal's end offset (the next offset to be written)."""
    consumer = kafkaio.consumer(bootstrap)
    tp = TopicPartition(catalog.journal.name, 0)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def writer(bootstrap: str, catalog: Catalog) -> AIOKafkaProducer:
    """The transactional producer the benchmarks write generated journals with (not
    started)."""
    return kafkaio.producer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{catalog.cluster_id}.bench-writer",
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=1024 * 1024,
    )
