"""The Redis lease against the real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from coordinator.ha.lease import LeaseConfig, LeaseRenewer, Progress, RedisLease
from tests.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_client(stack: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


def lease(client: Redis, key: str, holder: str, ttl_ms: int = 600) -> RedisLease:
    return RedisLease(client, key, holder, LeaseConfig(ttl_ms=ttl_ms))


async def test_one_holder_at_a_time_renewal_and_takeover(redis_client: Redis) -> None:
    key = f"lease-{uuid.uuid4().hex}"
    a, b = lease(redis_client, key, "a"), lease(redis_client, key, "b")
    assert await a.try_acquire()
    assert a.held
    assert not await b.try_acquire()
    assert await a.current_holder() == "a"

    for _ in range(4):  # renewal keeps it past several ttls
        await asyncio.sleep(0.2)
        assert await a.renew()
    assert a.held and not await b.try_acquire()

    await asyncio.sleep(0.7)  # a stops renewing: the lease expires in Redis and locally
    assert not a.held
    assert await b.try_acquire()
    assert not await a.renew()  # compare-and-extend refuses a lease that is not ours
    assert await redis_client.pttl(key) > 0
    assert await b.current_holder() == "b"
    await redis_client.delete(key)


async def test_release_hands_over_at_once_and_only_by_the_owner(redis_client: Redis) -> None:
    key = f"lease-{uuid.uuid4().hex}"
    a, b = lease(redis_client, key, "a", 10_000), lease(redis_client, key, "b", 10_000)
    assert await a.try_acquire()
    await b.release()  # b holds nothing: releasing must not delete a's lease
    assert await redis_client.exists(key) == 1
    await a.release()
    assert not a.held
    assert await redis_client.exists(key) == 0
    assert await b.try_acquire()
    await b.release()


async def test_local_deadline_is_shorter_than_the_ttl(redis_client: Redis) -> None:
    key = f"lease-{uuid.uuid4().hex}"
    a = lease(redis_client, key, "a", ttl_ms=1_000)
    assert await a.try_acquire()
    # Trusted for at most ttl * (1 - margin) = 0.9 s after the request was sent.
    assert 0.0 < a.remaining_s() <= 0.9
    await redis_client.delete(key)


async def test_renewer_thread_keeps_the_lease_while_the_loop_makes_progress(
    redis_client: Redis, stack: Stack
) -> None:
    key = f"lease-{uuid.uuid4().hex}"
    a = lease(redis_client, key, "a", ttl_ms=600)
    assert await a.try_acquire()
    progress = Progress()
    moving = threading.Event()

    def beat() -> None:  # a loop that moves, whatever this test's event loop does
        while not moving.wait(0.1):
            progress.beat("step")

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    renewer = LeaseRenewer(a, stack.redis_url, progress)
    renewer.start()
    try:
        time.sleep(1.5)  # noqa: ASYNC251 - blocks the loop on purpose: no coroutine renews
        assert a.held
        assert renewer.renewals >= 3
        assert a.token is not None and await redis_client.get(key) == a.token.encode()
        # Someone else's lease now (ours expired or was deleted): the next renewal
        # fails and the lease is dropped locally.
        await redis_client.set(key, "b:other", px=5_000)
        time.sleep(0.5)  # noqa: ASYNC251 - the renewer thread must notice on its own
        assert not a.held
    finally:
        moving.set()
        renewer.stop()
        await redis_client.delete(key)


async def test_renewer_lets_the_lease_lapse_when_the_loop_is_stuck(
    redis_client: Redis, stack: Stack
) -> None:
    """A leader whose loop makes no progress must not keep the lease (issue 10, item 3)."""
    key = f"lease-{uuid.uuid4().hex}"
    a = RedisLease(redis_client, key, "a", LeaseConfig(ttl_ms=600, progress_timeout_ms=600))
    assert await a.try_acquire()
    renewer = LeaseRenewer(a, stack.redis_url, Progress())  # nobody beats
    renewer.start()
    try:
        time.sleep(2.0)  # noqa: ASYNC251 - a stuck loop: nothing runs here
        assert not a.held
        assert renewer.withheld >= 1
        assert await redis_client.get(key) is None  # expired: a standby can take it
        b = lease(redis_client, key, "b", ttl_ms=600)
        assert await b.try_acquire()
    finally:
        renewer.stop()
        await redis_client.delete(key)
