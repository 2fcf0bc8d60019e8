"""Volatile task metrics: what workers report with their heartbeats.

Like heartbeats themselves, metrics are never journaled and never folded into the
replicated state, so replay stays deterministic. Every replica keeps the latest
report of each worker (a worker's heartbeat carries every task it runs, so a new
report replaces that worker's previous one); the REST API and the dashboard read
them from here. Bounded by the number of workers times their tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass


@dataclass(frozen=True)
class TaskMetrics:
    """Counters of one task attempt since it started (Flink's names in the REST API:
    read-records, write-records, read-bytes, write-bytes, accumulated-busy-time,
    accumulated-idle-time, accumulated-backpressured-time)."""

    read_records: int = 0
    write_records: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    busy_ms: int = 0
    idle_ms: int = 0
    backpressured_ms: int = 0

    def __add__(self, other: TaskMetrics) -> TaskMetrics:
        """Counter by counter: ``sum(samples, TaskMetrics())`` totals a vertex."""
        return TaskMetrics(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class TaskSample:
    """The metrics of one task attempt as reported by its worker."""

    tm_id: str
    job_id: str
    vertex_id: str
    subtask: int
    attempt: int
    metrics: TaskMetrics


@dataclass(frozen=True)
class WorkerSample:
    """The latest heartbeat of one worker, stamped with when this replica read it."""

    tm_id: str
    incarnation: str
    sequence: int
    slots_free: int
    running_tasks: int
    received_ms: int  # wall-clock milliseconds when this replica read the heartbeat


class MetricsStore:
    """Latest heartbeat and task metrics per worker (one instance per replica)."""

    def __init__(self) -> None:
        self._workers: dict[str, WorkerSample] = {}
        self._tasks: dict[str, tuple[TaskSample, ...]] = {}

    def record_heartbeat(self, worker: WorkerSample, tasks: Iterable[TaskSample]) -> None:
        """A worker's heartbeat replaces everything known of that worker."""
        self._workers[worker.tm_id] = worker
        self._tasks[worker.tm_id] = tuple(tasks)

    def forget_worker(self, tm_id: str) -> None:
        self._workers.pop(tm_id, None)
        self._tasks.pop(tm_id, None)

    def worker(self, tm_id: str) -> WorkerSample | None:
        return self._workers.get(tm_id)

    def workers(self) -> list[WorkerSample]:
        return list(self._workers.values())

    def tasks_of_worker(self, tm_id: str) -> tuple[TaskSample, ...]:
        return self._tasks.get(tm_id, ())

    def tasks_of_job(self, job_id: str) -> list[TaskSample]:
        return [t for tasks in self._tasks.values() for t in tasks if t.job_id == job_id]

    def tasks_of_vertex(self, job_id: str, vertex_id: str) -> list[TaskSample]:
        return [t for t in self.tasks_of_job(job_id) if t.vertex_id == vertex_id]
