"""Slot sharing in the pure core: a slot holds one subtask of each vertex of one job's
slot sharing group, so a job needs its highest parallelism in slots per group
(coordinator/domain/scheduler.py); restarts, worker loss and reconciliation follow."""

import dataclasses

from coordinator.domain import state_digest
from coordinator.domain.invariants import violations
from schemas.events import (
    DeployTask,
    Edge,
    ExecutionState,
    JobStatus,
    Partitioning,
    RunningTask,
    TaskAssigned,
    TaskManagerLost,
    TaskRef,
)
from schemas.limits import MAX_TASKS_PER_SLOT
from tests.domain.cluster import Cluster, replay, submission

E = ExecutionState
LINE = (("src", "map", 2), ("mid", "map", 2), ("out", "sink", 2))


def _held(c: Cluster, tm_id: str) -> list[set[str]]:
    """The vertex#subtask of every task in each slot of a worker."""
    return [{f"{t.vertex_id}#{t.subtask_index}" for t in s} for s in c.state.workers[tm_id].slots]


def _status(c: Cluster, job_id: str = "job") -> JobStatus:
    return c.state.jobs[job_id].status


def _running_line() -> Cluster:
    """LINE running on one worker with 2 slots."""
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", LINE)
    c.run_all("job")
    return c


def _check(c: Cluster) -> None:
    assert violations(c.state) == []
    assert state_digest(replay(c.journal)) == state_digest(c.state)


def test_a_job_needs_its_highest_parallelism_in_slots_not_the_sum() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1), ("mid", "map", 2), ("out", "sink", 2)))
    assert _status(c) is JobStatus.RUNNING
    assert _held(c, "tm-a") == [{"src#0", "mid#0", "out#0"}, {"mid#1", "out#1"}]
    assert c.state.workers["tm-a"].free_slots() == []
    c.run_all("job")
    _check(c)


def test_the_waiting_reason_counts_shared_slots_and_placement_spreads() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 3), ("out", "sink", 3)))
    job = c.state.jobs["job"]
    assert job.status is JobStatus.CREATED
    assert job.waiting_reason is not None and "3 slots needed, 2 free" in job.waiting_reason
    d = c.register("tm-b", slots=2)
    assert _status(c) is JobStatus.RUNNING
    slots = {(e.slot.tm_id, e.slot.slot_index) for e in d.events if isinstance(e, TaskAssigned)}
    assert slots == {("tm-a", 0), ("tm-a", 1), ("tm-b", 0)}
    assert _held(c, "tm-b") == [{"src#1", "out#1"}, set()]  # evenly spread: a, b, then a
    _check(c)


def test_vertices_of_different_groups_never_share_a_slot() -> None:
    c = Cluster()
    c.register("tm-a", slots=3)
    c.submit("job", LINE, groups={"mid": "own"})
    job = c.state.jobs["job"]
    assert job.waiting_reason is not None and "4 slots needed, 3 free" in job.waiting_reason
    c.register("tm-b", slots=1)
    assert _status(c) is JobStatus.RUNNING
    held = _held(c, "tm-a") + _held(c, "tm-b")
    assert sorted(map(sorted, held)) == [
        ["mid#0"], ["mid#1"], ["out#0", "src#0"], ["out#1", "src#1"]
    ]  # fmt: skip
    _check(c)


def test_every_vertex_in_its_own_group_turns_sharing_off() -> None:
    c = Cluster()
    c.register("tm-a", slots=6)
    c.submit("job", LINE, groups={"src": "src", "mid": "mid", "out": "out"})
    assert _status(c) is JobStatus.RUNNING
    assert all(len(s) == 1 for s in c.state.workers["tm-a"].slots)


def test_two_jobs_never_share_a_slot() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("one", (("src", "map", 1),))
    c.submit("two", (("src", "map", 1), ("out", "sink", 1)))
    c.submit("three", (("src", "map", 1),))
    assert [{t.job_id for t in s} for s in c.state.workers["tm-a"].slots] == [{"one"}, {"two"}]
    three = c.state.jobs["three"]
    assert three.status is JobStatus.CREATED
    assert three.waiting_reason is not None and "1 slots needed, 0 free" in three.waiting_reason
    c.run_all("one")
    c.run_all("one", E.FINISHED)  # its slot is free again: the next tick gives it away
    assert _status(c, "three") is JobStatus.CREATED
    c.heartbeat_all()
    c.tick(100)
    assert _status(c, "three") is JobStatus.RUNNING
    _check(c)


def test_a_restart_redeploys_into_shared_slots_once_every_old_task_is_gone() -> None:
    c = _running_line()
    mid0 = next(t for t in c.tasks("job") if (t.vertex_id, t.subtask_index) == ("mid", 0))
    c.report(mid0, E.FAILED, error="Boom")
    assert _status(c) is JobStatus.RESTARTING
    # The failed task left slot 0; its sharers (being canceled) still hold it.
    assert _held(c, "tm-a") == [{"src#0", "out#0"}, {"src#1", "mid#1", "out#1"}]
    live = [t for t in c.tasks("job") if t != mid0]
    for task in live[:-1]:
        c.report(task, E.CANCELED)
    assert c.state.workers["tm-a"].free_slots() == [0]  # slot 1 still holds out#1
    c.report(live[-1], E.CANCELED)
    assert c.state.workers["tm-a"].free_slots() == [0, 1]
    d = c.tick(1_000)
    assert _status(c) is JobStatus.RUNNING
    assert {x.attempt for x in c.state.jobs["job"].executions.values()} == {1}
    assert _held(c, "tm-a") == [{"src#0", "mid#0", "out#0"}, {"src#1", "mid#1", "out#1"}]
    assert len([x for x in d.commands if isinstance(x, DeployTask)]) == 6
    _check(c)


