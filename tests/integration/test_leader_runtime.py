"""The real leader loop in-process, with what a process cannot be given from outside:
a decision that fails (issue 10, item 1), an injected clock (item 2), a journal
written by leaders whose clocks disagree (item 12), the digest a replica publishes
mid-decision (item 12)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from coordinator.ha.lease import LeaseConfig
from coordinator.runtime import machine
from coordinator.runtime.holder import StateHolder
from coordinator.runtime.journal import JournalFollower, StopAt
from coordinator.runtime.replica import CommittedDigest, Replica, ReplicaConfig
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.settings import ClusterSettings
from tests.conftest import Stack, run_keys
from tests.integration.harness import (
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    joined,
    status_of,
)

pytestmark = pytest.mark.integration


class SteppedClock:
    """The host's clocks, with a wall clock a test can step forward or back."""

    def __init__(self) -> None:
        self.step_ms = 0

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.step_ms

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@contextlib.asynccontextmanager
async def leader(stack: Stack, catalog: Catalog, clock: SteppedClock) -> AsyncIterator[Replica]:
    settings = ClusterSettings(
        bootstrap_servers=stack.bootstrap, redis_url=stack.redis_url, cluster_id=catalog.cluster_id
    )
    config = ReplicaConfig(
        lease=LeaseConfig(ttl_ms=1_500), domain=machine.Config(heartbeat_timeout_ms=2_000)
    )
    replica = Replica(settings, "r1", config, clock=clock)
    task = asyncio.create_task(replica.run())
    try:
        deadline = time.monotonic() + 30
        while replica.leader is None or not replica.leader.elected.is_set():
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "no leader"
            await asyncio.sleep(0.05)
        yield replica
    finally:
        replica.stop()
        await asyncio.wait_for(task, 30)


async def test_wall_clock_steps_neither_lose_workers_nor_stop_keepalives(
    stack: Stack, catalog: Catalog
) -> None:
    clock = SteppedClock()
    async with (
        leader(stack, catalog, clock) as replica,
        ProtocolWorker(stack, catalog, "tm-1", slots=1) as worker,
        Journal(stack, catalog) as journal,
    ):
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        assert replica.leader is not None
        # Forward past the heartbeat timeout: on the wall clock every worker looks silent.
        clock.step_ms = 60_000
        await asyncio.sleep(3.0)
        # Back by more than a minute: on the wall clock no keepalive would be due.
        clock.step_ms = -60_000
        before = worker.keepalives
        await asyncio.sleep(3.0)
        assert worker.keepalives - before >= 2, "keepalives stopped after a backward step"
        events = await journal.wait_until(lambda es: True)
        lost = [e for _, e in events if isinstance(e, ev.TaskManagerLost)]
        assert lost == [], lost
        assert sum(isinstance(e, ev.LeaderElected) for _, e in events) == 1
        # Event times are stamped from the term's clock: they never went back.
        times = [e.event_time for _, e in events]
        assert times == sorted(times)


