"""Hypothesis: random inputs never make decide raise, keep the invariants,
never mutate the state in decide, and the journal replays (through the codec)
to the live digest."""

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.domain import Decision, Input, decide, state_digest, state_from_dict, state_to_dict
from coordinator.domain.invariants import violations
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointDeclined,
    ExecutionState,
    RestartStrategy,
    RestartStrategyKind,
    RunningTask,
    SavepointRequested,
    StopWithSavepointRequested,
    TaskRef,
)
from tests.domain.cluster import Cluster, replay, submission

TMS = ("tm-a", "tm-b", "tm-c")
INCS = ("i1", "i2", "i3")
JOBS = ("j0", "j1", "j2", "j3")
GRAPHS = (
    (("src", "map", 1),),
    (("src", "map", 2), ("out", "sink", 2)),
    (("src", "map", 3), ("out", "sink", 1)),
    (("src", "map", 0),),  # invalid
    (("src", "rare", 1),),  # operator few workers offer
)
STRATEGIES = (
    RestartStrategy(kind=RestartStrategyKind.FIXED_DELAY, attempts=2, delay_ms=500),
    RestartStrategy(kind=RestartStrategyKind.NONE),
    RestartStrategy(kind=RestartStrategyKind.FAILURE_RATE, max_failures_per_interval=2),
    RestartStrategy(kind=RestartStrategyKind.EXPONENTIAL_DELAY, initial_backoff_ms=100),
)
OPERATOR_SETS = (("map", "sink"), ("map",), ("map", "sink", "rare"))

action = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(TMS), st.sampled_from(INCS),
              st.integers(0, 4), st.sampled_from(OPERATOR_SETS), st.booleans()),
    st.tuples(st.just("deregister"), st.sampled_from(TMS), st.sampled_from(INCS)),
    st.tuples(st.just("submit"), st.sampled_from(JOBS), st.integers(0, len(GRAPHS) - 1),
              st.integers(0, len(STRATEGIES) - 1)),
    st.tuples(st.just("cancel"), st.sampled_from(JOBS)),
    st.tuples(st.just("report"), st.integers(0, 50), st.sampled_from(ExecutionState),
              st.integers(0, 3)),
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 600, 2_000, 5_001, 400_000])),
    st.tuples(st.just("heartbeat"), st.sampled_from(TMS)),
    st.tuples(st.just("savepoint"), st.sampled_from(JOBS), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 50), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("leader")),
    st.tuples(st.just("progress"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("progress"), st.integers(0, 50), st.just(False)),
)  # fmt: skip

_NEXT = {
    ExecutionState.DEPLOYING: ExecutionState.RUNNING,
    ExecutionState.INITIALIZING: ExecutionState.RUNNING,
    ExecutionState.RUNNING: ExecutionState.FINISHED,
    ExecutionState.CANCELING: ExecutionState.CANCELED,
}


class CheckedCluster(Cluster):
    """Checks, for every decision, that decide left the state untouched."""

    def feed(self, input: Input) -> Decision:
        before = state_digest(self.state)
        decision = decide(self.state, self.view, input, self.now)
        assert state_digest(self.state) == before, f"decide mutated the state on {input}"
        for event in decision.events:
            self.apply(event)
        self.commands.extend(decision.commands)
        assert violations(self.state) == [], (input, violations(self.state))
        return decision


def _all_tasks(c: Cluster) -> list[TaskRef]:
    return [t for job_id in sorted(c.state.jobs) for t in c.tasks(job_id)]


def _run(c: Cluster, act: tuple[Any, ...]) -> None:
    kind = act[0]
    if kind == "register":
        _, tm, inc, slots, ops, report_running = act
        running: tuple[RunningTask, ...] = ()
        worker = c.state.workers.get(str(tm))
        if report_running and worker is not None:
            running = tuple(
                RunningTask(task=t, slot_index=i, state=ExecutionState.RUNNING)
                for i, t in worker.tasks()
            )
        c.register(str(tm), str(inc), int(slots), ops, running)
    elif kind == "deregister":
        c.deregister(str(act[1]), str(act[2]))
    elif kind == "submit":
        _, job, graph, strategy = act
        c.feed(submission(str(job), GRAPHS[graph], restart=STRATEGIES[strategy],
                          event_id=c.next_id("submit")))  # fmt: skip
    elif kind == "cancel":
        c.cancel(str(act[1]))
    elif kind == "report":
        _, pick, state, twist = act
        tasks = _all_tasks(c)
        if not tasks:
            return
        task = tasks[int(pick) % len(tasks)]
        if twist == 1:
            task = dataclasses.replace(task, attempt=max(0, task.attempt - 1))
        c.report(task, state, incarnation="bogus" if twist == 2 else None,
                 error="Boom" if state is ExecutionState.FAILED else None)  # fmt: skip
    elif kind == "tick":
        c.tick(int(act[1]))
    elif kind == "heartbeat":
        worker = c.state.workers.get(str(act[1]))
        if worker is not None:
            c.view.last_heartbeat[(worker.tm_id, worker.incarnation)] = c.now
    elif kind == "savepoint":
        cls = StopWithSavepointRequested if act[2] else SavepointRequested
        c.feed(cls(event_id=c.next_id("sp"), event_time=c.now, job_id=str(act[1])))
    elif kind == "ack":
        _, pick, checkpoint_id, decline = act
        tasks = _all_tasks(c)
        if not tasks:
            return
        task = tasks[int(pick) % len(tasks)]
        x = c.state.jobs[task.job_id].executions[(task.vertex_id, task.subtask_index)]
        common: dict[str, Any] = dict(
            event_id=c.next_id("ack"), event_time=c.now, tm_id=x.tm_id or "tm-a",
            incarnation=x.incarnation or "i1", checkpoint_id=checkpoint_id, task=task,
        )  # fmt: skip
        if decline:
            c.feed(CheckpointDeclined(**common, reason="no"))
        else:
            ack = CheckpointAcknowledged(**common, state_handle="h", state_size=1, duration_ms=1)
            c.feed(ack)
    elif kind == "progress":
        # The natural next report of a live task (or its failure): drives jobs forward.
        _, pick, fail = act
        tasks = _all_tasks(c)
        live = [
            t for t in tasks
            if c.state.jobs[t.job_id].executions[(t.vertex_id, t.subtask_index)].state in _NEXT
        ]  # fmt: skip
        if live:
            task = live[int(pick) % len(live)]
            state = c.state.jobs[task.job_id].executions[(task.vertex_id, task.subtask_index)].state
            c.report(task, ExecutionState.FAILED if fail else _NEXT[state], error="Boom")
    elif kind == "leader":
        c.elect(f"replica-{c.state.epoch + 1}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=10, max_size=80))
def test_random_inputs_keep_invariants_and_replay_to_the_same_digest(
    actions: list[tuple[Any, ...]],
) -> None:
    c = CheckedCluster()
    c.register("tm-a", "i0", 3, ("map", "sink"))
    c.register("tm-b", "i0", 2, ("map", "sink"))
    for act in actions:
        _run(c, act)
    live = state_digest(c.state)
    assert state_digest(replay(c.journal)) == live
    assert state_digest(state_from_dict(state_to_dict(c.state))) == live
    # snapshot + tail == full replay, at any cut
    cut = len(c.journal) // 2
    head = state_from_dict(state_to_dict(replay(c.journal[:cut])))
    assert state_digest(replay(c.journal[cut:], head)) == live
