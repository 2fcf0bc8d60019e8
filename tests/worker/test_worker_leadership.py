"""A real worker process and leader epochs, keepalives, heartbeats and shutdown."""

from __future__ import annotations

import signal
import time

import pytest

from schemas import events as ev
from tests.worker.conftest import Cluster, StartCluster
from tests.worker.harness import ES, Not, task_ref

pytestmark = pytest.mark.integration


async def test_waits_quietly_for_a_leader_and_registers_once_per_epoch(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster(keepalive=False)
    await cluster.reports.registration()
    await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.sequence >= 3, what="heartbeats"
    )
    # Heartbeats alone; no leader means no stopping, no registering again.
    assert len(await cluster.reports.registrations()) == 1
    heartbeat = next(e for e in cluster.reports.seen if isinstance(e, ev.TaskManagerHeartbeat))
    assert heartbeat.last_seen_epoch == 0
    assert heartbeat.slots_free == 1
    # The first leader heard reads the registration made at start: no second one
    # (it would journal a second TaskManagerJoined for one incarnation).
    await cluster.leader.send(cluster.leader.keepalive())
    await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.last_seen_epoch == 1,
        what="heartbeat with epoch 1",
    )
    # A later leader is told what runs here.
    cluster.leader.epoch = 2
    await cluster.leader.send(cluster.leader.keepalive())
    await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.last_seen_epoch == 2,
        what="heartbeat with epoch 2",
    )
    registrations = await cluster.reports.registrations()
    assert len(registrations) == 2
    assert registrations[0].incarnation == registrations[1].incarnation


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


async def _running_in_slot_1(start_cluster: StartCluster) -> tuple[Cluster, ev.TaskRef]:
    """A worker with two slots running one unbounded task in slot 1."""
    cluster = await start_cluster(slots=2)
    task = task_ref()
    await cluster.leader.send(cluster.leader.deploy(task, "sequence", slot=1, rate="100"))
    await cluster.reports.state(task, ES.RUNNING)
    return cluster, task


async def test_new_epoch_makes_the_worker_register_its_running_task(
    start_cluster: StartCluster,
) -> None:
    cluster, task = await _running_in_slot_1(start_cluster)
    leader = cluster.leader
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
    first = (await cluster.reports.registrations())[-1]
    tasks = [task_ref(vertex="a"), task_ref(vertex="b")]
    await leader.send(
        leader.deploy(tasks[0], "sequence", slot=0, rate="100"),
        leader.deploy(tasks[1], "sequence", slot=1, rate="100"),
    )
    for task in tasks:
        await cluster.reports.state(task, ES.RUNNING)
    await leader.stop_keepalives()
    for task in tasks:
        # FAILED, with the reason: the coordinator asked for no cancel, so it must
        # learn the attempt is gone (RUNNING -> CANCELED is no report it can take).
        stopped = await cluster.reports.state(task, ES.FAILED, within=6)
        assert stopped.error_name == "TaskStoppedError"
        assert "no leader heard for 2 s" in (stopped.error_stack or "")
    # --heartbeat-timeout 2: not before 2 s after the last keepalive could be read (from
    # when its transaction began: the commit returns to this process after the worker
    # may already have read it; a run under load stopped 1.988 s after `last_sent`),
    # and not much after.
    assert time.monotonic() - leader.last_begun >= 2.0
    assert time.monotonic() - leader.last_sent <= 5.0
    # The leader comes back: the worker registers again, with nothing running.
    registered = len(await cluster.reports.registrations())
    await leader.send(leader.keepalive())
    again = await cluster.reports.registration(event_id=Not(first.event_id))
    assert again.incarnation == leader.incarnation and again.running_tasks == ()
    assert len(await cluster.reports.registrations()) == registered + 1
    # The leader declared that incarnation lost and says so: the worker comes back as
    # a new one.
    await leader.send(leader.disconnect("heartbeat timeout (6000 ms)"))
    back = await cluster.reports.registration(incarnation=Not(leader.incarnation))
    assert back.running_tasks == ()
    for task in tasks:  # the stopped tasks were reported by the old incarnation
        failed = await cluster.reports.state(task, ES.FAILED)
        assert failed.incarnation == leader.incarnation
    # Commands for the lost incarnation are ignored; the new one works.
    ignored, works = task_ref(vertex="ignored"), task_ref(vertex="works")
    await leader.send(leader.deploy(ignored, "sequence", count="1"))
    leader.incarnation = back.incarnation
    await leader.send(leader.deploy(works, "sequence", count="1"))
    finished = await cluster.reports.state(works, ES.FINISHED)
    assert finished.incarnation == back.incarnation
    assert cluster.reports.states(ignored) == []


async def test_declared_lost_while_it_hears_the_leader_stops_and_comes_back_new(
    start_cluster: StartCluster,
) -> None:
    cluster, task = await _running_in_slot_1(start_cluster)
    leader = cluster.leader
    # Keepalives keep flowing: only the DisconnectTaskManager tells the worker.
    await leader.send(leader.disconnect("heartbeat timeout (6000 ms)"))
    stopped = await cluster.reports.state(task, ES.FAILED)
    assert "declared lost by the leader: heartbeat timeout" in (stopped.error_stack or "")
    back = await cluster.reports.registration(incarnation=Not(leader.incarnation))
    assert back.running_tasks == ()
    await cluster.worker.close()
    assert "the leader declared incarnation" in cluster.worker.log()


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
    # Both tasks ended (the hung one killed) before the worker said goodbye, FAILED
    # with the reason: nobody asked to cancel them.
    order = [e for e in cluster.reports.seen if not isinstance(e, ev.TaskManagerHeartbeat)]
    ends = [e for e in order if isinstance(e, ev.TaskStateChanged) and e.state.is_terminal]
    assert len(ends) == 2
    assert {(e.task, e.state) for e in ends} == {(polite, ES.FAILED), (hung, ES.FAILED)}
    assert all("TaskManager shutting down" in (e.error_stack or "") for e in ends)
    assert max(order.index(e) for e in ends) < order.index(gone)
