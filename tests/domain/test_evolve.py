"""evolve refuses impossible journals; the epoch rule; every journal type handled."""

import dataclasses

import pytest

from coordinator.domain import EpochNotIncreasing, InconsistentJournal, State, evolve
from coordinator.domain.evolve import HANDLED_EVENT_TYPES
from schemas.events import (
    EVENT_CLASSES,
    ExecutionState,
    JobStatus,
    JobStatusChanged,
    JournalEvent,
    LeaderElected,
    SlotRef,
    TaskAssigned,
    TaskManagerLost,
    TaskRef,
    TaskStateRecorded,
)
from tests.domain.cluster import Cluster


def test_every_journal_event_type_has_a_handler() -> None:
    journal_types = {c for c in EVENT_CLASSES if issubclass(c, JournalEvent)}
    assert journal_types == set(HANDLED_EVENT_TYPES)


def _running_cluster() -> Cluster:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.submit("job", (("src", "map", 1),))
    return c


def _stamp(c: Cluster, **overrides: object) -> dict[str, object]:
    return {"event_id": "x", "event_time": c.now, "epoch": c.state.epoch, **overrides}


def _impossible(c: Cluster) -> list[JournalEvent]:
    task = c.tasks("job")[0]
    return [
        JobStatusChanged(**_stamp(c), job_id="job", from_status=JobStatus.CREATED,  # type: ignore[arg-type]
                         to_status=JobStatus.FINISHED),
        JobStatusChanged(**_stamp(c), job_id="job", from_status=JobStatus.RUNNING,  # type: ignore[arg-type]
                         to_status=JobStatus.INITIALIZING),
        JobStatusChanged(**_stamp(c), job_id="ghost", from_status=JobStatus.RUNNING,  # type: ignore[arg-type]
                         to_status=JobStatus.FAILING),
        TaskAssigned(**_stamp(c), task=task, slot=SlotRef(tm_id="tm-a", slot_index=5),  # type: ignore[arg-type]
                     incarnation="inc-1"),
        TaskAssigned(**_stamp(c), task=task, slot=SlotRef(tm_id="tm-z", slot_index=0),  # type: ignore[arg-type]
                     incarnation="inc-1"),
        TaskStateRecorded(**_stamp(c), task=dataclasses.replace(task, attempt=3),  # type: ignore[arg-type]
                          state=ExecutionState.RUNNING),
        TaskStateRecorded(**_stamp(c), task=task, state=ExecutionState.CREATED),  # type: ignore[arg-type]
        TaskManagerLost(**_stamp(c), tm_id="tm-a", incarnation="inc-1", reason="busy"),  # type: ignore[arg-type]
        TaskManagerLost(**_stamp(c), tm_id="tm-a", incarnation="inc-9", reason="?"),  # type: ignore[arg-type]
        JobStatusChanged(**_stamp(c, epoch=c.state.epoch + 1), job_id="job",  # type: ignore[arg-type]
                         from_status=JobStatus.RUNNING, to_status=JobStatus.FAILING),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(10))
def test_impossible_events_are_refused(index: int) -> None:
    c = _running_cluster()
    event = _impossible(c)[index]
    with pytest.raises(InconsistentJournal):
        evolve(c.state, event)


def test_leader_elected_must_raise_the_epoch() -> None:
    state = State()
    evolve(state, LeaderElected(event_id="a", event_time=1, epoch=3, replica_id="r",
                                previous_offset=-1))  # fmt: skip
    for epoch in (3, 2):
        with pytest.raises(EpochNotIncreasing):
            evolve(state, LeaderElected(event_id="b", event_time=2, epoch=epoch, replica_id="q",
                                        previous_offset=0))  # fmt: skip
    assert state.epoch == 3 and state.leader_replica_id == "r"


def test_older_epoch_is_ignored_equal_epoch_applies() -> None:
    c = _running_cluster()
    before = c.state.jobs["job"].status
    task = c.tasks("job")[0]
    stale = TaskStateRecorded(
        event_id="s", event_time=c.now, epoch=0, task=task, state=ExecutionState.FAILED
    )
    evolve(c.state, stale)
    assert c.state.ignored_stale_events == 1 and c.state.jobs["job"].status is before
    current = dataclasses.replace(stale, epoch=c.state.epoch, state=ExecutionState.INITIALIZING)
    evolve(c.state, current)
    assert c.state.jobs["job"].executions[("src", 0)].state is ExecutionState.INITIALIZING


def test_unknown_task_ref_is_refused() -> None:
    c = _running_cluster()
    ghost = TaskRef(job_id="job", vertex_id="nope", subtask_index=0, attempt=0)
    with pytest.raises(InconsistentJournal):
        evolve(c.state, TaskStateRecorded(event_id="g", event_time=0, epoch=c.state.epoch,
                                          task=ghost, state=ExecutionState.FAILED))  # fmt: skip
