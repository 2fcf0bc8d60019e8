"""What the read endpoints answer, built from a job, a worker and the metrics store.

Pure functions of the folded state (and the volatile metrics): no aiohttp, no
Kafka. ``reads`` serves them; ``/jobs/{id}/state`` builds the same views of a
past state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

from coordinator.commands import present
from coordinator.domain.state import Execution, Job, SubtaskKey, Worker
from coordinator.rest import models as m
from coordinator.runtime.metrics import MetricsStore, TaskMetrics
from schemas.events import (
    ArtifactRef,
    ExecutionState,
    JobStatus,
    RestartStrategy,
    RestartStrategyKind,
)

#: What ``/config`` and ``/overview`` give as Flink's version fields.
VERSION: Final = "kafka-jobmanager-0.1"
#: Flink's ExecutionState names, in Flink's order (the keys of a vertex's ``tasks``).
EXECUTION_STATES: Final = tuple(s.value for s in ExecutionState)

#: Aggregated subtask metrics (``.../subtasks/metrics?get=``): Flink's names. The
#: workers report counters since each attempt started; a rate is the counter over
#: the attempt's accounted time (busy + idle + backpressured), so these are
#: averages over the attempt, not Flink's one-minute rates.
SUBTASK_METRICS: Final = (
    "numRecordsIn",
    "numRecordsOut",
    "numBytesIn",
    "numBytesOut",
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
    "busyTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "accumulatedBusyTime",
    "accumulatedIdleTime",
    "accumulatedBackPressuredTime",
)


def _per_second(count: int, t: TaskMetrics) -> float:
    elapsed = t.busy_ms + t.idle_ms + t.backpressured_ms
    return count * 1000 / elapsed if elapsed else 0.0


def subtask_metric(name: str, t: TaskMetrics) -> float:
    """One of SUBTASK_METRICS for one subtask's counters."""
    values: dict[str, float] = {
        "numRecordsIn": t.read_records,
        "numRecordsOut": t.write_records,
        "numBytesIn": t.read_bytes,
        "numBytesOut": t.write_bytes,
        "numRecordsInPerSecond": _per_second(t.read_records, t),
        "numRecordsOutPerSecond": _per_second(t.write_records, t),
        "busyTimeMsPerSecond": _per_second(t.busy_ms, t),
        "idleTimeMsPerSecond": _per_second(t.idle_ms, t),
        "backPressuredTimeMsPerSecond": _per_second(t.backpressured_ms, t),
        "accumulatedBusyTime": t.busy_ms,
        "accumulatedIdleTime": t.idle_ms,
        "accumulatedBackPressuredTime": t.backpressured_ms,
    }
    return values[name]


def io_metrics(samples: Iterable[TaskMetrics]) -> m.IOMetrics:
    """Flink's vertex/subtask metrics: the sum over `samples` (zero when none)."""
    total = sum(samples, TaskMetrics())
    return m.IOMetrics(
        read_bytes=total.read_bytes,
        write_bytes=total.write_bytes,
        read_records=total.read_records,
        write_records=total.write_records,
        accumulated_backpressured_time=total.backpressured_ms,
        accumulated_idle_time=total.idle_ms,
        accumulated_busy_time=total.busy_ms,
    )


def current_samples(job: Job, metrics: MetricsStore) -> dict[SubtaskKey, TaskMetrics]:
    """The latest metrics of each subtask's current attempt (older attempts' ignored)."""
    found: dict[SubtaskKey, TaskMetrics] = {}
    for t in metrics.tasks_of_job(job.job_id):
        key = (t.vertex_id, t.subtask)
        execution = job.executions.get(key)
        if execution is not None and execution.attempt == t.attempt:
            found[key] = t.metrics
    return found


