"""Slot bookkeeping, without processes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import events as ev
from worker import errors
from worker.slots import (
    AlreadyEnded,
    AlreadyHere,
    CancelRunning,
    Reject,
    Report,
    SlotTable,
    Start,
    UnknownTask,
)

ES = ev.ExecutionState


def ref(vertex: str = "v", subtask: int = 0, attempt: int = 0, job: str = "j") -> ev.TaskRef:
    return ev.TaskRef(job_id=job, vertex_id=vertex, subtask_index=subtask, attempt=attempt)


def test_deploy_occupies_the_slot_as_deploying() -> None:
    table = SlotTable(2)
    assert table.deploy(ref(), 1) == Start(1)
    assert table.running() == (ev.RunningTask(task=ref(), slot_index=1, state=ES.DEPLOYING),)
    assert table.free_slots() == 1


@pytest.mark.parametrize(
    ("second", "slot", "error"),
    [
        (ref(job="other"), 0, errors.SlotBusyError),  # slot taken by another job
        (ref(subtask=1), 0, errors.SlotBusyError),  # by another subtask of the vertex
        (ref(attempt=1), 1, errors.SlotBusyError),  # same subtask, new attempt
        (ref("other"), 2, errors.NoSuchSlotError),
        (ref("other"), -1, errors.NoSuchSlotError),
    ],
)
def test_conflicting_deploys_are_rejected_without_disturbing(
    second: ev.TaskRef, slot: int, error: type[errors.TaskError]
) -> None:
    table = SlotTable(2)
    table.deploy(ref(), 0)
    table.record(0, ref(), ES.RUNNING)
    decision = table.deploy(second, slot)
    assert isinstance(decision, Reject)
    assert isinstance(decision.error, error)
    assert table.running() == (ev.RunningTask(task=ref(), slot_index=0, state=ES.RUNNING),)


def test_same_attempt_again_is_idempotent_even_after_it_ended() -> None:
    table = SlotTable(1)
    table.deploy(ref(), 0)
    assert table.deploy(ref(), 0) == AlreadyHere(ES.DEPLOYING)
    table.record(0, ref(), ES.FINISHED)
    assert table.deploy(ref(), 0) == AlreadyHere(ES.FINISHED)
    assert table.free_slots() == 1


def test_states_only_move_forward_and_end_frees_the_slot() -> None:
    table = SlotTable(1)
    table.deploy(ref(), 0)
    assert table.record(0, ref(), ES.INITIALIZING)
    assert table.record(0, ref(), ES.RUNNING)
    assert not table.record(0, ref(), ES.INITIALIZING)
    assert not table.record(0, ref("stranger"), ES.FAILED)
    assert table.record(0, ref(), ES.FAILED)
    assert table.entry(0) is None
    assert not table.record(0, ref(), ES.CANCELED)  # late message after the end


def test_cancel_answers() -> None:
    table = SlotTable(2)
    table.deploy(ref("a"), 0)
    table.deploy(ref("b"), 1)
    table.record(1, ref("b"), ES.FINISHED)
    assert table.cancel(ref("a")) == CancelRunning(0)
    assert table.cancel(ref("b")) == AlreadyEnded(ES.FINISHED)
    assert table.cancel(ref("never")) == UnknownTask()


def test_a_dead_process_cancels_what_was_being_canceled_and_fails_the_rest() -> None:
    table = SlotTable(2)
    table.deploy(ref("a"), 0)
    table.deploy(ref("b"), 1)
    table.cancel(ref("a"))
    assert table.process_died(0) == (ref("a"), Report(ES.CANCELED))
    assert table.process_died(1) == (ref("b"), Report(ES.FAILED))
    assert table.process_died(1) is None
    assert table.free_slots() == 2


def test_a_stop_of_the_workers_own_ends_failed_with_its_reason() -> None:
    table = SlotTable(3)
    table.deploy(ref("a"), 0)
    table.deploy(ref("b"), 1)
    table.deploy(ref("c"), 2)
    table.record(0, ref("a"), ES.RUNNING)
    table.cancel(ref("b"))  # the coordinator asked for this one first
    assert table.cancel_all("no leader") == [CancelRunning(0), CancelRunning(1), CancelRunning(2)]
    # Obeyed the cancel or killed: FAILED with the reason either way (RUNNING ->
    # CANCELED is no report the coordinator can take for a cancel it never asked).
    assert table.record(0, ref("a"), ES.CANCELED) == Report(ES.FAILED, "no leader")
    assert table.process_died(2) == (ref("c"), Report(ES.FAILED, "no leader"))
    assert table.cancel(ref("a")) == AlreadyEnded(ES.FAILED)  # the same answer again
    # The coordinator expects CANCELED for the cancel it asked for.
    assert table.record(1, ref("b"), ES.CANCELED) == Report(ES.CANCELED)


def test_memory_of_ended_attempts_is_bounded() -> None:
    table = SlotTable(1, remember_ended=2)
    for attempt in range(3):
        table.deploy(ref(attempt=attempt), 0)
        table.record(0, ref(attempt=attempt), ES.FINISHED)
    assert table.cancel(ref(attempt=0)) == UnknownTask()
    assert table.cancel(ref(attempt=2)) == AlreadyEnded(ES.FINISHED)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["deploy", "finish", "die"]),
            st.integers(0, 3),
            st.integers(0, 2),
            st.integers(0, 1),
        ),
        max_size=60,
    )
)
def test_never_two_attempts_of_a_subtask_nor_two_tasks_in_a_slot(
    steps: list[tuple[str, int, int, int]],
) -> None:
    table = SlotTable(3)
    for action, slot, subtask, attempt in steps:
        task = ref(subtask=subtask, attempt=attempt)
        if action == "deploy":
            table.deploy(task, slot)
        elif action == "finish" and slot < 3:
            table.record(slot, task, ES.FINISHED)
        elif slot < 3:
            table.process_died(slot)
        running = table.running()
        subtasks = [(r.task.job_id, r.task.vertex_id, r.task.subtask_index) for r in running]
        assert len(subtasks) == len(set(subtasks))
        assert len({r.slot_index for r in running}) == len(running)
        assert table.free_slots() == 3 - len(running)


def test_tasks_of_other_vertices_of_the_job_share_the_slot_each_in_a_lane() -> None:
    table = SlotTable(2)
    assert table.deploy(ref("a"), 0) == Start(0)  # the slot's own lane
    assert table.deploy(ref("b"), 0) == Start(2)  # a new extra lane
    assert table.deploy(ref("c"), 0) == Start(3)
    assert table.deploy(ref("a", 1), 1) == Start(1)
    assert table.deploy(ref("b", 1), 1) == Start(4)
    assert table.lanes == 5 and table.free_slots() == 0
    assert [(r.task.vertex_id, r.slot_index) for r in table.running()] == [
        ("a", 0), ("a", 1), ("b", 0), ("c", 0), ("b", 1)
    ]  # fmt: skip
    # One task ending leaves its sharers running and the slot held.
    assert table.record(2, ref("b"), ES.FINISHED) == Report(ES.FINISHED)
    assert table.process_died(0) == (ref("a"), Report(ES.FAILED))
    assert table.free_slots() == 0
    assert table.cancel(ref("c")) == CancelRunning(3)
    assert table.record(3, ref("c"), ES.CANCELED) == Report(ES.CANCELED)
    assert table.free_slots() == 1  # slot 0: no task left
    # The next sharer takes the first idle extra lane: no new process.
    table.deploy(ref("a", attempt=1), 0)
    assert table.deploy(ref("b", attempt=1), 0) == Start(2)
    assert table.lanes == 5


def test_a_spare_lane_started_ahead_is_what_the_first_sharer_takes() -> None:
    table = SlotTable(2)
    assert table.add_lane() == 2 and table.idle_extra_lanes() == 1
    assert table.deploy(ref("a"), 0) == Start(0)
    assert table.deploy(ref("b"), 0) == Start(2)  # the spare, already running
    assert table.idle_extra_lanes() == 0
    assert table.add_lane() == 3  # the next spare
    assert table.deploy(ref("a", 1), 1) == Start(1)
    assert table.deploy(ref("b", 1), 1) == Start(3)
    assert table.deploy(ref("c", 1), 1) == Start(4)  # none idle: a new lane
    assert table.lanes == 5 and table.idle_extra_lanes() == 0
    assert table.record(2, ref("b"), ES.FINISHED) == Report(ES.FINISHED)
    assert table.idle_extra_lanes() == 1


def test_cancel_all_stops_every_lane_of_a_shared_slot() -> None:
    table = SlotTable(1)
    table.deploy(ref("a"), 0)
    table.deploy(ref("b"), 0)
    assert table.cancel_all("shutdown") == [CancelRunning(0), CancelRunning(1)]
    assert table.record(1, ref("b"), ES.CANCELED) == Report(ES.FAILED, "shutdown")
    assert table.process_died(0) == (ref("a"), Report(ES.FAILED, "shutdown"))
    assert table.free_slots() == 1 and table.running() == ()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["deploy", "finish", "die"]),
            st.integers(0, 5),
            st.sampled_from(["j", "k"]),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 1),
        ),
        max_size=80,
    )
)
def test_a_slot_holds_one_job_and_one_task_per_vertex(
    steps: list[tuple[str, int, str, str, int]],
) -> None:
    table = SlotTable(2)
    for action, where, job, vertex, subtask in steps:
        task = ref(vertex, subtask, job=job)
        if action == "deploy":
            decision = table.deploy(task, where)
            if isinstance(decision, Start):
                assert table.entry(decision.lane) is not None
        elif where < table.lanes:
            entry = table.entry(where)
            if action == "finish" and entry is not None:
                table.record(where, entry.task, ES.FINISHED)
            elif action == "die":
                table.process_died(where)
        running = table.running()
        subtasks = [(r.task.job_id, r.task.vertex_id, r.task.subtask_index) for r in running]
        assert len(subtasks) == len(set(subtasks))
        for slot in range(table.size):
            held = [r.task for r in running if r.slot_index == slot]
            assert len({t.job_id for t in held}) <= 1
            assert len({t.vertex_id for t in held}) == len(held)
        assert table.free_slots() == table.size - len({r.slot_index for r in running})
        lanes = [i for i in range(table.lanes) if table.entry(i) is not None]
        assert len(lanes) == len(running)
