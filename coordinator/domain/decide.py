"""``decide(state, view, input, now) -> Decision``: what follows from one input.

Pure: reads the state and never mutates it, raises on no input. The one
write to the view is an acknowledgement decide found valid
(``checkpoints.on_acknowledged`` records it, completion or abort forgets it):
acknowledgements are not journaled one by one, so the leader that reads them
keeps them there.
Impossible input becomes a journaled rejection (JobRejected for
submissions, InputRejected for everything else); so does an input over a
size limit (``admission``), before any decider sees it.

Contract with the leader loop:

- Apply a decision's events (decode(encode(e)), through ``evolve``) before
  deciding the next input of a batch: each decision reasons on the state all
  earlier decisions left. The commands are sent in the same transaction.
- Every event and command is stamped ``event_time = now`` and
  ``epoch = view.epoch``; ids are ``f"{input.event_id}:{n}"``, n from 1.
  A Tick's ``event_id`` is chosen by the loop and must be unique (e.g.
  ``f"tick-{epoch}-{counter}"``: a new leader always has a new epoch).
- The loop records heartbeats into the view (``LeaderView.record_heartbeat``)
  as it reads them; only heartbeats of incarnations registered in the state are
  kept. Checkpoint acknowledgements are inputs like any other: decide records
  the valid ones itself.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from coordinator.domain import admission, checkpoints, dispatcher, jobmaster, resource_manager
from coordinator.domain.checkpoints import SavepointWritten
from coordinator.domain.errors import NotLeader
from coordinator.domain.planner import Planner
from coordinator.domain.scheduler import schedule_waiting
from coordinator.domain.state import State
from coordinator.domain.view import LeaderView
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointDeclined,
    JobCancelRequested,
    JobStatus,
    JobSubmitted,
    JournalEvent,
    LeaderElected,
    SavepointRequested,
    StopWithSavepointRequested,
    TaskManagerDeregistered,
    TaskManagerRegistered,
    TaskStateChanged,
    WorkerCommand,
)
from schemas.limits import clip_id


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: fire the deadlines due at `now`. event_id: unique, see module doc."""

    event_id: str


Input = (
    JobSubmitted
    | JobCancelRequested
    | SavepointRequested
    | StopWithSavepointRequested
    | TaskManagerRegistered
    | TaskManagerDeregistered
    | TaskStateChanged
    | CheckpointAcknowledged
    | CheckpointDeclined
    | Tick
    | SavepointWritten
)


@dataclass(slots=True)
class Decision:
    """Journal events (in order) and the worker commands to send with them."""

    events: list[JournalEvent] = field(default_factory=list)
    commands: list[WorkerCommand] = field(default_factory=list)


def _on_tick(p: Planner, tick: Tick) -> None:
    resource_manager.check_heartbeats(p)
    resource_manager.check_standing(p)
    config = p.config
    for job in sorted(p.state.jobs.values(), key=lambda j: j.accepted_seq):
        job_id = job.job_id
        if job.status is JobStatus.CREATED and job.waiting_since is not None:
            if p.now - job.waiting_since >= config.slot_wait_timeout_ms:
                jobmaster.fail_slot_wait(p, job_id)
        elif job.status is JobStatus.RESTARTING:
            jobmaster.settle(p, job_id)
        elif job.status is JobStatus.RUNNING:
            checkpoints.on_tick(p, job_id)
    dispatcher.archive_finished(p)
    schedule_waiting(p)


_DECIDERS: Final[dict[type[Any], Callable[[Planner, Any], None]]] = {
    JobSubmitted: dispatcher.on_submitted,
    JobCancelRequested: dispatcher.on_cancel_requested,
    SavepointRequested: checkpoints.on_savepoint_requested,
    StopWithSavepointRequested: checkpoints.on_savepoint_requested,
    TaskManagerRegistered: resource_manager.on_registered,
    TaskManagerDeregistered: resource_manager.on_deregistered,
    TaskStateChanged: checkpoints.on_task_state_changed,
    CheckpointAcknowledged: checkpoints.on_acknowledged,
    CheckpointDeclined: checkpoints.on_declined,
    Tick: _on_tick,
    SavepointWritten: checkpoints.on_savepoint_written,
}


def decide(state: State, view: LeaderView, input: Input, now: int) -> Decision:
    """The journal events and worker commands that follow from `input` at `now`."""
    if view.epoch != state.epoch:
        raise NotLeader(f"view epoch {view.epoch} is not the state's epoch {state.epoch}")
    decider = _DECIDERS.get(type(input))
    if decider is None:
        raise TypeError(f"decide takes no {type(input).__name__}")
    p = Planner(state, view, now, input.event_id)
    # Inputs come from outside (a Tick from the loop): over a limit, no decider sees them.
    if isinstance(input, Tick | SavepointWritten) or not (
        refused := admission.problems(state, input, view.config)
    ):
        decider(p, input)
    else:
        admission.refuse(p, input, refused)
    return Decision(p.events, p.commands)


def refuse(state: State, view: LeaderView, input: Input, reason: str, now: int) -> Decision:
    """The rejection of an input whose decision failed or would not fit the journal:
    JobRejected for a submission, InputRejected for anything else. Every field that
    comes from the input is bounded."""
    if view.epoch != state.epoch:
        raise NotLeader(f"view epoch {view.epoch} is not the state's epoch {state.epoch}")
    p = Planner(state, view, now, input.event_id)
    if isinstance(input, JobSubmitted):
        p.reject_job(input, input.job_id, reason)
    elif not isinstance(input, Tick | SavepointWritten):
        job_id = getattr(input, "job_id", None)
        tm_id = getattr(input, "tm_id", None)
        p.reject(
            input,
            reason,
            job_id=job_id if isinstance(job_id, str) else None,
            tm_id=tm_id if isinstance(tm_id, str) else None,
        )
    return Decision(p.events, p.commands)


def leader_elected_id(epoch: int, replica_id: str) -> str:
    """The one id format of LeaderElected events."""
    return f"leader:{epoch}:{clip_id(replica_id)}"


def leader_elected(
    state: State, replica_id: str, previous_offset: int, now: int, epoch: int | None = None
) -> LeaderElected:
    """The LeaderElected a new leader journals first (epoch = state epoch + 1 by default)."""
    new_epoch = state.epoch + 1 if epoch is None else epoch
    return LeaderElected(
        event_id=leader_elected_id(new_epoch, replica_id),
        event_time=now,
        epoch=new_epoch,
        replica_id=replica_id,
        previous_offset=previous_offset,
    )