def vertex_status(counts: Counter[str], total: int) -> str:
    """A vertex's state from its subtasks' (Flink's aggregate job vertex state)."""
    if total == 0:
        return ExecutionState.CREATED.value
    for state, n in counts.items():
        if n == total:
            return state
    for state in (
        "FAILED",
        "CANCELING",
        "CANCELED",
        "RUNNING",
        "INITIALIZING",
        "DEPLOYING",
        "SCHEDULED",
        "RECONCILING",
    ):
        if counts.get(state):
            return state
    return ExecutionState.CREATED.value


def span(executions: list[Execution], now: int) -> tuple[int, int, int]:
    """(start, end, duration) of a group of subtasks: the first leaving CREATED, the
    last ending once all did; -1 where not known yet (Flink's convention)."""
    started = [e.since for e in executions if e.state is not ExecutionState.CREATED]
    if not started:
        return -1, -1, -1
    start = min(started)
    ended = all(e.state.is_terminal for e in executions)
    end = max(e.since for e in executions) if ended else -1
    return start, end, (now if end == -1 else end) - start


def last_modification(job: Job) -> int:
    """When anything of `job` last changed (its status or one of its subtasks)."""
    return max((e.since for e in job.executions.values()), default=job.status_since)


def job_span(job: Job, now: int) -> tuple[int, int, int]:
    end = job.status_since if job.status.is_globally_terminal else -1
    return job.accepted_at, end, (now if end == -1 else end) - job.accepted_at


def task_counts(job: Job) -> m.JobTaskCounts:
    counts = Counter(e.state.value.lower() for e in job.executions.values())
    return m.JobTaskCounts(total=len(job.executions), **counts)


def job_details(job: Job, now: int) -> m.JobDetails:
    start, end, duration = job_span(job, now)
    return m.JobDetails(
        jid=job.job_id,
        name=job.submission.name,
        start_time=start,
        end_time=end,
        duration=duration,
        state=job.status.value,
        last_modification=max(job.status_since, last_modification(job)),
        tasks=task_counts(job),
    )


def in_acceptance_order(jobs: Mapping[str, Job]) -> list[Job]:
    """Jobs as Flink lists them: in the order they were accepted."""
    return sorted(jobs.values(), key=lambda j: j.accepted_seq)


class JobsOverviewCache:
    """The rows of ``/jobs/overview`` as JSON, built once per version of the state (a
    busy request rate on a cluster of many jobs neither rebuilds nor re-serializes
    1,000 rows each time); only the duration of a job still running moves with the
    clock, and it is written into each answer. Like Flink's cache of execution graphs
    for its REST handlers, but exact: any change of the state rebuilds the rows."""

    _MARK: Final = -9_007_199_254_740_991  # stands for a running job's duration

    def __init__(self) -> None:
        self._version = -1
        self._ended: list[str | None] = []  # a row's JSON, None while it runs
        self._running: list[tuple[int, str, str]] = []  # (start, before, after)

    def json_rows(self, jobs: Mapping[str, Job], version: int, now: int) -> str:
        """The rows of `jobs` in acceptance order as a JSON list; `version` changes
        whenever they may have."""
        if version != self._version:
            self._build(jobs, now)
            self._version = version
        running = iter(self._running)
        parts = []
        for ended in self._ended:
            if ended is None:
                start, before, after = next(running)
                parts.append(f"{before}{now - start}{after}")
            else:
                parts.append(ended)
        return "[" + ",".join(parts) + "]"

    def _build(self, jobs: Mapping[str, Job], now: int) -> None:
        self._ended, self._running = [], []
        mark = str(self._MARK)
        for job in in_acceptance_order(jobs):
            row = job_details(job, now)
            if row.end_time != -1:
                self._ended.append(row.model_dump_json(by_alias=True))
                continue
            text = row.model_copy(update={"duration": self._MARK}).model_dump_json(by_alias=True)
            before, after = text.split(mark, 1)
            self._ended.append(None)
            self._running.append((row.start_time, before, after))


