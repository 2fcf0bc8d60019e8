"""The scratch pad of one decision: a forked state plus what was decided.

Every proposed journal event is applied to the fork at once through the same
``evolve`` as replay, so the rest of the decision reasons on the state as it
will be, and a decision that evolve would refuse fails in decide (a bug),
never in a replica.
"""

from typing import Any, TypeVar

from coordinator.domain.evolve import evolve
from coordinator.domain.state import State
from coordinator.domain.view import DomainConfig, LeaderView
from schemas.events import Event, InputRejected, JobRejected, JournalEvent, WorkerCommand
from schemas.limits import MAX_EVENT_ID_BYTES, MAX_REJECTION_REASON_BYTES, clip, clip_id

J = TypeVar("J", bound=JournalEvent)
C = TypeVar("C", bound=WorkerCommand)


def _clip_optional(value: str | None) -> str | None:
    return None if value is None else clip_id(value)


class Planner:
    """Ids are ``f"{input_id}:{n}"``, n counting events and commands from 1.

    An input id over MAX_EVENT_ID_BYTES is cut (``clip_id``) first, and every
    rejection clips the ids and the reason it writes: whatever an input holds,
    what the planner derives from it stays small.
    """

    __slots__ = ("_n", "_prefix", "commands", "config", "events", "now", "state", "view")

    def __init__(self, state: State, view: LeaderView, now: int, input_id: str) -> None:
        self.state = state.fork()
        self.view = view
        self.config: DomainConfig = view.config
        self.now = now
        self.events: list[JournalEvent] = []
        self.commands: list[WorkerCommand] = []
        self._prefix = clip_id(input_id, MAX_EVENT_ID_BYTES)
        self._n = 0

    def _stamp(self) -> dict[str, Any]:
        self._n += 1
        return {
            "event_id": f"{self._prefix}:{self._n}",
            "event_time": self.now,
            "epoch": self.view.epoch,
        }

    def emit(self, cls: type[J], **fields: Any) -> J:
        event = cls(**self._stamp(), **fields)
        evolve(self.state, event)
        self.events.append(event)
        return event

    def command(self, cls: type[C], **fields: Any) -> C:
        command = cls(**self._stamp(), **fields)
        self.commands.append(command)
        return command

    def reject(
        self, event: Event, reason: str, *, job_id: str | None = None, tm_id: str | None = None
    ) -> None:
        self.reject_input(event.event_id, type(event).__name__, reason, job_id=job_id, tm_id=tm_id)

    def reject_input(
        self,
        input_event_id: str,
        input_event_type: str,
        reason: str,
        *,
        job_id: str | None = None,
        tm_id: str | None = None,
    ) -> None:
        """An InputRejected for an input known only by its id and type."""
        self.emit(
            InputRejected,
            input_event_id=clip_id(input_event_id, MAX_EVENT_ID_BYTES),
            input_event_type=input_event_type,
            reason=clip(reason, MAX_REJECTION_REASON_BYTES),
            job_id=_clip_optional(job_id),
            tm_id=_clip_optional(tm_id),
        )

    def reject_job(self, event: Event, job_id: str, reason: str) -> None:
        """A JobRejected for a submission (or a request about a job)."""
        self.emit(
            JobRejected,
            job_id=clip_id(job_id),
            reason=clip(reason, MAX_REJECTION_REASON_BYTES),
            input_event_id=clip_id(event.event_id, MAX_EVENT_ID_BYTES),
        )
