"""Slot bookkeeping: which task attempt runs in which slot, and in what state.

Pure: no processes, no Kafka. The TaskManager asks it what a DeployTask or a
CancelTask means, and tells it what the slot processes reported. Tested
directly (tests/worker/test_slots.py).

Answers (docs/workers.md, "Commands"):

- DeployTask of an attempt already here (same TaskRef): idempotent, nothing
  happens. The coordinator may resend after a takeover.
- DeployTask into a busy slot, or of a subtask another attempt of which still
  runs here, or into a slot that does not exist: the NEW attempt is reported
  FAILED with a reason; the running task is not disturbed. Two attempts of one
  subtask must never run at once.
- CancelTask of a running attempt: the slot process is asked to cancel.
  Of an attempt that already ended here: its final state is reported again
  (the answer is idempotent and never contradicts an earlier report).
  Of an attempt never seen: ignored.
- A stop the worker decides on its own (no leader heard, declared lost,
  shutting down) ends the attempt FAILED, with the reason, whether the task
  obeyed the cancel or was killed: the coordinator asked for nothing, so it
  must learn that the attempt failed (RUNNING -> CANCELED is no legal report)
  and restart the job per its strategy.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas import events as ev
from worker import errors

ES = ev.ExecutionState

# A state reported by a slot may only move forward along this order.
_ORDER = {ES.DEPLOYING: 0, ES.INITIALIZING: 1, ES.RUNNING: 2}


@dataclass(slots=True)
class SlotEntry:
    """The attempt occupying one slot."""

    task: ev.TaskRef
    state: ES
    cancel_requested: bool = False
    stop_reason: str | None = None  # the worker stopped it on its own, and why


@dataclass(frozen=True, slots=True)
class Start:
    """Occupy the slot (already recorded as DEPLOYING) and run the task."""

    slot_index: int


@dataclass(frozen=True, slots=True)
class AlreadyHere:
    """The same attempt is already running (or ended) here; `state` is its state."""

    state: ES


@dataclass(frozen=True, slots=True)
class Reject:
    """Report the new attempt FAILED with this error; leave everything else alone."""

    error: errors.TaskError


DeployDecision = Start | AlreadyHere | Reject


@dataclass(frozen=True, slots=True)
class CancelRunning:
    """Ask the slot process to cancel; kill it if it has not ended in time."""

    slot_index: int


@dataclass(frozen=True, slots=True)
class AlreadyEnded:
    """Report this final state again."""

    state: ES


@dataclass(frozen=True, slots=True)
class UnknownTask:
    """Never seen here: ignore."""


CancelDecision = CancelRunning | AlreadyEnded | UnknownTask


@dataclass(frozen=True, slots=True)
class Report:
    """A state to report for an attempt. `stopped`: the attempt ended FAILED because
    the worker stopped it on its own, and why (None otherwise)."""

    state: ES
    stopped: str | None = None


def task_name(task: ev.TaskRef) -> str:
    """job/vertex[subtask]#attempt, for logs and reasons."""
    return f"{task.job_id}/{task.vertex_id}[{task.subtask_index}]#{task.attempt}"


def _subtask(task: ev.TaskRef) -> tuple[str, str, int]:
    return task.job_id, task.vertex_id, task.subtask_index


class SlotTable:
    """Slots of one worker and the final states of recently ended attempts."""

    def __init__(self, slots: int, remember_ended: int = 10_000) -> None:
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        self._slots: list[SlotEntry | None] = [None] * slots
        # Bounded: enough to answer a late CancelTask or a resent DeployTask.
        self._ended: OrderedDict[ev.TaskRef, ES] = OrderedDict()
        self._remember = remember_ended

    @property
    def size(self) -> int:
        return len(self._slots)

    def entry(self, slot_index: int) -> SlotEntry | None:
        return self._slots[slot_index]

    def slot_of(self, task: ev.TaskRef) -> int | None:
        for index, entry in enumerate(self._slots):
            if entry is not None and entry.task == task:
                return index
        return None

    def free_slots(self) -> int:
        return sum(1 for entry in self._slots if entry is None)

    def running(self) -> tuple[ev.RunningTask, ...]:
        """Every attempt still occupying a slot, for registration."""
        return tuple(
            ev.RunningTask(task=entry.task, slot_index=index, state=entry.state)
            for index, entry in enumerate(self._slots)
            if entry is not None
        )

    def deploy(self, task: ev.TaskRef, slot_index: int) -> DeployDecision:
        here = self.slot_of(task)
        if here is not None:
            entry = self._slots[here]
            assert entry is not None
            return AlreadyHere(entry.state)
        if task in self._ended:
            return AlreadyHere(self._ended[task])
        if not 0 <= slot_index < len(self._slots):
            return Reject(
                errors.NoSuchSlotError(
                    f"slot {slot_index} does not exist: this worker has {len(self._slots)} slots"
                )
            )
        for index, entry in enumerate(self._slots):
            if entry is not None and _subtask(entry.task) == _subtask(task):
                return Reject(
                    errors.SlotBusyError(
                        f"attempt {entry.task.attempt} of this subtask still runs in slot {index}"
                    )
                )
        occupant = self._slots[slot_index]
        if occupant is not None:
            return Reject(
                errors.SlotBusyError(
                    f"slot {slot_index} runs {task_name(occupant.task)} ({occupant.state})"
                )
            )
        self._slots[slot_index] = SlotEntry(task, ES.DEPLOYING)
        return Start(slot_index)

    def cancel(self, task: ev.TaskRef) -> CancelDecision:
        here = self.slot_of(task)
        if here is not None:
            entry = self._slots[here]
            assert entry is not None
            entry.cancel_requested = True
            return CancelRunning(here)
        if task in self._ended:
            return AlreadyEnded(self._ended[task])
        return UnknownTask()

    def cancel_all(self, reason: str) -> list[CancelRunning]:
        """Stop every occupied slot on the worker's own decision (leader not heard,
        declared lost, shutdown): each attempt will end FAILED with `reason`, except
        those the coordinator had asked to cancel already (CANCELED, as it expects)."""
        out = []
        for index, entry in enumerate(self._slots):
            if entry is not None:
                if not entry.cancel_requested:
                    entry.cancel_requested = True
                    entry.stop_reason = reason
                out.append(CancelRunning(index))
        return out

    def record(self, slot_index: int, task: ev.TaskRef, state: ES) -> Report | None:
        """A slot process reported `state` for `task`. The report to send when it
        is news; None for a task no longer in that slot (a late message from a
        replaced process) or a state that does not move forward."""
        entry = self._slots[slot_index]
        if entry is None or entry.task != task:
            return None
        if state.is_terminal:
            return self._end(slot_index, state)
        if state not in _ORDER or _ORDER[state] <= _ORDER.get(entry.state, 0):
            return None
        entry.state = state
        return Report(state)

    def process_died(self, slot_index: int) -> tuple[ev.TaskRef, Report] | None:
        """The slot's process exited without a final report: the attempt ends
        CANCELED if a cancel was asked for (we killed it), else FAILED."""
        entry = self._slots[slot_index]
        if entry is None:
            return None
        state = ES.CANCELED if entry.cancel_requested else ES.FAILED
        return entry.task, self._end(slot_index, state)

    def _end(self, slot_index: int, state: ES) -> Report:
        entry = self._slots[slot_index]
        assert entry is not None
        report = Report(state)
        if state is ES.CANCELED and entry.stop_reason is not None:
            report = Report(ES.FAILED, entry.stop_reason)
        self._slots[slot_index] = None
        self._ended[entry.task] = report.state
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)
        return report