def dashboard_config(*, refresh_ms: int, cancel: bool, history: bool) -> m.DashboardConfig:
    """Flink's ``/config`` (the coordinator's, and the history server's)."""
    return m.DashboardConfig(
        refresh_interval=refresh_ms,
        timezone_name="Coordinated Universal Time",
        timezone_offset=0,
        flink_version=VERSION,
        flink_revision="",
        features=m.Features(
            web_submit=False, web_cancel=cancel, web_rescale=False, web_history=history
        ),
    )


def restart_description(r: RestartStrategy) -> str:
    """A job's restart strategy in words, as Flink's job config shows it."""
    if r.kind is RestartStrategyKind.FIXED_DELAY:
        return f"Restart with fixed delay ({r.delay_ms} ms). #{r.attempts} restart attempts."
    if r.kind is RestartStrategyKind.FAILURE_RATE:
        return (f"Failure rate restart with maximum of {r.max_failures_per_interval} failures "
                f"within interval {r.failure_rate_interval_ms} ms and fixed delay "
                f"{r.delay_ms} ms.")  # fmt: skip
    if r.kind is RestartStrategyKind.EXPONENTIAL_DELAY:
        return (f"Restart with exponential delay: initial {r.initial_backoff_ms} ms, max "
                f"{r.max_backoff_ms} ms, multiplier {r.backoff_multiplier}, jitter "
                f"{r.jitter_factor}, reset after {r.reset_backoff_threshold_ms} ms.")  # fmt: skip
    return "Restart deactivated."


def plan(job: Job) -> m.Plan:
    graph = job.submission.job_graph
    inputs: dict[str, list[m.PlanInput]] = {}
    for edge in graph.edges:
        targets = inputs.setdefault(edge.target, [])
        targets.append(
            m.PlanInput(
                num=len(targets),
                id=edge.source,
                ship_strategy=edge.partitioning.value,
                exchange="pipelined_bounded",
            )
        )
    return m.Plan(
        jid=job.job_id,
        name=job.submission.name,
        type="STREAMING",
        nodes=[
            m.PlanNode(
                id=v.id,
                parallelism=v.parallelism,
                operator=v.operator,
                operator_strategy="",
                description=v.name,
                inputs=inputs.get(v.id, []),
            )
            for v in graph.vertices
        ],
    )


def _artifact(ref: ArtifactRef | None) -> m.JobArtifact | None:
    if ref is None:
        return None
    return m.JobArtifact(sha256=ref.sha256, size=ref.size, name=ref.name, version=ref.version,
                         filename=ref.filename, operators=list(ref.operators),
                         functions=list(ref.functions))  # fmt: skip


def job_detail(job: Job, offset: int, now: int, metrics: MetricsStore) -> m.JobDetail:
    """Flink's ``/jobs/{id}`` of `job` (also the point-in-time view's)."""
    samples = current_samples(job, metrics)
    vertices = []
    for v in job.submission.job_graph.vertices:
        keys = [(v.id, i) for i in range(v.parallelism)]
        executions = [job.executions[k] for k in keys if k in job.executions]
        counts = Counter(e.state.value for e in executions)
        start, end, duration = span(executions, now)
        vertices.append(
            m.JobVertexSummary(
                id=v.id,
                name=v.name,
                max_parallelism=v.max_parallelism,
                parallelism=v.parallelism,
                status=vertex_status(counts, len(executions)),
                start_time=start,
                end_time=end,
                duration=duration,
                tasks={s: counts.get(s, 0) for s in EXECUTION_STATES},
                metrics=io_metrics(samples[k] for k in keys if k in samples),
            )
        )
    start, end, duration = job_span(job, now)
    all_counts = Counter(e.state.value for e in job.executions.values())
    timestamps = {s.value: 0 for s in JobStatus}
    timestamps[JobStatus.INITIALIZING.value] = job.accepted_at
    timestamps[JobStatus.CREATED.value] = job.accepted_at
    timestamps[job.status.value] = job.status_since
    return m.JobDetail(
        journal_offset=offset,
        jid=job.job_id,
        name=job.submission.name,
        is_stoppable=False,
        state=job.status.value,
        job_type="STREAMING",
        start_time=start,
        end_time=end,
        duration=duration,
        max_parallelism=max(
            (v.max_parallelism for v in job.submission.job_graph.vertices), default=-1
        ),
        now=now,
        timestamps=timestamps,
        vertices=vertices,
        status_counts={s: all_counts.get(s, 0) for s in EXECUTION_STATES},
        plan=plan(job),
        waiting_reason=job.waiting_reason,
        restarts=job.restart_count,
        artifact=_artifact(job.submission.artifact),
    )


