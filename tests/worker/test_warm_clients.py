"""worker.edges.WarmEdgeClients against the real broker: what a slot process keeps
started while it waits for a task, handed over connected, replaced when taken."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.errors import KafkaConnectionError

from schemas import kafkaio
from tests.conftest import Stack
from worker.edges import WarmEdgeClients


def _connections(client: object) -> int:
    network = getattr(client, "client", None) or client._client  # type: ignore[attr-defined]
    return sum(1 for conn in network._conns.values() if conn.connected())


async def test_prepared_clients_are_handed_over_started_and_connected(stack: Stack) -> None:
    warm = WarmEdgeClients(stack.bootstrap)
    warm.prepare()
    producer, consumer, admin = await asyncio.gather(warm.producer(), warm.consumer(),
                                                     warm.admin())  # fmt: skip
    try:
        # Connected to the broker already: the first request opens nothing.
        assert min(_connections(c) for c in (producer, consumer, admin)) >= 1
        topic = f"warm-{uuid.uuid4().hex[:8]}"
        assert await kafkaio.ensure_topics(admin, {topic: 1}, 1, {}) == [topic]
        assert (await (await producer.send(topic, b"x", partition=0))).offset == 0
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()
    # Taken clients are gone from the pool: the next take makes a fresh one (started).
    again = await warm.producer()
    assert again is not producer
    await again.stop()
    warm.prepare()
    await warm.close()


async def test_a_warm_client_that_could_not_start_is_made_again_on_take(stack: Stack) -> None:
    warm = WarmEdgeClients("127.0.0.1:1")  # nobody listens: the warm start fails
    warm.prepare()
    await asyncio.sleep(0.5)
    warm.bootstrap = stack.bootstrap  # the broker is back
    admin = await warm.admin()
    try:
        assert await admin.list_topics() is not None
    finally:
        await admin.close()
    await warm.close()


async def test_taking_from_an_unreachable_broker_raises(stack: Stack) -> None:
    warm = WarmEdgeClients("127.0.0.1:1")
    with pytest.raises(KafkaConnectionError):
        await warm.admin()
    await warm.close()
