"""Kafka clients through a broker outage. How much a killed broker makes the coordinator
and the worker log is checked by the broker-kill drill (coordinator/drill.py, run by
tests/integration/test_drill.py): one line when Kafka stops answering, at most 20 of
aiokafka's, on brokers of the drill's own, so no broker is started here."""

from __future__ import annotations

import asyncio

import pytest

from schemas import kafkaio
from tests.conftest import Stack, TopicFactory

pytestmark = [pytest.mark.integration]


async def test_a_consumer_stops_without_leaking_the_cancel_of_a_fetch_in_its_retry_backoff(
    new_topic: TopicFactory, stack: Stack
) -> None:
    """aiokafka 0.14 closes its fetcher by cancelling and awaiting the pending fetches; one
    that failed because a broker went away sleeps in its retry backoff outside its cancel
    handler, so the cancel came out of stop() (broker-kill: a leader stepping down then
    ended its replica). Such a fetch is put in the fetcher's pending set here, as the
    fetcher does: stop() returns, the fetch is done, the caller is not cancelled."""
    from aiokafka import TopicPartition

    topic = await new_topic("stop")
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.getmany(timeout_ms=100)

    async def failed_fetch_backing_off() -> None:
        await asyncio.sleep(30)  # fetcher.py: `await asyncio.sleep(self._retry_backoff)`

    fetch = asyncio.create_task(failed_fetch_backing_off())
    consumer._fetcher._pending_tasks.add(fetch)
    await asyncio.sleep(0)
    await consumer.stop()
    current = asyncio.current_task()
    assert current is not None and not current.cancelling()
    assert fetch.cancelled()