def exception_history(job: Job, workers: Mapping[str, Worker], limit: int) -> m.JobExceptions:
    """Flink's ``/jobs/{id}/exceptions``: the latest `limit` failures, newest first."""
    names = {v.id: v.name for v in job.submission.job_graph.vertices}
    hosts = {w.tm_id: w.host for w in workers.values()}
    latest = list(reversed(job.exceptions))
    entries = [
        m.ExceptionHistoryEntry(
            exception_name=x.error_name,
            stacktrace=x.message,
            timestamp=x.timestamp,
            task_name=None
            if x.vertex_id is None
            else f"{names.get(x.vertex_id, x.vertex_id)} ({(x.subtask_index or 0) + 1})",
            location=None if x.tm_id is None else hosts.get(x.tm_id, x.tm_id),
            endpoint=None if x.tm_id is None else hosts.get(x.tm_id, x.tm_id),
            task_manager_id=x.tm_id,
            failure_labels={},
            concurrent_exceptions=[],
        )
        for x in latest[:limit]
    ]
    history = m.ExceptionHistory(entries=entries, truncated=len(latest) > limit)
    return m.JobExceptions(exception_history=history)


def checkpoint_statistics(job: Job, offset: int) -> m.CheckpointingStatistics:
    cps = job.checkpoints
    info = present.checkpoint_statistics(cps.stats, len(cps.pending))
    return m.CheckpointingStatistics.model_validate({**info, "jm-journal-offset": offset})


def checkpoint_config(job: Job) -> m.CheckpointConfigInfo:
    c = job.submission.checkpoint_config
    retention = c.externalized_retention.value
    return m.CheckpointConfigInfo(
        mode="exactly_once",
        interval=c.interval_ms,
        timeout=c.timeout_ms,
        min_pause=c.min_pause_ms,
        max_concurrent=c.max_concurrent,
        externalization=m.Externalization(
            enabled=True, delete_on_cancellation=retention == "DELETE_ON_CANCELLATION"
        ),
        state_backend="kafka",
        checkpoint_storage="kafka",
        unaligned_checkpoints=False,
        tolerable_failed_checkpoints=c.tolerable_failures,
        aligned_checkpoint_timeout=0,
        checkpoints_after_tasks_finish=True,
        state_changelog_enabled=False,
        retained=c.retained,
    )


def taskmanager_info(
    worker: Worker, metrics: MetricsStore, now: int
) -> tuple[m.TaskManagerInfo, int | None]:
    sample = metrics.worker(worker.tm_id)
    age = None if sample is None else max(0, now - sample.received_ms)
    info = m.TaskManagerInfo(
        id=worker.tm_id,
        path=worker.host,
        data_port=-1,
        jmx_port=-1,
        time_since_last_heartbeat=0 if sample is None else sample.received_ms,
        slots_number=len(worker.slots),
        free_slots=len(worker.free_slots()),
        hardware=m.Hardware(cpu_cores=0, physical_memory=0, free_memory=0, managed_memory=0),
        incarnation=worker.incarnation,
        operators=list(worker.operators),
        version=worker.version,
        registered_at=worker.registered_at,
        heartbeat_age_ms=age,
    )
    return info, age
