"""Per-task I/O counters: records and bytes in and out, busy, idle and backpressured time.

``TaskCounters`` lives in the slot process and is bumped on the hot path (plain
int and float fields, no object per record): the ``EdgeReader`` counts what it
reads and the time it waits in ``getmany`` (idle), the ``EdgeWriter`` counts what
it emits and the time its producer makes it wait (backpressured: the send blocks
while the producer's buffer is full, and the final flush waits for the brokers).
Busy is the rest of the running time. A source has no edge input, so it is never
idle: time a source spends waiting (a rate limit, an external poll) counts as busy.

The slot process sends a sample to the TaskManager every ``SAMPLE_INTERVAL_S`` and
before every state report (so a FINISHED task's final counts are known);
``MetricsBook`` keeps the latest sample of every task running and of the last
ones that ended, which every heartbeat carries (schemas: ``TaskIoMetrics``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from schemas import events as ev
from schemas.limits import MAX_SLOTS_PER_WORKER, MAX_TASK_METRICS_PER_HEARTBEAT

#: How often a slot process sends its task's counters to the TaskManager.
SAMPLE_INTERVAL_S: Final = 1.0


class TaskCounters:
    """Counters of one task attempt (one instance per attempt, in its slot process)."""

    __slots__ = (
        "_clock",
        "_ended",
        "_started",
        "backpressured_s",
        "idle_s",
        "read_bytes",
        "read_records",
        "write_bytes",
        "write_records",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.read_records = 0
        self.write_records = 0
        self.read_bytes = 0
        self.write_bytes = 0
        self.idle_s = 0.0
        self.backpressured_s = 0.0
        self._clock = clock
        self._started: float | None = None
        self._ended: float | None = None

    def start(self) -> None:
        """The task runs from now on (busy time counts from here)."""
        if self._started is None:
            self._started = self._clock()

    def stop(self) -> None:
        """The task stopped running: its times no longer grow."""
        if self._started is not None and self._ended is None:
            self._ended = self._clock()

    def sample(self, task: ev.TaskRef) -> ev.TaskIoMetrics:
        running_s = 0.0
        if self._started is not None:
            running_s = (self._ended if self._ended is not None else self._clock()) - self._started
        idle_ms = int(self.idle_s * 1000)
        backpressured_ms = int(self.backpressured_s * 1000)
        return ev.TaskIoMetrics(
            task=task,
            read_records=self.read_records,
            write_records=self.write_records,
            read_bytes=self.read_bytes,
            write_bytes=self.write_bytes,
            busy_ms=max(0, int(running_s * 1000) - idle_ms - backpressured_ms),
            idle_ms=idle_ms,
            backpressured_ms=backpressured_ms,
        )


class MetricsBook:
    """The TaskManager's latest sample of each task running here and of the
    `keep_ended` tasks that ended last (bounded: a heartbeat carries them all)."""

    def __init__(self, keep_ended: int = MAX_SLOTS_PER_WORKER) -> None:
        self._keep_ended = keep_ended
        self._running: dict[ev.TaskRef, ev.TaskIoMetrics] = {}
        self._ended: OrderedDict[ev.TaskRef, ev.TaskIoMetrics] = OrderedDict()

    def update(self, sample: ev.TaskIoMetrics) -> None:
        if sample.task in self._ended:
            self._ended[sample.task] = sample
        else:
            self._running[sample.task] = sample

    def ended(self, task: ev.TaskRef) -> None:
        """`task` reached a terminal state: its last sample moves to the ended ones."""
        sample = self._running.pop(task, None)
        if sample is None:
            return
        self._ended[task] = sample
        while len(self._ended) > self._keep_ended:
            self._ended.popitem(last=False)

    def samples(self) -> tuple[ev.TaskIoMetrics, ...]:
        """What a heartbeat carries: the running tasks, then the ended ones, newest
        first, at most MAX_TASK_METRICS_PER_HEARTBEAT."""
        out = [*self._running.values(), *reversed(self._ended.values())]
        return tuple(out[:MAX_TASK_METRICS_PER_HEARTBEAT])
