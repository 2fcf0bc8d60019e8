"""Operator chaining in the pure core: which vertices chain, and how a chain is placed,
deployed, lost and restarted (coordinator/domain/chaining.py, scheduler.py)."""

import dataclasses
import itertools

from coordinator.domain import state_digest
from coordinator.domain.chaining import chained_edges, chains, topic_edges
from coordinator.domain.invariants import violations
from schemas.events import (
    DeployTask,
    Edge,
    ExecutionState,
    JobGraph,
    JobStatus,
    Partitioning,
    RunningTask,
    TaskAssigned,
    TaskManagerLost,
    Vertex,
)
from schemas.limits import MAX_TASKS_PER_SLOT
from tests.domain.cluster import Cluster, replay, submission

E = ExecutionState
P = Partitioning


def _graph(*edges: Edge, p: dict[str, int] | None = None, **vertex_fields: object) -> JobGraph:
    ids = ("a", "b", "c", "d")
    vertices = tuple(
        Vertex(id=v, name=v, operator="map", parallelism=(p or {}).get(v, 2),
               **vertex_fields.get(v, {}))  # type: ignore[arg-type]
        for v in ids
    )  # fmt: skip
    return JobGraph(vertices=vertices, edges=edges)


def _fwd(a: str, b: str) -> Edge:
    return Edge(source=a, target=b, partitioning=P.FORWARD)


def test_forward_edges_of_equal_parallelism_chain_and_the_others_do_not() -> None:
    line = (_fwd("a", "b"), _fwd("b", "c"), _fwd("c", "d"))
    assert chains(_graph(*line)) == (("a", "b", "c", "d"),)
    hashed = Edge(source="b", target="c", partitioning=P.HASH, key_field="k")
    assert chains(_graph(_fwd("a", "b"), hashed, _fwd("c", "d"))) == (("a", "b"), ("c", "d"))
    assert chains(_graph(*line, p={"c": 3, "d": 3})) == (("a", "b"), ("c", "d"))
    # a fan-out or a fan-in ends a chain (chains are linear)
    fan = (_fwd("a", "b"), _fwd("a", "c"), _fwd("c", "d"))
    assert chains(_graph(*fan)) == (("a",), ("b",), ("c", "d"))


def test_chaining_false_per_vertex_per_job_or_another_group_keeps_vertices_apart() -> None:
    line = (_fwd("a", "b"), _fwd("b", "c"), _fwd("c", "d"))
    assert chains(_graph(*line, c={"chaining": False})) == (("a", "b"), ("c",), ("d",))
    off = dataclasses.replace(_graph(*line), chaining=False)
    assert chains(off) == (("a",), ("b",), ("c",), ("d",))
    assert chains(_graph(*line, b={"slot_sharing_group": "other"})) == (("a",), ("b",), ("c", "d"))


def test_a_chained_job_is_one_deploy_per_chain_subtask_with_every_vertex_journaled() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.register("tm-b", slots=1)
    d = c.submit("job", (("src", "map", 2), ("mid", "map", 2), ("out", "sink", 2)), chaining=True)
    assert c.state.jobs["job"].status is JobStatus.RUNNING  # 3 vertices x 2 in 2 slots
    assigned = [e for e in d.events if isinstance(e, TaskAssigned)]
    assert len(assigned) == 6
    assert {(e.slot.tm_id, e.slot.slot_index) for e in assigned} == {("tm-a", 0), ("tm-b", 0)}
    deploys = [x for x in d.commands if isinstance(x, DeployTask)]
    assert [(x.task.vertex_id, x.task.subtask_index) for x in deploys] == [("src", 0), ("src", 1)]
    for x in deploys:
        assert [m.task.vertex_id for m in x.chained] == ["mid", "out"]
        assert {m.task.subtask_index for m in x.chained} == {x.task.subtask_index}
        assert x.outputs == () and all(m.outputs == () for m in x.chained)
    assert all(len(w.slots[0]) == 3 for w in c.state.workers.values())
    c.run_all("job")
    assert violations(c.state) == []
    assert state_digest(replay(c.journal)) == state_digest(c.state)


def test_the_same_job_unchained_is_a_task_per_subtask_sharing_the_same_slots() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.register("tm-b", slots=1)
    d = c.submit("job", (("src", "map", 2), ("mid", "map", 2), ("out", "sink", 2)))
    assert c.state.jobs["job"].status is JobStatus.RUNNING
    assert len([x for x in d.commands if isinstance(x, DeployTask)]) == 6
    assert all(len(w.slots[0]) == 3 for w in c.state.workers.values())
    # Without slot sharing (each vertex in a group of its own): a slot per subtask.
    c.submit("apart", (("src", "map", 2), ("mid", "map", 2), ("out", "sink", 2)),
             groups={"src": "src", "mid": "mid", "out": "out"})  # fmt: skip
    job = c.state.jobs["apart"]
    assert job.status is JobStatus.CREATED
    assert job.waiting_reason is not None and "6 slots needed, 0 free" in job.waiting_reason


