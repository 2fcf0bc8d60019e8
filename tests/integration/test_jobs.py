"""Jobs on real workers: coordinator and TaskManager processes over the real broker and Redis."""

from __future__ import annotations

import signal
import uuid

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of

pytestmark = pytest.mark.integration


def job(job_id: str, parallelism: int, config: dict[str, str], operator: str = "sequence",
        restart: ev.RestartStrategy | None = None) -> ev.JobSubmitted:  # fmt: skip
    vertex = ev.Vertex(id="src", name="Source", operator=operator, parallelism=parallelism,
                       max_parallelism=8, config=config)  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=(vertex,)),
        restart_strategy=restart or ev.RestartStrategy(
            kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=3, delay_ms=200),
    )  # fmt: skip


def cancel(job_id: str) -> ev.JobCancelRequested:
    return ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id)


def running_on(events: list[tuple[int, ev.Event]], job_id: str) -> dict[tuple[str, int], str]:
    """Subtask -> tm id of its latest assignment."""
    placed: dict[tuple[str, int], str] = {}
    for _, e in events:
        if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id:
            placed[(e.task.vertex_id, e.task.subtask_index)] = e.slot.tm_id
    return placed


def attempts(events: list[tuple[int, ev.Event]], job_id: str) -> set[int]:
    return {e.task.attempt for _, e in events
            if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id}  # fmt: skip


def all_running(events: list[tuple[int, ev.Event]], job_id: str, n: int, attempt: int) -> bool:
    live = {
        (e.task.vertex_id, e.task.subtask_index)
        for _, e in events
        if isinstance(e, ev.TaskStateRecorded) and e.task.job_id == job_id
        and e.task.attempt == attempt and e.state == ev.ExecutionState.RUNNING
    }  # fmt: skip
    return len(live) == n


async def test_happy_path_finishes_and_cancel_cancels(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    cluster.worker("tm-2", 2)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(job("bounded", 3, {"count": "200"}))
        events = await journal.wait_until(
            lambda es: status_of(es, "bounded") == ev.JobStatus.FINISHED
        )
        assert set(running_on(events, "bounded").values()) == {"tm-1", "tm-2"}  # spread
        await client.send(job("endless", 2, {"rate": "50"}))
        await journal.wait_until(lambda es: all_running(es, "endless", 2, 0))
        await client.send(cancel("endless"))
        events = await journal.wait_until(
            lambda es: status_of(es, "endless") == ev.JobStatus.CANCELED
        )
    finals = [e.state for _, e in events if isinstance(e, ev.TaskStateRecorded)
              and e.task.job_id == "endless" and e.state.is_terminal]  # fmt: skip
    assert finals == [ev.ExecutionState.CANCELED] * 2


async def test_worker_kill_9_restarts_the_job_on_another_worker(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    doomed = cluster.worker("tm-doomed", 2)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-doomed"))
        await client.send(job("moving", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "moving", 2, 0))
        cluster.worker("tm-spare", 2)
        await journal.wait_until(lambda es: joined(es, "tm-doomed", "tm-spare"))
        doomed.signal(signal.SIGKILL)
        events = await journal.wait_until(lambda es: all_running(es, "moving", 2, 1), seconds=30)
    lost = [e for _, e in events if isinstance(e, ev.TaskManagerLost)]
    assert [e.tm_id for e in lost] == ["tm-doomed"]
    assert set(running_on(events, "moving").values()) == {"tm-spare"}
    assert status_of(events, "moving") == ev.JobStatus.RUNNING


async def test_job_waits_for_slots_then_runs_when_a_worker_joins(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-small", 1)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-small"))
        await client.send(job("wide", 3, {"count": "50"}))
        await journal.wait_until(lambda es: status_of(es, "wide") == ev.JobStatus.CREATED)
        status = await _jm_status(cluster, "wide")
        assert "slot" in status.lower()  # the reason it waits is visible
        cluster.worker("tm-big", 2)
        events = await journal.wait_until(
            lambda es: status_of(es, "wide") == ev.JobStatus.FINISHED, seconds=30
        )
    assert set(running_on(events, "wide").values()) == {"tm-small", "tm-big"}


async def test_user_exception_restarts_then_fails_when_attempts_run_out(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    strategy = ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY, attempts=2,
                                  delay_ms=100)  # fmt: skip
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job("faulty", 1, {"fail_after": "5"}, operator="fault",
                              restart=strategy))  # fmt: skip
        events = await journal.wait_until(
            lambda es: status_of(es, "faulty") == ev.JobStatus.FAILED, seconds=30
        )
    restarts = [e for _, e in events if isinstance(e, ev.RestartScheduled)]
    assert [r.restart_count for r in restarts] == [1, 2]
    assert attempts(events, "faulty") == {0, 1, 2}
    failed = [e for _, e in events if isinstance(e, ev.TaskStateRecorded)
              and e.state == ev.ExecutionState.FAILED]  # fmt: skip
    assert len(failed) == 3 and all(f.error_name and f.error_stack for f in failed)
    status = await _jm_status(cluster, "faulty")
    assert "exceptions" in status and str(failed[0].error_name) in status  # exception history


