"""The one place that owns a replica's state: the folded journal and where it stands.

Two writers, never at once: the journal reader (a standby, a replay, a leader
catching up at takeover) applies *committed* records with their offsets; the
leader applies its own decisions *before* they are committed and confirms them
with their offsets once the transaction commits. Everything that reports on
the state (the published digest, ``jm state``) reads the committed view:
``committed`` is False while decided events wait for their commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.runtime import machine
from schemas.events import Event, JournalEvent, SnapshotTaken


class ApplyError(Exception):
    """An event does not apply to the state (the caller decides what that means)."""


@dataclass(frozen=True)
class Applied:
    """One committed record: its offset and event (the leader checks its LeaderElected)."""

    offset: int
    event: Event


class StateHolder:
    def __init__(self) -> None:
        self.state = machine.new_state()
        self.last_offset = -1  # offset of the last committed record applied
        self.applied = 0  # events applied since the last reset
        # Bumped after every change of `state` and never reset: a reader in another
        # thread (the status digest) knows the state it walked did not change meanwhile.
        self.version = 0
        # Journal offset covered by the latest snapshot this state knows of (-1: none),
        # so a new leader keeps the snapshot cadence of the old one.
        self.snapshot_offset = -1
        # Latest event_time applied: a new leader never stamps earlier (event times
        # stay monotonic across leaders whose clocks differ).
        self.max_event_time = 0
        self.pending = 0  # decided events applied but not yet committed
        self._watch_from: int | None = None
        self.first_watched: Applied | None = None

    def reset(self, state: machine.State | None = None, from_offset: int = 0) -> None:
        """Start over: a fresh state, or a snapshot's state covering up to from_offset - 1."""
        self.state = state if state is not None else machine.new_state()
        self.version += 1
        self.last_offset = from_offset - 1
        self.snapshot_offset = from_offset - 1 if state is not None else -1
        self.applied = 0
        self.pending = 0
        self.max_event_time = 0

    @property
    def committed(self) -> bool:
        """True when the state is exactly the journal up to ``last_offset``."""
        return self.pending == 0

    # ------------------------------------------------------ committed records

    def apply_record(self, offset: int, event: Event) -> None:
        """Fold one committed journal record (read back from Kafka)."""
        self._fold(event)
        self.last_offset = offset
        if isinstance(event, SnapshotTaken):
            # SnapshotTaken changes nothing: the state at its own offset is the snapshot's.
            self.snapshot_offset = offset
        if (
            self._watch_from is not None
            and self.first_watched is None
            and offset >= self._watch_from
        ):
            self.first_watched = Applied(offset, event)

    @property
    def watch_pending(self) -> bool:
        """True while ``watch_after`` waits for its first record."""
        return self._watch_from is not None and self.first_watched is None

    def note_folded(self, count: int, last_offset: int, max_event_time: int) -> None:
        """A reader's own loop (the journal follower's batch path) folded `count` more
        committed records, the last at `last_offset`, into ``state`` as ``apply_record``
        would (SnapshotTaken offsets it sets itself): count them the same way."""
        self.version += count
        self.applied += count
        self.last_offset = last_offset
        self.max_event_time = max(self.max_event_time, max_event_time)

    def watch_after(self, offset: int) -> None:
        """Remember the first committed record read after `offset` (takeover checks
        that its own LeaderElected came right after what it had read)."""
        self._watch_from = offset + 1
        self.first_watched = None

    # --------------------------------------------------- the leader's decisions

    def apply_decided(self, event: JournalEvent) -> None:
        """Apply an event the leader decided, before its commit (see ``confirm``)."""
        self._fold(event)
        self.pending += 1

    def confirm(self, last_offset: int, snapshot: bool = False) -> None:
        """The transaction that carried every pending event committed; the journal
        now holds everything up to `last_offset`."""
        self.last_offset = last_offset
        self.pending = 0
        if snapshot:
            self.snapshot_offset = last_offset

    def _fold(self, event: Event) -> None:
        try:
            machine.apply(self.state, event)
        except machine.InconsistentJournal as err:
            raise ApplyError(str(err)) from err
        finally:
            self.version += 1
        self.applied += 1
        self.max_event_time = max(self.max_event_time, event.event_time)
