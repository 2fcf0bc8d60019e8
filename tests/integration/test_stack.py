"""The stack end to end: transactions on the real broker, a lease in the real Redis."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import fastavro
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.exceptions import LockNotOwnedError

from tests.conftest import Stack, TopicFactory

pytestmark = pytest.mark.integration

PROBE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Probe",
        "namespace": "io.kafkajobmanager.test",
        "fields": [
            {"name": "seq", "type": "long"},
            {"name": "label", "type": "string"},
        ],
    }
)


def encode(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PROBE, record)
    return out.getvalue()


def decode(value: bytes) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(value), PROBE, None)
    assert isinstance(record, dict)
    return record


async def read_all(
    stack: Stack, topic: str, isolation: str, expected_at_least: int = 0
) -> list[dict[str, Any]]:
    """Everything readable on partition 0 at `isolation`, up to the end offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        seen: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            seen.extend(decode(msg.value) for msg in batch.get(tp, []) if msg.value is not None)
        assert len(seen) >= expected_at_least
        return seen
    finally:
        await consumer.stop()


async def test_read_committed_sees_committed_not_aborted(
    stack: Stack, new_topic: TopicFactory
) -> None:
    topic = await new_topic("txn")
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap,
        transactional_id=f"probe-{uuid.uuid4().hex}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            for seq in range(3):
                await producer.send(topic, encode({"seq": seq, "label": "committed"}), partition=0)
        await producer.begin_transaction()
        for seq in range(3, 5):
            await producer.send(topic, encode({"seq": seq, "label": "aborted"}), partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, encode({"seq": 5, "label": "committed"}), partition=0)
    finally:
        await producer.stop()

    committed = await read_all(stack, topic, "read_committed")
    assert [r["seq"] for r in committed] == [0, 1, 2, 5]
    assert {r["label"] for r in committed} == {"committed"}
    # The aborted records really reached the log: an uncommitted reader sees them.
    everything = await read_all(stack, topic, "read_uncommitted")
    assert [r["seq"] for r in everything] == [0, 1, 2, 3, 4, 5]


async def test_redis_lock_acquire_renew_expire_takeover(stack: Stack) -> None:
    client = aioredis.Redis.from_url(stack.redis_url)
    key = f"probe-lease-{uuid.uuid4().hex}"
    try:
        # One lock object per holder, always with a ttl (redis-py's default never expires).
        first = client.lock(key, timeout=0.6, blocking=False)
        second = client.lock(key, timeout=5, blocking=False)
        assert await first.acquire()
        assert not await second.acquire()

        # Renewal keeps the lease past its original ttl.
        for _ in range(3):
            await asyncio.sleep(0.3)
            assert await first.reacquire()
        assert await client.pttl(key) > 0
        assert not await second.acquire()

        # Stop renewing: the lease expires on its own and the second holder takes it.
        await asyncio.sleep(0.8)
        assert await client.exists(key) == 0
        assert await second.acquire()
        assert await client.get(key) == second.local.token
        # The old holder can no longer renew or release what it lost.
        with pytest.raises(LockNotOwnedError):
            await first.reacquire()
        await second.release()
    finally:
        await client.delete(key)
        await client.aclose()