async def test_leader_kill_9_keeps_tasks_running_with_the_same_attempts(
    cluster: Cluster,
) -> None:
    first = cluster.coordinator("c1")
    await first.wait_for_line("role LEADER")
    cluster.coordinator("c2")
    cluster.worker("tm-1", 2)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job("steady", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "steady", 2, 0))
        first.kill()
        first.proc.wait()
        await journal.wait_until(
            lambda es: sum(isinstance(e, ev.LeaderElected) for _, e in es) == 2
        )
        # The worker re-registers with the new epoch, listing what it runs ...
        events = await journal.wait_until(
            lambda es: sum(1 for _, e in es if isinstance(e, ev.TaskManagerJoined)
                           and e.running_tasks) >= 1, seconds=20)  # fmt: skip
        # ... and a few heartbeat timeouts later nothing has been redeployed.
        await _sleep(5)
        events = list(journal.events) + await journal.read(500)
    assert attempts(events, "steady") == {0}
    assert sum(isinstance(e, ev.ExecutionGraphCreated) for _, e in events) == 1
    assert not any(isinstance(e, ev.TaskManagerLost) for _, e in events)
    assert status_of(events, "steady") == ev.JobStatus.RUNNING


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def _jm_status(cluster: Cluster, job_id: str) -> str:
    import asyncio
    import os
    import sys

    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=cluster.stack.bootstrap,
               JM_CLUSTER_ID=cluster.catalog.cluster_id)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "status", job_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_worker_cut_off_stops_its_tasks_before_they_run_elsewhere(cluster: Cluster) -> None:
    from datetime import datetime

    from coordinator.domain import State, evolve
    from coordinator.domain.invariants import violations

    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cut = cluster.worker("tm-cut", 2, hooks={"partition_after_s": 12})
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-cut"))
        await client.send(job("cut", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "cut", 2, 0))
        assert "drill: cut off" not in cut.log(), "the job must run before the cut"
        cluster.worker("tm-other", 2)
        await journal.wait_until(lambda es: joined(es, "tm-cut", "tm-other"))
        events = await journal.wait_until(lambda es: all_running(es, "cut", 2, 1), seconds=40)
    assert "drill: cut off" in cut.log()
    lost = [e for _, e in events if isinstance(e, ev.TaskManagerLost)]
    assert [e.tm_id for e in lost] == ["tm-cut"]
    assert set(running_on(events, "cut").values()) == {"tm-other"}
    # The cut-off worker stopped its tasks (it heard no leader) before the new attempts
    # were assigned elsewhere: the two never ran at once.
    line = next(x for x in cut.log().splitlines() if "stopping every task" in x)
    stopped_ms = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
    reassigned = min(e.event_time for _, e in events
                     if isinstance(e, ev.TaskAssigned) and e.task.attempt == 1)  # fmt: skip
    assert stopped_ms < reassigned, (stopped_ms, reassigned)
    # And the journal never held two live attempts of one subtask (nor broke any other
    # invariant) after any decision. A decision's events share the id of its input.
    state = State()
    for i, (offset, e) in enumerate(events):
        assert isinstance(e, ev.JournalEvent)
        evolve(state, e)
        following = events[i + 1][1].event_id if i + 1 < len(events) else ""
        if following.rsplit(":", 1)[0] != e.event_id.rsplit(":", 1)[0]:
            assert violations(state) == [], offset
