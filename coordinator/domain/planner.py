"""The scratch pad of one decision: a forked state plus what was decided.

Every proposed journal event is applied to the fork at once through the same
``evolve`` as replay, so the rest of the decision reasons on the state as it
will be, and a decision that evolve would refuse fails in decide (a bug),
never in a replica.
"""

import hashlib
from typing import Any, Final, TypeVar

from coordinator.domain.evolve import evolve
from coordinator.domain.state import State
from coordinator.domain.view import DomainConfig, LeaderView
from schemas.events import Event, InputRejected, JournalEvent, WorkerCommand

#: Longest input id a derived event id starts with; longer ones are cut and hashed.
ID_PREFIX_MAX: Final = 128
#: Longest reason a rejection carries.
REASON_MAX: Final = 2_000


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with a note of what was cut."""
    if len(text) <= limit:
        return text
    note = f"... [{len(text) - limit} more characters]"
    return text[: max(0, limit - len(note))] + note


def bounded_id(text: str, limit: int = ID_PREFIX_MAX) -> str:
    """`text` if short enough, else its start and a hash of the whole (still unique)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{text[: limit - 26]}~{digest}"


J = TypeVar("J", bound=JournalEvent)
C = TypeVar("C", bound=WorkerCommand)


class Planner:
    """Ids are ``f"{input_id}:{n}"``, n counting events and commands from 1."""

    __slots__ = ("_n", "_prefix", "commands", "config", "events", "now", "state", "view")

    def __init__(self, state: State, view: LeaderView, now: int, input_id: str) -> None:
        self.state = state.fork()
        self.view = view
        self.config: DomainConfig = view.config
        self.now = now
        self.events: list[JournalEvent] = []
        self.commands: list[WorkerCommand] = []
        self._prefix = bounded_id(input_id)
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
        self.emit(
            InputRejected,
            input_event_id=bounded_id(event.event_id),
            input_event_type=type(event).__name__,
            reason=clip(reason, REASON_MAX),
            job_id=None if job_id is None else bounded_id(job_id),
            tm_id=None if tm_id is None else bounded_id(tm_id),
        )
