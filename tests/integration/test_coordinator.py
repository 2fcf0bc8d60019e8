"""The coordinator as a real process against the real broker and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer

from coordinator.domain import State, evolve, state_digest
from coordinator.drill import decided
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.conftest import Stack
from tests.integration.harness import (
    CoordinatorProcess,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    joined,
    now_ms,
    status_of,
    until,
)

pytestmark = pytest.mark.integration

CoordinatorFactory = Callable[[str], CoordinatorProcess]


@pytest.fixture
async def coordinators(stack: Stack, catalog: Catalog) -> AsyncIterator[CoordinatorFactory]:
    started: list[CoordinatorProcess] = []

    def start(replica_id: str) -> CoordinatorProcess:
        proc = CoordinatorProcess(stack, catalog, replica_id)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


async def test_job_runs_to_finished_and_another_is_canceled(
    stack: Stack, catalog: Catalog, coordinators: CoordinatorFactory
) -> None:
    leader = coordinators("c1")
    await leader.wait_for_line("role LEADER")
    async with (
        ProtocolWorker(stack, catalog, "tm-1", slots=2) as tm1,
        ProtocolWorker(stack, catalog, "tm-2", slots=2) as tm2,
        Producer(stack, catalog) as client,
        Journal(stack, catalog) as journal,
    ):
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(job_submitted("job-a", parallelism=2))
        await journal.wait_until(lambda es: status_of(es, "job-a") == ev.JobStatus.RUNNING)
        # One subtask per slot, spread across the two workers.
        await until(lambda: len(tm1.deployed) + len(tm2.deployed) == 2, "both deployed")
        placed = [(d.tm_id, d.task.subtask_index) for d in tm1.deployed + tm2.deployed]
        assert sorted(t for t, _ in placed) == ["tm-1", "tm-2"]
        await journal.wait_until(
            lambda es: sum(
                1 for _, e in es
                if isinstance(e, ev.TaskStateRecorded) and e.task.job_id == "job-a"
                and e.state == ev.ExecutionState.RUNNING
            ) == 2
        )  # fmt: skip
        await tm1.finish_all()
        await tm2.finish_all()
        await journal.wait_until(lambda es: status_of(es, "job-a") == ev.JobStatus.FINISHED)

        await client.send(job_submitted("job-b", parallelism=3))
        await journal.wait_until(lambda es: status_of(es, "job-b") == ev.JobStatus.RUNNING)
        await client.send(ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=now_ms(),
                                                job_id="job-b"))  # fmt: skip
        events = await journal.wait_until(
            lambda es: status_of(es, "job-b") == ev.JobStatus.CANCELED
        )
        statuses = [e.to_status for _, e in events
                    if isinstance(e, ev.JobStatusChanged) and e.job_id == "job-b"]  # fmt: skip
        assert statuses[-2:] == [ev.JobStatus.CANCELLING, ev.JobStatus.CANCELED]
        assert not tm1.running and not tm2.running

        # An invalid job is a journaled rejection (an operator no worker offers is
        # not: that job waits for such a worker).
        await client.send(job_submitted("job-c", parallelism=0))
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.JobRejected) and e.job_id == "job-c" for _, e in es)
        )
        reason = next(e.reason for _, e in events if isinstance(e, ev.JobRejected))
        assert "parallelism" in reason


async def test_aborted_transaction_is_never_applied(
    stack: Stack, catalog: Catalog, coordinators: CoordinatorFactory, unique: Callable[[str], str]
) -> None:
    leader = coordinators("c1")
    await leader.wait_for_line("role LEADER")
    codec = default_codec()
    # A writer that is not the leader opens a transaction on the journal and aborts it.
    rogue = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, transactional_id=unique("rogue"))
    await rogue.start()
    forged = [
        ev.LeaderElected(event_id="forged-leader", event_time=now_ms(), epoch=99,
                         replica_id="rogue", previous_offset=0),
        ev.JobAccepted(event_id="forged-accept", event_time=now_ms(), epoch=99,
                       submission=job_submitted("forged")),
    ]  # fmt: skip
    try:
        await rogue.begin_transaction()
        for event in forged:
            value, headers = codec.encode(event)
            await rogue.send_and_wait(catalog.journal.name, value, headers=headers, partition=0)
        await rogue.abort_transaction()
    finally:
        await rogue.stop()

    async with Producer(stack, catalog) as client, Journal(stack, catalog) as journal:
        await client.send(job_submitted("after-abort", parallelism=0))  # invalid: rejected
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.JobRejected) for _, e in es)
        )
    ids = {e.event_id for _, e in events}
    assert not ids & {"forged-leader", "forged-accept"}
    # The records are really in the log: an uncommitted reader sees them.
    async with Journal(stack, catalog, "read_uncommitted") as dirty:
        seen = await dirty.wait_until(
            lambda es: {"forged-leader", "forged-accept"} <= {e.event_id for _, e in es}
        )
    assert len(seen) > len(events) - 1
    # The coordinator never applied them: epoch 1 still decides, and a replay agrees.
    rejected = next(e for _, e in events if isinstance(e, ev.JobRejected))
    assert rejected.epoch == 1
    state = State()
    for _, e in events:
        assert isinstance(e, ev.JournalEvent)
        evolve(state, e)
    assert state.epoch == 1 and "forged" not in state.jobs
    assert state_digest(state)


async def test_kill_9_during_submissions_journals_each_exactly_once(
    stack: Stack, catalog: Catalog, coordinators: CoordinatorFactory
) -> None:
    first = coordinators("c1")
    await first.wait_for_line("role LEADER")
    total = 120
    submissions = [job_submitted(f"job-{i:03d}", parallelism=1) for i in range(total)]
    async with (
        ProtocolWorker(stack, catalog, "tm-1", slots=4) as _worker,
        Producer(stack, catalog) as client,
        Journal(stack, catalog) as journal,
    ):

        async def stream() -> None:
            for sub in submissions:
                await client.send(sub)
                await asyncio.sleep(0.01)

        await journal.wait_until(lambda es: joined(es, "tm-1"))
        sender = asyncio.create_task(stream())
        await journal.wait_until(lambda es: len(decided(es)) >= 20)
        first.kill()  # kill -9 mid-stream, transactions may be open
        first.proc.wait()
        second = coordinators("c2")
        await second.wait_for_line("role LEADER")
        await sender
        events = await journal.wait_until(lambda es: len(decided(es)) >= total, seconds=60)
    counts = decided(events)
    assert set(counts) == {s.event_id for s in submissions}
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
    epochs = [e.epoch for _, e in events if isinstance(e, ev.LeaderElected)]
    assert epochs == [1, 2]
