"""The Redis lease against the real Redis."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from coordinator.ha.lease import LeaseConfig, LeaseRenewer, Progress, RedisLease
from tests.conftest import Stack
from tests.own_redis import own_redis

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


async def test_a_renewal_redis_does_not_answer_keeps_the_lease_until_its_deadline() -> None:
    """A slow Redis reply on a loaded host (the renewal times out) is not a refusal: the
    lease is kept while the last answered renewal still covers it, and renewed again
    once Redis answers; Redis silent past the deadline drops it. The Redis of this test
    is its own, stopped with SIGSTOP, so no other test's lease is touched."""
    with own_redis() as (server, port):
        url = f"redis://127.0.0.1:{port}/0"
        client = Redis.from_url(url)
        a = lease(client, f"lease-{uuid.uuid4().hex}", "a", ttl_ms=3_000)  # renews every 1 s
        assert await a.try_acquire()
        progress = Progress()
        moving = threading.Event()

        def beat() -> None:
            while not moving.wait(0.1):
                progress.beat("step")

        threading.Thread(target=beat, daemon=True).start()
        renewer = LeaseRenewer(a, url, progress)
        renewer.start()
        try:
            for _ in range(3):  # Redis silent for 1.5 s at a time: longer than a reply may take
                server.send_signal(signal.SIGSTOP)
                time.sleep(1.5)  # noqa: ASYNC251 - the renewer is a thread of its own
                server.send_signal(signal.SIGCONT)
                time.sleep(0.6)  # noqa: ASYNC251
                assert a.held, "one unanswered renewal cost the lease"
            assert renewer.unanswered >= 1, "no renewal went unanswered: the fault missed"
            renewals = renewer.renewals
            time.sleep(1.5)  # noqa: ASYNC251
            assert renewer.renewals > renewals  # renewed again once Redis answers

            server.send_signal(signal.SIGSTOP)  # silent past the deadline (ttl * 0.9)
            time.sleep(3.5)  # noqa: ASYNC251
            assert not a.held
            server.send_signal(signal.SIGCONT)
            time.sleep(1.5)  # noqa: ASYNC251
            assert a.token is None  # dropped, not resumed: a standby may lead by now
        finally:
            server.send_signal(signal.SIGCONT)
            moving.set()
            renewer.stop()
            await client.aclose()


async def test_a_loop_that_runs_keeps_the_lease_until_a_step_outlasts_the_step_timeout(
    redis_client: Redis, stack: Stack
) -> None:
    """A step waiting on a slow broker is not a blocked loop: the loop's ticks keep the
    lease past the progress timeout; a step that does not end within the step timeout
    lets it lapse all the same."""
    key = f"lease-{uuid.uuid4().hex}"
    config = LeaseConfig(ttl_ms=600, progress_timeout_ms=600, step_timeout_ms=2_500)
    a = RedisLease(redis_client, key, "a", config)
    assert await a.try_acquire()
    progress = Progress()
    progress.beat("step")  # the last step began now and never ends
    ticking = threading.Event()

    def tick() -> None:  # the loop runs (a task of it ticks), its step waits
        while not ticking.wait(0.1):
            progress.tick()

    threading.Thread(target=tick, daemon=True).start()
    renewer = LeaseRenewer(a, stack.redis_url, progress)
    renewer.start()
    try:
        time.sleep(1.8)  # noqa: ASYNC251 - three times the progress timeout: still ours
        assert a.held and renewer.withheld == 0
        time.sleep(2.5)  # noqa: ASYNC251 - past the step timeout: withheld, lapsed
        assert renewer.withheld >= 1
        assert not a.held
        assert "step stuck" in (renewer.stuck() or "")
    finally:
        ticking.set()
        renewer.stop()
        await redis_client.delete(key)