def test_a_lost_worker_ends_its_whole_chain_and_the_restart_redeploys_it() -> None:
    c = Cluster()
    c.register("tm-a", slots=1)
    c.register("tm-b", slots=1)
    c.submit("job", (("src", "map", 2), ("out", "sink", 2)), chaining=True)
    c.run_all("job")
    c.now += 4_000
    c.view.last_heartbeat[("tm-b", "inc-1")] = c.now
    d = c.tick(2_000)  # tm-a silent for 6 s
    assert any(isinstance(e, TaskManagerLost) and e.tm_id == "tm-a" for e in d.events)
    assert c.state.jobs["job"].status is JobStatus.RESTARTING
    c.run_all("job", E.CANCELED)
    c.register("tm-c", slots=1)
    c.heartbeat_all()
    d = c.tick(1_000)
    job = c.state.jobs["job"]
    assert job.status is JobStatus.RUNNING
    assert {x.attempt for x in job.executions.values()} == {1}
    deploys = [x for x in d.commands if isinstance(x, DeployTask)]
    assert len(deploys) == 2 and all(len(x.chained) == 1 for x in deploys)
    assert violations(c.state) == []
    assert state_digest(replay(c.journal)) == state_digest(c.state)


def test_reconciliation_keeps_a_chain_its_worker_still_runs() -> None:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 2), ("out", "sink", 2)), chaining=True)
    c.run_all("job")
    c.elect("replica-2")
    running = tuple(
        RunningTask(task=t, slot_index=c.state.jobs["job"].executions[
            (t.vertex_id, t.subtask_index)].slot_index or 0, state=E.RUNNING)
        for t in c.tasks("job")
    )  # fmt: skip
    d = c.register("tm-a", slots=2, running=running)
    assert [type(e).__name__ for e in d.events] == ["TaskManagerJoined"]
    assert d.commands == []
    assert violations(c.state) == []


def test_a_line_longer_than_a_slot_holds_is_cut_into_chains_with_a_topic_between() -> None:
    ids = [f"v{n:02d}" for n in range(MAX_TASKS_PER_SLOT + 4)]
    graph = JobGraph(
        vertices=tuple(Vertex(id=v, name=v, operator="map", parallelism=2) for v in ids),
        edges=tuple(_fwd(a, b) for a, b in itertools.pairwise(ids)),
    )
    assert chains(graph) == (tuple(ids[:MAX_TASKS_PER_SLOT]), tuple(ids[MAX_TASKS_PER_SLOT:]))
    inside = chained_edges(graph)
    assert (ids[MAX_TASKS_PER_SLOT - 1], ids[MAX_TASKS_PER_SLOT]) not in inside
    assert len(inside) == len(ids) - 2  # every other edge runs by call
    c = Cluster()
    c.register("tm-a", slots=4)  # the two chains (20 tasks) do not fit one slot per index
    d = c.feed(dataclasses.replace(submission("job"), job_graph=graph))
    deploys = [x for x in d.commands if isinstance(x, DeployTask)]
    assert sorted((d.task.vertex_id, len(d.chained)) for d in deploys) == sorted(
        [(ids[0], MAX_TASKS_PER_SLOT - 1)] * 2 + [(ids[MAX_TASKS_PER_SLOT], 3)] * 2
    )
    head = next(d for d in deploys if d.task.vertex_id == ids[0])
    assert [e.target for e in head.chained[-1].outputs] == [ids[MAX_TASKS_PER_SLOT]]


def test_the_topics_a_run_needs_are_the_edges_its_tasks_write() -> None:
    """``topic_edges`` (what the leader creates ahead of a run) names exactly the edges the
    deployed tasks write to, sized by the target's parallelism; chained edges have none."""
    hashed = Edge(source="b", target="c", partitioning=P.HASH, key_field="k")
    for chaining in (True, False):
        graph = dataclasses.replace(
            _graph(_fwd("a", "b"), hashed, _fwd("c", "d"), p={"c": 3, "d": 3}),
            chaining=chaining,
        )
        expected = {("b", "c"): 3}
        if not chaining:
            expected |= {("a", "b"): 2, ("c", "d"): 3}
        assert topic_edges(graph) == expected
        c = Cluster()
        c.register("tm-a", slots=8)
        d = c.feed(dataclasses.replace(submission("job"), job_graph=graph))
        written = set()
        for deploy in (x for x in d.commands if isinstance(x, DeployTask)):
            last = deploy.chained[-1].outputs if deploy.chained else deploy.outputs
            written |= {(e.source, e.target) for e in last}
        assert written == set(expected)
