"""Messages between the TaskManager and its slot processes (pickled over a Pipe).

Both sides are the same version of this package, so pickling is safe here; it
never crosses a process that is not our own child.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import events as ev
from worker.checkpointing import Acked, Declined
from worker.operators.api import TaskSpec

# TaskManager -> slot process


@dataclass(frozen=True, slots=True)
class RunTask:
    spec: TaskSpec
    #: the directory of the job's installed user code (worker/usercode.py), if any
    code: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRun:
    task: ev.TaskRef


@dataclass(frozen=True, slots=True)
class TriggerRun:
    """Checkpoint `checkpoint_id` at this (source) task; answered by Acked or Declined."""

    task: ev.TaskRef
    checkpoint_id: int


@dataclass(frozen=True, slots=True)
class NotifyRun:
    """Checkpoint `checkpoint_id` completed (or, `completed` false, was aborted):
    the task passes it on to its operator (an exactly-once sink commits then)."""

    task: ev.TaskRef
    checkpoint_id: int
    completed: bool


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Exit once the current task (if any) is gone."""


ToSlot = RunTask | CancelRun | TriggerRun | NotifyRun | Shutdown

# slot process -> TaskManager


@dataclass(frozen=True, slots=True)
class Ready:
    """The process has imported everything and waits for tasks."""

    pid: int


@dataclass(frozen=True, slots=True)
class StateUpdate:
    task: ev.TaskRef
    state: ev.ExecutionState
    error_name: str | None = None
    error_stack: str | None = None
    non_recoverable: bool = False


@dataclass(frozen=True, slots=True)
class MetricsUpdate:
    """The latest counters of the running task (worker/metrics.py)."""

    sample: ev.TaskIoMetrics


FromSlot = Ready | StateUpdate | MetricsUpdate | Acked | Declined