def test_worker_loss_ends_its_slots_tasks_and_a_shared_slot_frees_with_its_last() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.register("tm-b", slots=1)
    c.submit("job", LINE)
    c.run_all("job")
    assert _held(c, "tm-a") == [{"src#0", "mid#0", "out#0"}]
    c.now += 4_000
    c.view.last_heartbeat[("tm-b", "inc-1")] = c.now
    d = c.tick(2_000)  # tm-a silent for 6 s
    assert any(isinstance(e, TaskManagerLost) and e.tm_id == "tm-a" for e in d.events)
    job = c.state.jobs["job"]
    assert {k for k, x in job.executions.items() if x.state is E.FAILED} == {
        ("src", 0), ("mid", 0), ("out", 0)
    }  # fmt: skip
    assert _status(c) is JobStatus.RESTARTING
    on_b = [t for t in c.tasks("job") if t.subtask_index == 1]
    c.report(on_b[0], E.CANCELED)
    c.report(on_b[1], E.CANCELED)
    assert c.state.workers["tm-b"].free_slots() == []
    c.report(on_b[2], E.CANCELED)
    assert c.state.workers["tm-b"].free_slots() == [0]
    c.register("tm-c", slots=1)
    c.heartbeat_all()
    c.tick(1_000)
    assert _status(c) is JobStatus.RUNNING
    # Equal free slots: subtask 0's slot goes to the smaller id.
    assert _held(c, "tm-b") == [{"src#0", "mid#0", "out#0"}]
    assert _held(c, "tm-c") == [{"src#1", "mid#1", "out#1"}]
    _check(c)


def test_reconciliation_keeps_shared_slots_and_ends_only_the_missing_task() -> None:
    c = _running_line()
    c.elect("replica-2")
    job = c.state.jobs["job"]

    def running(t: TaskRef) -> RunningTask:
        x = job.executions[(t.vertex_id, t.subtask_index)]
        return RunningTask(task=t, slot_index=x.slot_index or 0, state=E.RUNNING)

    everything = tuple(running(t) for t in c.tasks("job"))
    d = c.register("tm-a", slots=2, running=everything)
    assert [type(e).__name__ for e in d.events] == ["TaskManagerJoined"]
    assert d.commands == []
    _check(c)
    c.elect("replica-3")
    missing = next(r for r in everything if r.task.vertex_id == "mid")
    c.register("tm-a", slots=2, running=tuple(r for r in everything if r != missing))
    job = c.state.jobs["job"]
    assert job.executions[("mid", 0)].state is E.FAILED
    assert job.status is JobStatus.RESTARTING
    assert _held(c, "tm-a")[0] == {"src#0", "out#0"}  # being canceled, still held
    _check(c)


def _keyed(chaining: bool) -> Cluster:
    """sequence(2) -> map(2) -HASH-> keyed count(2) -> sink(2) on one worker, 2 slots."""
    c = Cluster()
    c.register("tm-a", slots=2, operators=("sequence", "map", "keyed_count", "sink"))
    vertices = (("seq", "sequence", 2), ("map", "map", 2), ("count", "keyed_count", 2),
                ("sink", "sink", 2))  # fmt: skip
    s = submission("job", vertices, chaining=chaining)
    hashed = Edge(source="map", target="count", partitioning=Partitioning.HASH, key_field="k")
    edges = tuple(hashed if e.source == "map" else e for e in s.job_graph.edges)
    c.feed(dataclasses.replace(s, job_graph=dataclasses.replace(s.job_graph, edges=edges)))
    return c


def test_the_keyed_job_fits_in_two_slots_chained_or_not() -> None:
    for chaining, deploys in ((True, 4), (False, 8)):
        c = _keyed(chaining)
        assert _status(c) is JobStatus.RUNNING
        assert len([x for x in c.commands if isinstance(x, DeployTask)]) == deploys
        assert _held(c, "tm-a") == [
            {"seq#0", "map#0", "count#0", "sink#0"}, {"seq#1", "map#1", "count#1", "sink#1"}
        ]  # fmt: skip
        c.run_all("job")
        _check(c)


def test_a_group_of_more_vertices_than_a_slot_holds_takes_a_second_slot_per_index() -> None:
    """A slot holds at most MAX_TASKS_PER_SLOT tasks (a worker's registration lists them
    all and must fit its record): 20 vertices of one group at parallelism 2 take 2 slots
    per subtask index, 16 tasks and 4."""
    line = tuple((f"v{n:02d}", "map", 2) for n in range(20))
    c = Cluster()
    c.register("tm-a", slots=3)
    c.submit("job", line)
    job = c.state.jobs["job"]
    assert job.waiting_reason is not None and "4 slots needed, 3 free" in job.waiting_reason
    c.register("tm-b", slots=1)
    assert _status(c) is JobStatus.RUNNING
    sizes = sorted(len(s) for tm in ("tm-a", "tm-b") for s in _held(c, tm))
    assert sizes == [4, 4, MAX_TASKS_PER_SLOT, MAX_TASKS_PER_SLOT]
    first = next(s for s in _held(c, "tm-a") if len(s) == MAX_TASKS_PER_SLOT)
    index = next(iter(first)).split("#")[1]
    assert first == {f"v{n:02d}#{index}" for n in range(MAX_TASKS_PER_SLOT)}  # in graph order
    c.run_all("job")
    _check(c)
