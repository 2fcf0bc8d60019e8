"""Slot bookkeeping: which task attempts run in which slot, and in what state.

Pure: no processes, no Kafka. The TaskManager asks it what a DeployTask or a
CancelTask means, and tells it what the slot processes reported. Tested
directly (tests/worker/test_slots.py).

Slot sharing (docs/coordinator.md, "Slot sharing"): one slot may run several tasks at once, one per
operator chain of one job (the coordinator decides which). Each task runs in a slot
process of its own, a *lane*: lane i is the process started for slot i, and a task
that shares a slot whose lane is busy gets an extra lane (index >= the slot count):
an idle one if there is one (the TaskManager keeps a spare started, ``add_lane``),
else a new one, started on demand; kept for the next one either way. Lanes, not slots, identify the
processes: reports, cancels and kills are per lane.

Answers (docs/workers.md, "Commands"):

- DeployTask of an attempt already here (same TaskRef): idempotent, nothing
  happens. The coordinator may resend after a takeover.
- DeployTask into a slot that runs a task of another job or of the same vertex,
  or of a subtask another attempt of which still runs here, or into a slot that
  does not exist: the NEW attempt is reported FAILED with a reason; the running
  tasks are not disturbed. Two attempts of one subtask must never run at once.
- DeployTask into a slot that runs tasks of other vertices of the same job: the
  task shares the slot, in a lane of its own.
- CancelTask of a running attempt: its lane's process is asked to cancel.
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
    """The attempt running in one lane, and the slot it holds (with its sharers)."""

    task: ev.TaskRef
    state: ES
    slot_index: int
    cancel_requested: bool = False
    stop_reason: str | None = None  # the worker stopped it on its own, and why


@dataclass(frozen=True, slots=True)
class Start:
    """Run the task in this lane (the slot is recorded as held, DEPLOYING). A lane
    index the TaskManager has no process for yet is a new one: start it."""

    lane: int


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
    """Ask the lane's process to cancel; kill it if it has not ended in time."""

    lane: int


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
    """Slots of one worker, the lanes running their tasks, and the final states of
    recently ended attempts."""

    def __init__(self, slots: int, remember_ended: int = 10_000) -> None:
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        self._size = slots
        # Lane i < slots: slot i's own process; beyond: extra lanes of shared slots.
        self._lanes: list[SlotEntry | None] = [None] * slots
        # Bounded: enough to answer a late CancelTask or a resent DeployTask.
        self._ended: OrderedDict[ev.TaskRef, ES] = OrderedDict()
        self._remember = remember_ended

    @property
    def size(self) -> int:
        """The number of slots (what the worker registers with)."""
        return self._size

    @property
    def lanes(self) -> int:
        """The number of lanes so far (at least one per slot)."""
        return len(self._lanes)

    def entry(self, lane: int) -> SlotEntry | None:
        return self._lanes[lane]

    def lane_of(self, task: ev.TaskRef) -> int | None:
        for lane, entry in enumerate(self._lanes):
            if entry is not None and entry.task == task:
                return lane
        return None

    def _held(self, slot_index: int) -> list[SlotEntry]:
        return [e for e in self._lanes if e is not None and e.slot_index == slot_index]

    def free_slots(self) -> int:
        held = {e.slot_index for e in self._lanes if e is not None}
        return self._size - len(held)

    def running(self) -> tuple[ev.RunningTask, ...]:
        """Every attempt still holding a slot, for registration."""
        return tuple(
            ev.RunningTask(task=entry.task, slot_index=entry.slot_index, state=entry.state)
            for entry in self._lanes
            if entry is not None
        )

    def deploy(self, task: ev.TaskRef, slot_index: int) -> DeployDecision:
        here = self.lane_of(task)
        if here is not None:
            entry = self._lanes[here]
            assert entry is not None
            return AlreadyHere(entry.state)
        if task in self._ended:
            return AlreadyHere(self._ended[task])
        if not 0 <= slot_index < self._size:
            return Reject(
                errors.NoSuchSlotError(
                    f"slot {slot_index} does not exist: this worker has {self._size} slots"
                )
            )
        for entry in self._lanes:
            if entry is not None and _subtask(entry.task) == _subtask(task):
                return Reject(
                    errors.SlotBusyError(
                        f"attempt {entry.task.attempt} of this subtask still runs in slot "
                        f"{entry.slot_index}"
                    )
                )
        for occupant in self._held(slot_index):
            # Shared only by tasks of one job, one per vertex (the coordinator's rule).
            if occupant.task.job_id != task.job_id or occupant.task.vertex_id == task.vertex_id:
                return Reject(
                    errors.SlotBusyError(
                        f"slot {slot_index} runs {task_name(occupant.task)} ({occupant.state})"
                    )
                )
        lane = self._free_lane(slot_index)
        self._lanes[lane] = SlotEntry(task, ES.DEPLOYING, slot_index)
        return Start(lane)

    def add_lane(self) -> int:
        """A new idle extra lane (a spare, started before a shared slot needs it)."""
        self._lanes.append(None)
        return len(self._lanes) - 1

    def idle_extra_lanes(self) -> int:
        """Extra lanes running nothing: what the next tasks sharing a slot will take."""
        return sum(1 for entry in self._lanes[self._size :] if entry is None)

    def _free_lane(self, slot_index: int) -> int:
        """The slot's own lane if idle, else the first idle extra lane, else a new one."""
        if self._lanes[slot_index] is None:
            return slot_index
        for lane in range(self._size, len(self._lanes)):
            if self._lanes[lane] is None:
                return lane
        self._lanes.append(None)
        return len(self._lanes) - 1

    def cancel(self, task: ev.TaskRef) -> CancelDecision:
        here = self.lane_of(task)
        if here is not None:
            entry = self._lanes[here]
            assert entry is not None
            entry.cancel_requested = True
            return CancelRunning(here)
        if task in self._ended:
            return AlreadyEnded(self._ended[task])
        return UnknownTask()

    def cancel_all(self, reason: str) -> list[CancelRunning]:
        """Stop every running task on the worker's own decision (leader not heard,
        declared lost, shutdown): each attempt will end FAILED with `reason`, except
        those the coordinator had asked to cancel already (CANCELED, as it expects)."""
        out = []
        for lane, entry in enumerate(self._lanes):
            if entry is not None:
                if not entry.cancel_requested:
                    entry.cancel_requested = True
                    entry.stop_reason = reason
                out.append(CancelRunning(lane))
        return out

    def record(self, lane: int, task: ev.TaskRef, state: ES) -> Report | None:
        """A lane's process reported `state` for `task`. The report to send when it
        is news; None for a task no longer in that lane (a late message from a
        replaced process) or a state that does not move forward."""
        entry = self._lanes[lane]
        if entry is None or entry.task != task:
            return None
        if state.is_terminal:
            return self._end(lane, state)
        if state not in _ORDER or _ORDER[state] <= _ORDER.get(entry.state, 0):
            return None
        entry.state = state
        return Report(state)

    def process_died(self, lane: int) -> tuple[ev.TaskRef, Report] | None:
        """The lane's process exited without a final report: the attempt ends
        CANCELED if a cancel was asked for (we killed it), else FAILED."""
        entry = self._lanes[lane]
        if entry is None:
            return None
        state = ES.CANCELED if entry.cancel_requested else ES.FAILED
        return entry.task, self._end(lane, state)

    def _end(self, lane: int, state: ES) -> Report:
        entry = self._lanes[lane]
        assert entry is not None
        report = Report(state)
        if state is ES.CANCELED and entry.stop_reason is not None:
            report = Report(ES.FAILED, entry.stop_reason)
        self._lanes[lane] = None
        self._ended[entry.task] = report.state
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)
        return report
