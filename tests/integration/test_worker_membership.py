"""Workers joining, lost, back: a real coordinator and real workers over the real broker."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of
from tests.integration.test_jobs import all_running, job

pytestmark = pytest.mark.integration


def joins(events: list[tuple[int, ev.Event]], tm_id: str) -> list[ev.TaskManagerJoined]:
    return [e for _, e in events if isinstance(e, ev.TaskManagerJoined) and e.tm_id == tm_id]


async def test_one_worker_start_journals_one_join(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 1)
    async with Journal(cluster.stack, cluster.catalog) as journal:
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        # Keepalives come every second; the first one used to make the worker
        # register again and the leader journal a second join.
        await asyncio.sleep(3)
        events = list(journal.events) + await journal.read(500)
    assert len(joins(events, "tm-1")) == 1


async def test_a_worker_declared_lost_while_it_hears_the_leader_comes_back_new(
    cluster: Cluster,
) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 2)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        events = await journal.wait_until(lambda es: joined(es, "tm-1"))
        (first,) = joins(events, "tm-1")
        await client.send(job("orphans", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "orphans", 2, 0))
        # Another process registers under the same id (a restarted worker whose old
        # process lives on): the leader declares the running incarnation lost while
        # it still hears every keepalive.
        await client.send(ev.TaskManagerRegistered(
            event_id=uuid.uuid4().hex, event_time=now_ms(), tm_id="tm-1",
            incarnation="impostor", host="elsewhere", slots=0, operators=("sequence",),
        ))  # fmt: skip
        # Told so, the worker stops its tasks and comes back as a new incarnation,
        # and the job runs there again.
        events = await journal.wait_until(lambda es: all_running(es, "orphans", 2, 1), seconds=40)
    lost = [e for _, e in events if isinstance(e, ev.TaskManagerLost)]
    assert [(e.incarnation, e.reason) for e in lost][:1] == [
        (first.incarnation, "replaced by incarnation impostor")
    ]
    back = joins(events, "tm-1")[-1]
    assert back.incarnation not in {first.incarnation, "impostor"}
    assigned = [e for _, e in events if isinstance(e, ev.TaskAssigned) and e.task.attempt == 1]
    assert {e.incarnation for e in assigned} == {back.incarnation}
    assert status_of(events, "orphans") == ev.JobStatus.RUNNING
    assert "the leader declared incarnation" in worker.log()


async def test_a_worker_that_stops_its_tasks_on_its_own_makes_the_job_restart(
    cluster: Cluster,
) -> None:
    # A lease and a heartbeat timeout long enough that a 5 s freeze of the leader
    # costs neither its lease nor the worker: only the worker's own rule acts.
    leader = cluster.coordinator("c1", "--lease-ttl-ms", "15000", "--heartbeat-timeout-ms", "20000")
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)  # stops its tasks after 3 s without a leader
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job("alone", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "alone", 2, 0))
        leader.kill(signal.SIGSTOP)
        await asyncio.sleep(5)
        leader.kill(signal.SIGCONT)
        # The worker reported its stopped tasks FAILED (RUNNING -> CANCELED, which it
        # used to report, is no transition the leader can take): the job restarts.
        events = await journal.wait_until(lambda es: all_running(es, "alone", 2, 1), seconds=40)
    failed = [e for _, e in events if isinstance(e, ev.TaskStateRecorded)
              and e.task.attempt == 0 and e.state is ev.ExecutionState.FAILED]  # fmt: skip
    assert len(failed) == 2
    assert all(e.error_name == "TaskStoppedError" and e.input_event_id for e in failed)
    assert all("no leader heard for 3 s" in (e.error_stack or "") for e in failed)
    assert not any(isinstance(e, ev.TaskManagerLost) for _, e in events)
    assert not any(isinstance(e, ev.InputRejected) and "illegal" in e.reason for _, e in events)
    assert status_of(events, "alone") == ev.JobStatus.RUNNING
