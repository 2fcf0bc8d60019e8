"""A real worker process and leader epochs, keepalives, heartbeats and shutdown."""

from __future__ import annotations

import signal
import time

import pytest

from schemas import events as ev
from tests.worker.conftest import StartCluster
from tests.worker.harness import ES, Not, task_ref

pytestmark = pytest.mark.integration


async def test_waits_quietly_for_a_leader_then_registers_again(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster(keepalive=False)
    first = await cluster.reports.registration()
    await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.sequence >= 3, what="heartbeats"
    )
    # Heartbeats alone; no leader means no stopping, no registering again.
    assert len(await cluster.reports.registrations()) == 1
    heartbeat = next(e for e in cluster.reports.seen if isinstance(e, ev.TaskManagerHeartbeat))
    assert heartbeat.last_seen_epoch == 0
    assert heartbeat.slots_free == 1
    await cluster.leader.send(cluster.leader.keepalive())
    again = await cluster.reports.registration(event_id=Not(first.event_id))
    assert again.incarnation == first.incarnation
    await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.last_seen_epoch == 1,
        what="heartbeat with epoch 1",
    )


async def test_commands_of_an_older_epoch_are_dropped(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(epoch=5)
    leader = cluster.leader
    stale, current = task_ref(vertex="stale"), task_ref(vertex="current")
    await leader.send(leader.deploy(stale, "sequence", count="1", epoch=4))
    await leader.send(leader.deploy(current, "sequence", count="1", slot=0))
    await cluster.reports.state(current, ES.FINISHED)
    # The partition is ordered: the stale deploy was read (and dropped) first.
    assert cluster.reports.states(stale) == []
    await cluster.worker.close()
    assert "dropped DeployTask of epoch 4 (highest seen 5)" in cluster.worker.log()


async def test_new_epoch_makes_the_worker_register_its_running_task(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster(slots=2)
    leader = cluster.leader
    task = task_ref()
    await leader.send(leader.deploy(task, "sequence", slot=1, rate="100"))
    await cluster.reports.state(task, ES.RUNNING)
    leader.epoch = 2  # a takeover: the new leader's first transaction
    await leader.send(leader.keepalive())
    expected = (ev.RunningTask(task=task, slot_index=1, state=ES.RUNNING),)
    registered = await cluster.reports.registration(running_tasks=expected)
    assert registered.incarnation == leader.incarnation
    # The task was not disturbed and obeys the new leader.
    await leader.send(leader.cancel(task))
    await cluster.reports.state(task, ES.CANCELED)


async def test_silent_leader_stops_every_task(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(slots=2)
    leader = cluster.leader
    tasks = [task_ref(vertex="a"), task_ref(vertex="b")]
    await leader.send(
        leader.deploy(tasks[0], "sequence", slot=0, rate="100"),
        leader.deploy(tasks[1], "sequence", slot=1, rate="100"),
    )
    for task in tasks:
        await cluster.reports.state(task, ES.RUNNING)
    await leader.stop_keepalives()
    for task in tasks:
        await cluster.reports.state(task, ES.CANCELED, within=6)
    # --heartbeat-timeout 2: not before (the worker heard the last keepalive
    # after it was committed), and not much after.
    assert 2.0 <= time.monotonic() - leader.last_sent <= 5.0
    # The leader comes back. It has declared the worker's incarnation lost and
    # refuses it for good, so the worker registers as a new incarnation.
    await leader.send(leader.keepalive())
    back = await cluster.reports.registration(incarnation=Not(leader.incarnation))
    assert back.running_tasks == ()
    for task in tasks:  # the stopped tasks were reported by the old incarnation
        canceled = await cluster.reports.state(task, ES.CANCELED)
        assert canceled.incarnation == leader.incarnation
    # Commands for the lost incarnation are ignored; the new one works.
    ignored, works = task_ref(vertex="ignored"), task_ref(vertex="works")
    await leader.send(leader.deploy(ignored, "sequence", count="1"))
    leader.incarnation = back.incarnation
    await leader.send(leader.deploy(works, "sequence", count="1"))
    finished = await cluster.reports.state(works, ES.FINISHED)
    assert finished.incarnation == back.incarnation
    assert cluster.reports.states(ignored) == []


async def test_sigterm_stops_tasks_and_deregisters(start_cluster: StartCluster) -> None:
    cluster = await start_cluster(slots=2)
    leader = cluster.leader
    polite, hung = task_ref(vertex="polite"), task_ref(vertex="hung")
    await leader.send(
        leader.deploy(polite, "sequence", slot=0, rate="100"),
        leader.deploy(hung, "fault", slot=1, hang="true"),
    )
    await cluster.reports.state(polite, ES.RUNNING)
    await cluster.reports.state(hung, ES.RUNNING)
    cluster.worker.signal(signal.SIGTERM)
    assert await cluster.worker.wait(within=10) == 0
    gone = await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerDeregistered), what="deregistration"
    )
    assert gone.incarnation == leader.incarnation
    # Both tasks ended (the hung one killed) before the worker said goodbye.
    order = [e for e in cluster.reports.seen if not isinstance(e, ev.TaskManagerHeartbeat)]
    ends = [
        order.index(e)
        for e in order
        if isinstance(e, ev.TaskStateChanged) and e.state is ES.CANCELED
    ]
    assert len(ends) == 2
    assert max(ends) < order.index(gone)
