"""The coordinator's spans and metrics, recorded at the runtime edge (docs/observability.md).

Only what a leader itself commits is traced: events it read while catching up
(replay, on any replica) never start or end a span, and standbys trace nothing.
Spans (ids from ``telemetry.ids``, so any leader names the same trace for a job):

- ``job.submit``: the job's root span, from its JobAccepted until the job is
  RUNNING and every task of that first deployment runs (or the job ends first);
- ``task.deploy``: one per DeployTask, a child of ``job.submit``, until the
  attempt is RUNNING (or ends); the DeployTask record carries its context in a
  ``traceparent`` header, so the worker's ``worker.deploy`` span is its child;
- ``checkpoint``: CheckpointTriggered to CheckpointCompleted or Aborted, the
  root of a trace of its own, linked to the job's span; TriggerCheckpoint
  records carry its context to the workers' ``worker.checkpoint`` spans;
- ``leader.failover`` (``leader.takeover`` for the first epoch): from winning
  the lease (the previous leader lost it) until the new leader decides inputs.

Metrics are read from the replica when exported (observable gauges) or counted
as the leader commits. Every entry point contains its own exceptions: telemetry
never stops a leader.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, Status, StatusCode

from coordinator.runtime import machine
from schemas import events as ev
from schemas.events import ReplicaRole
from schemas.telemetry import ids
from schemas.telemetry.contained import contained
from schemas.telemetry.process import resident_bytes
from schemas.telemetry.providers import Telemetry

if TYPE_CHECKING:
    from coordinator.runtime.outbox import Record
    from coordinator.runtime.replica import Replica

log = logging.getLogger(__name__)


def _ns(ms: int) -> int:
    return ms * 1_000_000


TaskKey = tuple[str, str, int, int]


def _key(task: ev.TaskRef) -> TaskKey:
    return task.job_id, task.vertex_id, task.subtask_index, task.attempt


def _task_attributes(task: ev.TaskRef) -> dict[str, Any]:
    return {"jm.job.id": task.job_id, "jm.task.vertex": task.vertex_id,
            "jm.task.subtask": task.subtask_index, "jm.task.attempt": task.attempt}  # fmt: skip


class CoordinatorInstruments:
    """The process's instruments; gauges read `replica` when the exporter asks."""

    def __init__(self, otel: Telemetry, replica: Replica) -> None:
        self.replica = replica
        meter = otel.meter
        self.events_applied = meter.create_counter(
            "jm.journal.events_applied", unit="{event}",
            description="journal events the leader decided and committed, by event type",
        )  # fmt: skip
        self.dead_letters = meter.create_counter(
            "jm.dead_letters", unit="{record}", description="dead letters written, by reason"
        )
        self.rejected_inputs = meter.create_counter(
            "jm.inputs.rejected", unit="{input}",
            description="inputs rejected (JobRejected, InputRejected), by event type",
        )  # fmt: skip
        self.transaction_duration = meter.create_histogram(
            "jm.transaction.duration", unit="ms",
            description="one leader transaction, begin to commit, by what it carried",
        )  # fmt: skip
        gauges: list[tuple[str, str, str, Callable[[], Iterable[Observation]]]] = [
            ("jm.replica.journal_lag", "{offset}", "journal end offset minus this "
             "replica's position (0 on the leader)", self._lag),
            ("jm.leader.epoch", "{epoch}", "the leader epoch this replica knows", self._epoch),
            ("jm.jobs", "{job}", "jobs in memory, by status", self._jobs),
            ("jm.tasks", "{task}", "subtasks of jobs in memory, by execution state", self._tasks),
            ("jm.worker.heartbeat_age", "ms", "time since each worker's latest heartbeat",
             self._heartbeat_ages),
            ("jm.process.memory", "By", "resident memory of this process", self._memory),
            ("jm.state.size", "{entry}", "entries of the replicated state, by kind",
             self._state_size),
        ]  # fmt: skip
        for name, unit, description, read in gauges:
            meter.create_observable_gauge(
                name, callbacks=[self._guarded(read)], unit=unit, description=description
            )

    def _guarded(
        self, read: Callable[[], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """Nothing while the replica replays history; never an exception (the exporter
        thread reads state the event loop may be changing: skip that read)."""

        def callback(_: CallbackOptions) -> Iterable[Observation]:
            replica = self.replica
            if replica.role in (ReplicaRole.STARTING, ReplicaRole.STOPPED) or replica.replaying:
                return []
            try:
                return list(read())
            except Exception:
                return []

        return callback

    def _attrs(self, **more: Any) -> dict[str, Any]:
        return {"jm.replica": self.replica.replica_id, **more}

    def _lag(self) -> Iterable[Observation]:
        yield Observation(self.replica.last_lag, self._attrs())

    def _epoch(self) -> Iterable[Observation]:
        yield Observation(machine.epoch(self.replica.follower.state), self._attrs())

    def _jobs(self) -> Iterable[Observation]:
        counts = Counter(job.status for job in list(self.replica.follower.state.jobs.values()))
        for status in ev.JobStatus:
            yield Observation(counts.get(status, 0), self._attrs(status=str(status)))

    def _tasks(self) -> Iterable[Observation]:
        counts: Counter[ev.ExecutionState] = Counter()
        for job in list(self.replica.follower.state.jobs.values()):
            counts.update(e.state for e in list(job.executions.values()))
        for state in ev.ExecutionState:
            yield Observation(counts.get(state, 0), self._attrs(state=str(state)))

    def _heartbeat_ages(self) -> Iterable[Observation]:
        now = self.replica.clock.wall_ms()
        for worker in self.replica.metrics.workers():
            yield Observation(max(0, now - worker.received_ms), self._attrs(worker=worker.tm_id))

    def _memory(self) -> Iterable[Observation]:
        yield Observation(resident_bytes(), self._attrs())

    def _state_size(self) -> Iterable[Observation]:
        state = self.replica.follower.state
        jobs = list(state.jobs.values())
        sizes = {"jobs": len(jobs), "subtasks": sum(len(j.executions) for j in jobs),
                 "workers": len(state.workers), "ended_jobs": len(state.ended_jobs)}  # fmt: skip
        for kind, size in sizes.items():
            yield Observation(size, self._attrs(kind=kind))


class LeaderTelemetry:
    """The spans and counters of one term; built by the replica for each Leader."""

    def __init__(self, otel: Telemetry, instruments: CoordinatorInstruments,
                 cluster_id: str, replica_id: str) -> None:  # fmt: skip
        self.tracer = otel.tracer
        self.instruments = instruments
        self.cluster_id = cluster_id
        self.replica_id = replica_id
        self.epoch = 0
        self._jobs: dict[str, Span] = {}
        self._job_running: set[str] = set()
        self._deploys: dict[TaskKey, Span] = {}
        self._deploying: Counter[str] = Counter()  # open task.deploy spans per job
        self._checkpoints: dict[tuple[str, int], Span] = {}

    # ------------------------------------------------------------- headers

    @contained
    def headers(self, command: ev.WorkerCommand) -> list[tuple[str, bytes]] | None:
        """The ``traceparent`` a command record carries, if it starts work on a worker."""
        cluster = self.cluster_id
        if isinstance(command, ev.DeployTask):
            t = command.task
            span = ids.deploy_span(cluster, t.job_id, t.vertex_id, t.subtask_index, t.attempt)
            return [ids.traceparent(ids.job_trace(cluster, t.job_id), span)]
        if isinstance(command, ev.TriggerCheckpoint):
            job_id, checkpoint_id = command.task.job_id, command.checkpoint_id
            trace = ids.checkpoint_trace(cluster, job_id, checkpoint_id)
            return [ids.traceparent(trace, ids.checkpoint_span(cluster, job_id, checkpoint_id))]
        return None

    # ------------------------------------------------------------ takeover

    @contained
    def took_over(self, epoch: int, previous_epoch: int, previous_leader: str | None,
                  steps: Sequence[tuple[str, int]], end_ms: int) -> None:  # fmt: skip
        """The takeover span: `steps` are (what, wall ms), the first when the lease was won."""
        self.epoch = epoch
        name = "leader.failover" if previous_epoch > 0 else "leader.takeover"
        start = steps[0][1]
        attributes: dict[str, Any] = {"jm.replica": self.replica_id, "jm.epoch": epoch,
                      "jm.previous_epoch": previous_epoch,
                      "jm.previous_leader": previous_leader or ""}  # fmt: skip
        span = self.tracer.start_span(name, context=Context(), start_time=_ns(start),
                                      attributes=attributes)  # fmt: skip
        for what, at in steps:
            span.add_event(what, timestamp=_ns(at))
        span.end(end_time=_ns(max(end_ms, start)))

    # ------------------------------------------------------------- commits

    @contained
    def transaction(self, what: str, duration_ms: float) -> None:
        self.instruments.transaction_duration.record(duration_ms, {"what": what})

    @contained
    def committed(self, journal: Sequence[Record], commands: Sequence[Record],
                  dead_letters: Sequence[Record]) -> None:  # fmt: skip
        """What one transaction made true: spans start and end, counters grow."""
        applied: Counter[str] = Counter()
        for record in commands:
            if isinstance(record.event, ev.DeployTask):
                self._deploy_started(record.event)
        for record in journal:
            event = record.event
            applied[type(event).__name__] += 1
            self._journaled(event)
        for kind, count in applied.items():
            self.instruments.events_applied.add(count, {"event": kind})
        for record in dead_letters:
            if isinstance(record.event, ev.DeadLetter):
                self.instruments.dead_letters.add(1, {"reason": record.event.error_kind})

    def _journaled(self, event: ev.Event) -> None:
        match event:
            case ev.JobAccepted():
                self._job_accepted(event)
            case ev.JobStatusChanged():
                self._job_status(event)
            case ev.TaskStateRecorded():
                self._task_state(event)
            case ev.CheckpointTriggered():
                self._checkpoint_triggered(event)
            case ev.CheckpointCompleted() | ev.CheckpointAborted():
                self._checkpoint_ended(event)
            case ev.JobRejected() | ev.InputRejected():
                self.instruments.rejected_inputs.add(1, {"event": type(event).__name__})
            case _:
                pass

    def _job_accepted(self, event: ev.JobAccepted) -> None:
        job_id = event.submission.job_id
        cluster = self.cluster_id
        trace, span_id = ids.job_trace(cluster, job_id), ids.job_span(cluster, job_id)
        attributes: dict[str, Any] = {"jm.job.id": job_id, "jm.job.name": event.submission.name,
                      "jm.epoch": self.epoch, "jm.replica": self.replica_id,
                      "jm.submission.event_id": event.submission.event_id}  # fmt: skip
        with ids.pinned(trace, span_id):
            span = self.tracer.start_span(
                "job.submit", context=Context(), start_time=_ns(event.event_time),
                attributes=attributes,
            )  # fmt: skip
        span.add_event("JobAccepted", timestamp=_ns(event.event_time))
        self._jobs[job_id] = span

    def _job_status(self, event: ev.JobStatusChanged) -> None:
        span = self._jobs.get(event.job_id)
        if span is None:
            return
        span.add_event(f"JobStatusChanged {event.to_status}", timestamp=_ns(event.event_time))
        if event.to_status is ev.JobStatus.RUNNING:
            self._job_running.add(event.job_id)
            self._maybe_end_job(event.job_id, event.event_time)
        elif event.to_status.is_globally_terminal or event.to_status is ev.JobStatus.FAILING:
            if event.to_status is not ev.JobStatus.FINISHED:
                span.set_status(Status(StatusCode.ERROR, f"job {event.to_status} before running"))
            self._end_job(event.job_id, event.event_time, str(event.to_status))

    def _maybe_end_job(self, job_id: str, at_ms: int) -> None:
        if job_id in self._job_running and not self._deploying[job_id]:
            self._end_job(job_id, at_ms, "RUNNING")

    def _end_job(self, job_id: str, at_ms: int, outcome: str) -> None:
        span = self._jobs.pop(job_id, None)
        self._job_running.discard(job_id)
        if span is not None:
            span.set_attribute("jm.job.outcome", outcome)
            span.end(end_time=_ns(at_ms))

    def _deploy_started(self, command: ev.DeployTask) -> None:
        t = command.task
        key = _key(t)
        if key in self._deploys:
            return
        cluster = self.cluster_id
        parent = ids.as_parent(
            ids.span_context(ids.job_trace(cluster, t.job_id), ids.job_span(cluster, t.job_id))
        )
        span_id = ids.deploy_span(cluster, t.job_id, t.vertex_id, t.subtask_index, t.attempt)
        attributes = {**_task_attributes(t), "jm.worker": command.tm_id,
                      "jm.slot": command.slot_index, "jm.operator": command.operator}  # fmt: skip
        with ids.pinned(None, span_id):
            self._deploys[key] = self.tracer.start_span(
                "task.deploy", context=parent, start_time=_ns(command.event_time),
                attributes=attributes,
            )  # fmt: skip
        self._deploying[t.job_id] += 1

    def _task_state(self, event: ev.TaskStateRecorded) -> None:
        key = _key(event.task)
        span = self._deploys.get(key)
        if span is None:
            return
        span.add_event(f"TaskStateRecorded {event.state}", timestamp=_ns(event.event_time))
        if event.state is ev.ExecutionState.RUNNING or event.state.is_terminal:
            if event.state is ev.ExecutionState.FAILED:
                span.set_status(Status(StatusCode.ERROR, event.error_name or "FAILED"))
            del self._deploys[key]
            self._deploying[key[0]] -= 1
            if not self._deploying[key[0]]:
                del self._deploying[key[0]]
            span.end(end_time=_ns(event.event_time))
            self._maybe_end_job(event.task.job_id, event.event_time)

    def _checkpoint_triggered(self, event: ev.CheckpointTriggered) -> None:
        cluster, job_id, cid = self.cluster_id, event.job_id, event.checkpoint_id
        job = ids.span_context(ids.job_trace(cluster, job_id), ids.job_span(cluster, job_id))
        attributes: dict[str, Any] = {"jm.job.id": job_id, "jm.checkpoint.id": cid,
                      "jm.checkpoint.kind": str(event.kind)}  # fmt: skip
        with ids.pinned(ids.checkpoint_trace(cluster, job_id, cid),
                        ids.checkpoint_span(cluster, job_id, cid)):  # fmt: skip
            self._checkpoints[(job_id, cid)] = self.tracer.start_span(
                "checkpoint", context=Context(), start_time=_ns(event.event_time),
                attributes=attributes, links=[Link(job, {"jm.link": "job"})],
            )  # fmt: skip

    def _checkpoint_ended(self, event: ev.CheckpointCompleted | ev.CheckpointAborted) -> None:
        span = self._checkpoints.pop((event.job_id, event.checkpoint_id), None)
        if span is None:
            return
        if isinstance(event, ev.CheckpointCompleted):
            span.set_attribute("jm.checkpoint.state_size", event.state_size)
            span.set_attribute("jm.checkpoint.outcome", "COMPLETED")
        else:
            span.set_attribute("jm.checkpoint.outcome", "ABORTED")
            span.set_status(Status(StatusCode.ERROR, machine.clip(event.reason, 200)))
        span.end(end_time=_ns(event.event_time))
