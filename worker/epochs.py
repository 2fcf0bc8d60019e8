"""Which commands a worker acts on, and whether a leader is still talking to it.

Pure: no I/O, no clock. Times are passed in (monotonic seconds), so the rules
are tested directly (tests/worker/test_epochs.py).

Rules (DESIGN.md, "Leadership and fencing"):

- Every committed command on the partition carries the epoch of the leader that
  wrote it. The highest epoch seen only grows; a command from an older epoch
  comes from a deposed leader and is dropped, whoever it is addressed to.
- A command from a higher epoch announces a new leader: the worker registers
  again (with its running tasks) so the new leader reconciles instead of
  redeploying. Commands for other workers count too: they prove the epoch.
  The first epoch a worker hears is no reason to: its registration at start
  is already on jm.reports for whichever leader reads it (registering again
  would journal a second TaskManagerJoined for one incarnation).
- A command is addressed to this worker when its tm id AND incarnation match;
  a ``LeaderKeepalive`` has neither and concerns every worker on the partition.
- Any command of the current epoch proves the leader alive. A worker that has
  heard a leader and then hears nothing for the timeout stops its tasks (and
  reports them FAILED): the leader may declare it lost and redeploy them
  elsewhere, and two copies must not run. When a leader is heard again the
  worker registers again. The coordinator refuses a lost incarnation for good
  and says so with a ``DisconnectTaskManager`` (when it declares it lost, and
  again to each registration of it): the worker then stops whatever it runs
  and comes back as a new incarnation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from schemas import events as ev


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one command."""

    stale: bool  # from an older epoch than the highest seen: drop it
    new_epoch: bool  # announced a higher epoch: register again first (unless the first)
    previous_epoch: int = 0  # the highest epoch seen before this command (0: none)


class CommandFilter:
    """Filters the commands read from this worker's jm.commands partition."""

    def __init__(self, tm_id: str, incarnation: str, highest_epoch: int = 0) -> None:
        self.tm_id = tm_id
        self.incarnation = incarnation
        self.highest_epoch = highest_epoch
        self.dropped_stale = 0

    def check(self, command: ev.WorkerCommand) -> Verdict:
        previous = self.highest_epoch
        if command.epoch < previous:
            self.dropped_stale += 1
            return Verdict(stale=True, new_epoch=False, previous_epoch=previous)
        self.highest_epoch = command.epoch
        return Verdict(stale=False, new_epoch=command.epoch > previous, previous_epoch=previous)

    def addresses(self, command: ev.WorkerCommand) -> bool:
        """For this worker incarnation (or a keepalive, for everyone)? Asked
        after ``check``, which may have led to a new incarnation."""
        if isinstance(command, ev.LeaderKeepalive):
            return True
        tm_id = getattr(command, "tm_id", None)
        incarnation = getattr(command, "incarnation", None)
        return tm_id == self.tm_id and incarnation == self.incarnation


class Leader(enum.Enum):
    """What the worker knows about the leader."""

    NEVER_HEARD = "never heard"  # started before any leader: wait quietly
    ALIVE = "alive"
    SILENT = "silent"  # heard once, then nothing for the timeout: tasks stopped


class LeaderWatch:
    """Tracks the last sign of life of the leader against a timeout."""

    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError("the leader timeout must be positive")
        self.timeout_s = timeout_s
        self.state = Leader.NEVER_HEARD
        self._last_heard = 0.0

    def heard(self, now: float) -> bool:
        """A command of the current epoch arrived. True when the leader had
        gone silent: the worker was probably declared lost and must register again."""
        was_silent = self.state is Leader.SILENT
        self.state = Leader.ALIVE
        self._last_heard = now
        return was_silent

    def check(self, now: float) -> bool:
        """True exactly once, when the leader has just gone silent."""
        if self.state is Leader.ALIVE and now - self._last_heard > self.timeout_s:
            self.state = Leader.SILENT
            return True
        return False
