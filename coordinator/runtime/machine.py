"""The slice of the domain the runtime uses, in one place.

The runtime (journal follower, leader loop, replay) needs only these calls;
keeping them together shows the whole contract between the pure core and the
I/O around it.
"""

from __future__ import annotations

from coordinator.domain import (
    DomainConfig,
    InconsistentJournal,
    LeaderView,
    SavepointWritten,
    State,
    Tick,
    evolve,
    in_epoch_handlers,
    leader_elected_id,
    state_digest,
)
from coordinator.domain import decide as _decide
from coordinator.domain import refuse as _refuse
from schemas import events as ev
from schemas.limits import clip

Config = DomainConfig
View = LeaderView
Decision = tuple[list[ev.JournalEvent], list[ev.WorkerCommand]]

__all__ = [
    "Config",
    "Decision",
    "InconsistentJournal",
    "State",
    "View",
    "apply",
    "clip",
    "command_target",
    "decide",
    "digest",
    "epoch",
    "in_epoch_handlers",
    "leader_elected_id",
    "new_state",
    "new_view",
    "note_heartbeat",
    "refuse",
    "tick",
]


def new_state() -> State:
    return State()


def apply(state: State, event: ev.Event) -> None:
    """Fold one journal record into the state (InconsistentJournal if impossible)."""
    if not isinstance(event, ev.JournalEvent):
        raise InconsistentJournal(f"{type(event).__name__} is not a journal event")
    evolve(state, event)


def epoch(state: State) -> int:
    return state.epoch


def digest(state: State) -> str:
    return state_digest(state)


def new_view(epoch: int, replica_id: str, now: int, config: Config) -> View:
    return LeaderView(epoch=epoch, replica_id=replica_id, leader_since=now, config=config)


def note_heartbeat(view: View, heartbeat: ev.TaskManagerHeartbeat, now: int, state: State) -> None:
    """Only heartbeats of incarnations registered in `state` are kept."""
    view.record_heartbeat(heartbeat, now, state.workers)


def decide(state: State, view: View, event: ev.Event | SavepointWritten, now: int) -> Decision:
    decision = _decide(state, view, event, now)  # type: ignore[arg-type]
    return decision.events, decision.commands


def refuse(
    state: State, view: View, event: ev.Event | SavepointWritten, reason: str, now: int
) -> Decision:
    """The journaled rejection of `event`, whose own decision failed (see the leader)."""
    decision = _refuse(state, view, event, reason, now)  # type: ignore[arg-type]
    return decision.events, decision.commands


def tick(state: State, view: View, now: int, tick_id: str) -> Decision:
    """Fire the deadlines due at `now`; `tick_id` must be unique within the epoch."""
    decision = _decide(state, view, Tick(event_id=tick_id), now)
    return decision.events, decision.commands


def command_target(command: ev.WorkerCommand) -> str:
    """The worker a command is for (its tm_id decides the commands partition)."""
    tm_id = getattr(command, "tm_id", None)
    if not isinstance(tm_id, str):
        raise TypeError(f"{type(command).__name__} names no worker")
    return tm_id