async def write_journal(stack: Stack, catalog: Catalog, events: list[ev.Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:  # as a leader writes them: signed with the journal key
            value, headers = default_codec().encode(event)
            topic = catalog.journal.name
            headers = run_keys().sign("journal", topic, None, value, headers)
            await producer.send_and_wait(topic, value, headers=headers, partition=0)
    finally:
        await producer.stop()


def elected(epoch: int, at: int) -> ev.LeaderElected:
    return ev.LeaderElected(
        event_id=machine.leader_elected_id(epoch, f"r{epoch}"), event_time=at, epoch=epoch,
        replica_id=f"r{epoch}", previous_offset=epoch - 2,
    )  # fmt: skip


async def test_replay_until_a_time_does_not_stop_at_a_clock_that_ran_ahead(
    stack: Stack, catalog: Catalog
) -> None:
    """Leader 2's clock ran ahead of leader 3's: `--until 17000` is the journal up to the
    last record stamped at or before 17000 (leader 3's), not up to leader 2's stamp."""
    await write_journal(
        stack, catalog,
        [elected(1, 10_000), elected(2, 20_000), elected(3, 15_000), elected(4, 30_000)],
    )  # fmt: skip
    follower = JournalFollower(stack.bootstrap, catalog)
    await follower.start()
    try:
        await follower.catch_up(StopAt(until_ms=17_000))
        assert machine.epoch(follower.state) == 3
        assert follower.position == 3  # the replay stops before leader 4's record
    finally:
        await follower.stop()


async def test_published_digest_is_of_the_committed_state_only() -> None:
    """While the leader has applied decided events that are not committed yet, the
    status repeats the last committed offset and digest (issue 10, item 12)."""
    holder = StateHolder()
    holder.apply_record(0, elected(1, 1_000))
    digests = CommittedDigest()
    committed = machine.digest(holder.state)
    assert await digests.of(holder) == (0, committed)
    holder.apply_decided(elected(2, 2_000))
    assert await digests.of(holder) == (0, committed)  # pending: not published
    holder.confirm(2)
    assert await digests.of(holder) == (2, machine.digest(holder.state))
    assert (await digests.of(holder))[1] != committed


async def test_a_digest_walk_during_which_the_state_changed_is_thrown_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The digest runs in a thread, off the event loop (a state of many waiting
    subtasks took seconds to walk and cost the leader its lease): a walk that
    overlapped a change of the state is not published; the next one is."""
    holder = StateHolder()
    holder.apply_record(0, elected(1, 1_000))
    digests = CommittedDigest()
    before = await digests.of(holder)
    walking, changed = threading.Event(), threading.Event()
    real_digest = machine.digest

    def slow_digest(state: machine.State) -> str:
        walking.set()
        assert changed.wait(10)
        return real_digest(state)

    monkeypatch.setattr(machine, "digest", slow_digest)
    holder.apply_record(1, elected(2, 2_000))
    pending = asyncio.ensure_future(digests.of(holder))
    assert await asyncio.to_thread(walking.wait, 10)
    holder.apply_record(2, elected(3, 3_000))  # the loop goes on while the thread walks
    changed.set()
    assert await pending == before  # the walk saw a state that has since changed
    assert digests.discarded == 1
    monkeypatch.setattr(machine, "digest", real_digest)
    assert await digests.of(holder) == (2, real_digest(holder.state))


async def test_a_decision_that_fails_or_does_not_fit_rejects_only_its_input(
    stack: Stack, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containment in the real loop (issue 10, item 1): whatever the decision of one
    input does (raise, or produce a record over the journal's limit), that input is
    rejected with the reason, its offset committed, and the leader goes on."""
    real_decide = machine.decide

    def decide(
        state: machine.State, view: machine.View, event: ev.Event, now: int
    ) -> machine.Decision:
        events, commands = real_decide(state, view, event, now)
        job_id = getattr(event, "job_id", None)
        if job_id == "raises":
            raise RuntimeError("a bug in one decision")
        if job_id == "too-big" and events:
            note = ev.InputRejected(
                event_id=f"{event.event_id}:99", event_time=now, epoch=view.epoch,
                input_event_id=event.event_id, input_event_type="JobSubmitted",
                reason="x" * 2_000_000,
            )  # fmt: skip
            return [*events, note], commands
        return events, commands

    monkeypatch.setattr(machine, "decide", decide)
    async with (
        leader(stack, catalog, SteppedClock()) as replica,
        ProtocolWorker(stack, catalog, "tm-1", slots=2),
        Producer(stack, catalog) as client,
        Journal(stack, catalog) as journal,
    ):
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        for job_id in ("raises", "too-big", "fine"):
            await client.send(job_submitted(job_id, parallelism=1))
        events = await journal.wait_until(lambda es: status_of(es, "fine") == ev.JobStatus.RUNNING)
        rejected = {e.job_id: e.reason for _, e in events if isinstance(e, ev.JobRejected)}
        assert "RuntimeError: a bug in one decision" in rejected["raises"]
        assert "exceeds the journal topic's limit" in rejected["too-big"]
        assert status_of(events, "too-big") is None  # nothing of its decision was journaled
        assert [e.epoch for _, e in events if isinstance(e, ev.LeaderElected)] == [1]
        assert replica.leader is not None and replica.leader.counters.refused_inputs == 2
