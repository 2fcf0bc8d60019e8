"""Every GET: Flink's read endpoints and the cluster's own, from the replica's state.

Nothing here replays the journal per request: the handlers read the state the
replica keeps current (``RestContext.holder``) and its metrics store. Only
``/jobs/{id}/events`` (journal records) and ``/jobs/{id}/state`` (a
point-in-time replay, asked for by name) read Kafka, through ``history``.
"""

from __future__ import annotations

import platform
import resource
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import web

from coordinator.commands import present
from coordinator.commands.common import parse_time_ms
from coordinator.domain.state import Execution, Job, SubtaskKey, Worker
from coordinator.rest import models as m
from coordinator.rest.api import Route, bad_request, int_query, json_answer, not_found
from coordinator.rest.context import RestContext
from coordinator.rest.history import event_entry
from coordinator.runtime.journal import StopAt
from coordinator.runtime.metrics import MetricsStore, TaskMetrics
from schemas.events import (
    ExecutionState,
    JobStatus,
    ReplicaRole,
    RestartStrategy,
    RestartStrategyKind,
)

#: What ``/config`` and ``/overview`` give as Flink's version fields.
VERSION: Final = "kafka-jobmanager-0.1"
#: Flink's ExecutionState names, in Flink's order (the keys of a vertex's ``tasks``).
EXECUTION_STATES: Final = tuple(s.value for s in ExecutionState)
#: ``/jobs/{id}/events`` without ``limit``, and the most one request returns.
EVENTS_PAGE: Final = 100
EVENTS_PAGE_MAX: Final = 1_000

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
    total = TaskMetrics()
    for t in samples:
        total = TaskMetrics(
            total.read_records + t.read_records,
            total.write_records + t.write_records,
            total.read_bytes + t.read_bytes,
            total.write_bytes + t.write_bytes,
            total.busy_ms + t.busy_ms,
            total.idle_ms + t.idle_ms,
            total.backpressured_ms + t.backpressured_ms,
        )
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


def _span(executions: list[Execution], now: int) -> tuple[int, int, int]:
    """(start, end, duration) of a group of subtasks: -1 where not known yet."""
    if not executions:
        return -1, -1, -1
    start = min(e.since for e in executions)
    live = any(e.is_live for e in executions)
    end = -1 if live else max(e.since for e in executions)
    return start, end, (now if end == -1 else end) - start


def _job_span(job: Job, now: int) -> tuple[int, int, int]:
    end = job.status_since if job.status.is_globally_terminal else -1
    return job.accepted_at, end, (now if end == -1 else end) - job.accepted_at


def task_counts(job: Job) -> m.JobTaskCounts:
    counts = Counter(e.state.value.lower() for e in job.executions.values())
    return m.JobTaskCounts(total=len(job.executions), **counts)


def job_details(job: Job, now: int) -> m.JobDetails:
    start, end, duration = _job_span(job, now)
    return m.JobDetails(
        jid=job.job_id,
        name=job.submission.name,
        start_time=start,
        end_time=end,
        duration=duration,
        state=job.status.value,
        last_modification=max(job.status_since, *(e.since for e in job.executions.values()))
        if job.executions
        else job.status_since,
        tasks=task_counts(job),
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


def job_detail(job: Job, offset: int, now: int, metrics: MetricsStore) -> m.JobDetail:
    """Flink's ``/jobs/{id}`` of `job` (also the point-in-time view's)."""
    samples = current_samples(job, metrics)
    vertices = []
    for v in job.submission.job_graph.vertices:
        keys = [(v.id, i) for i in range(v.parallelism)]
        executions = [job.executions[k] for k in keys if k in job.executions]
        counts = Counter(e.state.value for e in executions)
        start, end, duration = _span(executions, now)
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
    start, end, duration = _job_span(job, now)
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
    )


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


def _metric_names(request: web.Request, known: Iterable[str]) -> list[str] | None:
    """The names of ``?get=a,b`` (None: no ``get``); 400 naming unknown ones."""
    raw = request.query.get("get")
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    known = set(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise bad_request(*(f"get: unknown metric {n!r}" for n in unknown))
    return names


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    def the_job(request: web.Request) -> Job:
        job_id = request.match_info["job_id"]
        job = ctx.state.jobs.get(job_id)
        if job is not None:
            return job
        ended = ctx.state.ended_jobs.get(job_id)
        if ended is not None:
            raise not_found(
                f"Job {job_id} ended {ended.final_status.value} and was archived: only its "
                f"status is kept (/jobs/{job_id}/status); its events stay in the journal "
                f"(/jobs/{job_id}/events)"
            )
        raise not_found(f"Job {job_id} not found (journal offset {ctx.offset})")

    def the_vertex(request: web.Request, job: Job) -> tuple[str, int, str, int]:
        vid = request.match_info["vertex_id"]
        for v in job.submission.job_graph.vertices:
            if v.id == vid:
                return v.id, v.parallelism, v.name, v.max_parallelism
        raise not_found(f"Vertex {vid} not found in job {job.job_id}")

    def the_worker(request: web.Request) -> Worker:
        tm_id = request.match_info["tm_id"]
        worker = ctx.state.workers.get(tm_id)
        if worker is None:
            raise not_found(f"TaskManager {tm_id} not found (journal offset {ctx.offset})")
        return worker

    async def healthz(request: web.Request) -> web.Response:
        return json_answer(m.Health(status="ok", replica_id=ctx.replica_id, role=ctx.role().value))

    async def readyz(request: web.Request) -> web.Response:
        role = ctx.role()
        lag = await ctx.lag()
        reason = None
        if role not in (ReplicaRole.LEADER, ReplicaRole.STANDBY):
            reason = f"replica is {role.value}: not following the journal yet"
        elif lag > ctx.ready_max_lag:
            reason = f"{lag} journal offsets behind (ready within {ctx.ready_max_lag})"
        answer = m.Readiness(
            journal_offset=ctx.offset,
            ready=reason is None,
            role=role.value,
            lag=lag,
            max_lag=ctx.ready_max_lag,
            reason=reason,
        )
        return json_answer(answer, 200 if reason is None else 503)

    async def config(request: web.Request) -> web.Response:
        return json_answer(
            m.DashboardConfig(
                refresh_interval=3000,
                timezone_name="Coordinated Universal Time",
                timezone_offset=0,
                flink_version=VERSION,
                flink_revision="",
                features=m.Features(
                    web_submit=False, web_cancel=True, web_rescale=False, web_history=False
                ),
            )
        )

    async def overview(request: web.Request) -> web.Response:
        state = ctx.state
        statuses = [j.status for j in state.jobs.values()]
        ended = [e.final_status for e in state.ended_jobs.values()]
        slots = [s for w in state.workers.values() for s in w.slots]

        def count(status: JobStatus) -> int:
            return statuses.count(status) + ended.count(status)

        return json_answer(
            m.ClusterOverview(
                journal_offset=ctx.offset,
                taskmanagers=len(state.workers),
                slots_total=len(slots),
                slots_available=sum(1 for s in slots if s is None),
                jobs_running=sum(1 for s in statuses if not s.is_globally_terminal),
                jobs_finished=count(JobStatus.FINISHED),
                jobs_cancelled=count(JobStatus.CANCELED),
                jobs_failed=count(JobStatus.FAILED),
                flink_version=VERSION,
                flink_commit="",
            )
        )

    async def jobs(request: web.Request) -> web.Response:
        state = ctx.state
        rows = [m.JobIdStatus(id=j.job_id, status=j.status.value) for j in _ordered(state.jobs)]
        rows += [
            m.JobIdStatus(id=i, status=e.final_status.value) for i, e in state.ended_jobs.items()
        ]
        return json_answer(m.JobIdsWithStatus(journal_offset=ctx.offset, jobs=rows))

    async def jobs_overview(request: web.Request) -> web.Response:
        now = ctx.now_ms()
        rows = [job_details(j, now) for j in _ordered(ctx.state.jobs)]
        return json_answer(m.MultipleJobsDetails(journal_offset=ctx.offset, jobs=rows))

    async def one_job(request: web.Request) -> web.Response:
        return json_answer(job_detail(the_job(request), ctx.offset, ctx.now_ms(), ctx.metrics))

    async def job_status(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        ended = ctx.state.ended_jobs.get(job_id)
        if ended is not None and job_id not in ctx.state.jobs:
            status = ended.final_status.value
        else:
            status = the_job(request).status.value
        return json_answer(m.JobStatusInfo(journal_offset=ctx.offset, status=status))

    async def job_config(request: web.Request) -> web.Response:
        job = the_job(request)
        r = job.submission.restart_strategy
        return json_answer(
            m.JobConfig(
                jid=job.job_id,
                name=job.submission.name,
                execution_config=m.ExecutionConfig(
                    execution_mode="PIPELINED",
                    restart_strategy=restart_description(r),
                    job_parallelism=max(
                        (v.parallelism for v in job.submission.job_graph.vertices), default=1
                    ),
                    object_reuse_mode=False,
                    user_config={},
                ),
            )
        )

    async def job_plan(request: web.Request) -> web.Response:
        return json_answer(m.JobPlan(plan=plan(the_job(request))))

    async def job_exceptions(request: web.Request) -> web.Response:
        job = the_job(request)
        limit = int_query(request, "maxExceptions", 10, minimum=1)
        names = {v.id: v.name for v in job.submission.job_graph.vertices}
        hosts = {w.tm_id: w.host for w in ctx.state.workers.values()}
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
        return json_answer(m.JobExceptions(exception_history=history))

    async def job_checkpoints(request: web.Request) -> web.Response:
        return json_answer(checkpoint_statistics(the_job(request), ctx.offset))

    async def job_checkpoint_config(request: web.Request) -> web.Response:
        job = the_job(request)
        if not job.submission.checkpoint_config.interval_ms:
            raise not_found(f"Checkpointing is not enabled for job {job.job_id}")
        return json_answer(checkpoint_config(job))

    async def vertex(request: web.Request) -> web.Response:
        job = the_job(request)
        vid, parallelism, name, max_parallelism = the_vertex(request, job)
        now = ctx.now_ms()
        samples = current_samples(job, ctx.metrics)
        hosts = {w.tm_id: w.host for w in ctx.state.workers.values()}
        subtasks = []
        for i in range(parallelism):
            e = job.executions.get((vid, i))
            if e is None:
                continue
            start, end, duration = _span([e], now)
            subtasks.append(
                m.SubtaskDetail(
                    subtask=i,
                    status=e.state.value,
                    attempt=e.attempt,
                    endpoint=None if e.tm_id is None else hosts.get(e.tm_id, e.tm_id),
                    start_time=start,
                    end_time=end,
                    duration=duration,
                    metrics=io_metrics([samples[(vid, i)]] if (vid, i) in samples else []),
                    taskmanager_id=e.tm_id,
                )
            )
        return json_answer(
            m.JobVertexDetail(
                journal_offset=ctx.offset,
                id=vid,
                name=name,
                max_parallelism=max_parallelism,
                parallelism=parallelism,
                now=now,
                subtasks=subtasks,
            )
        )

    async def subtask_metrics(request: web.Request) -> web.StreamResponse:
        job = the_job(request)
        vid = the_vertex(request, job)[0]
        names = _metric_names(request, SUBTASK_METRICS)
        if names is None:
            return _json_list([m.AggregatedMetric(id=n) for n in SUBTASK_METRICS])
        samples = [t for k, t in current_samples(job, ctx.metrics).items() if k[0] == vid]
        rows = []
        for n in names:
            values = [subtask_metric(n, t) for t in samples] or [0.0]
            rows.append(
                m.AggregatedMetric(
                    id=n,
                    min=min(values),
                    max=max(values),
                    avg=sum(values) / len(values),
                    sum=sum(values),
                )
            )
        return _json_list(rows)

    async def watermarks(request: web.Request) -> web.StreamResponse:
        the_vertex(request, the_job(request))
        return _json_list([])

    async def taskmanagers(request: web.Request) -> web.Response:
        now = ctx.now_ms()
        rows = [
            taskmanager_info(w, ctx.metrics, now)[0] for _, w in sorted(ctx.state.workers.items())
        ]
        return json_answer(m.TaskManagersInfo(journal_offset=ctx.offset, taskmanagers=rows))

    async def taskmanager(request: web.Request) -> web.Response:
        worker = the_worker(request)
        info, _ = taskmanager_info(worker, ctx.metrics, ctx.now_ms())
        slots = [
            m.AllocatedSlot(
                index=i,
                job_id=t and t.job_id,
                vertex_id=t and t.vertex_id,
                subtask=t and t.subtask_index,
                attempt=t and t.attempt,
            )
            for i, t in enumerate(worker.slots)
        ]
        detail = m.TaskManagerDetail(
            **info.model_dump(by_alias=False), journal_offset=ctx.offset, allocated_slots=slots
        )
        return json_answer(detail)

    def tm_metric_values(worker: Worker) -> dict[str, str]:
        sample = ctx.metrics.worker(worker.tm_id)
        tasks = ctx.metrics.tasks_of_worker(worker.tm_id)
        return {
            "Status.JVM.CPU.Load": "0",
            "jm.slots.total": str(len(worker.slots)),
            "jm.slots.free": str(len(worker.free_slots())),
            "jm.tasks.running": str(sample.running_tasks if sample else 0),
            "jm.heartbeat.sequence": str(sample.sequence if sample else -1),
            "jm.heartbeat.age-ms": str(ctx.now_ms() - sample.received_ms if sample else -1),
            "jm.records.in": str(sum(t.metrics.read_records for t in tasks)),
            "jm.records.out": str(sum(t.metrics.write_records for t in tasks)),
        }

    async def taskmanager_metrics(request: web.Request) -> web.StreamResponse:
        values = tm_metric_values(the_worker(request))
        return _metric_list(request, values)

    def jm_metric_values() -> dict[str, str]:
        state = ctx.state
        slots = [s for w in state.workers.values() for s in w.slots]
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "numRegisteredTaskManagers": str(len(state.workers)),
            "numRunningJobs": str(
                sum(1 for j in state.jobs.values() if not j.status.is_globally_terminal)
            ),
            "taskSlotsTotal": str(len(slots)),
            "taskSlotsAvailable": str(sum(1 for s in slots if s is None)),
            "Status.JVM.Memory.Heap.Used": str(rss_kb * 1024),
            "jm.journal.offset": str(ctx.offset),
            "jm.epoch": str(ctx.epoch),
            "jm.jobs.in-memory": str(len(state.jobs)),
            "jm.jobs.archived": str(len(state.ended_jobs)),
            "jm.uptime-ms": str(ctx.now_ms() - ctx.started_ms),
        }

    async def jobmanager_metrics(request: web.Request) -> web.StreamResponse:
        return _metric_list(request, jm_metric_values())

    async def jobmanager_config(request: web.Request) -> web.StreamResponse:
        return _json_list([m.ConfigEntry(key=k, value=v) for k, v in sorted(ctx.options.items())])

    async def jobmanager_environment(request: web.Request) -> web.Response:
        jvm = m.Jvm(
            version=f"Python {platform.python_version()} ({sys.implementation.name})",
            arch=platform.machine(),
            options=list(sys.argv[1:]),
        )
        return json_answer(m.Environment(jvm=jvm, classpath=list(sys.path)))

    async def jobmanager_log(request: web.Request) -> web.Response:
        if ctx.log_tail is None:
            raise not_found("this replica keeps no log lines")
        return web.Response(text=ctx.log_tail.text(), content_type="text/plain")

    async def cluster_leader(request: web.Request) -> web.Response:
        statuses = await ctx.replicas()
        now = ctx.now_ms()
        replicas = [
            m.ReplicaInfo(
                id=s.replica_id,
                role=s.role.value,
                epoch=s.epoch,
                applied_offset=s.applied_offset,
                lag=s.lag,
                age_ms=now - s.event_time,
                digest=s.digest,
                problem=s.problem,
            )
            for _, s in sorted(statuses.items())
        ]
        state = ctx.state
        return json_answer(
            m.ClusterLeader(
                journal_offset=ctx.offset,
                leader_id=state.leader_replica_id,
                epoch=state.epoch,
                leader_since=state.leader_since,
                answered_by=ctx.replica_id,
                answered_by_role=ctx.role().value,
                replicas=replicas,
            )
        )

    async def job_events(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        start = int_query(request, "from", 0)
        limit = int_query(request, "limit", EVENTS_PAGE, minimum=1)
        if limit > EVENTS_PAGE_MAX:
            raise bad_request(f"limit: at most {EVENTS_PAGE_MAX}, not {limit}")
        found, next_offset, end = await ctx.journal.job_events(job_id, start, limit)
        return json_answer(
            m.JobEvents.model_validate(
                {
                    "job-id": job_id,
                    "from": start,
                    "events": [event_entry(o, e) for o, e in found],
                    "next-offset": next_offset,
                    "end-offset": end,
                }
            )
        )

    async def job_state(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        until = request.query.get("until")
        offset = request.query.get("offset")
        if until is not None and offset is not None:
            raise bad_request("until, offset: give one of them, not both")
        until_ms = None
        if until is not None:
            try:
                until_ms = parse_time_ms(until, ctx.now_ms())
            except ValueError as err:
                raise bad_request(f"until: {err}") from None
            stop = StopAt(until_ms=until_ms)
        elif offset is not None:
            stop = StopAt(offset=int_query(request, "offset", 0) + 1)
        else:
            raise bad_request(
                "until: required (ISO 8601, epoch ms or a duration like 15m), "
                "or offset (the last journal offset to include)"
            )
        folded = await ctx.journal.state_at(stop)
        job = folded.state.jobs.get(job_id)
        ended = folded.state.ended_jobs.get(job_id)
        detail = None if job is None else job_detail(job, folded.offset, until_ms or 0, _NO_METRICS)
        return json_answer(
            m.JobStateAt(
                job_id=job_id,
                until=until_ms,
                offset=folded.offset,
                found=job is not None or ended is not None,
                archived_status=None if ended is None else ended.final_status.value,
                job=detail,
            )
        )

    job = "/jobs/{job_id}"
    vertex_path = job + "/vertices/{vertex_id}"
    tm = "/taskmanagers/{tm_id}"
    get = "GET"
    return [
        Route(get, "/healthz", healthz, "Alive (the process answers)", m.Health),
        Route(
            get, "/readyz", readyz, "Ready: caught up with the journal (503 otherwise)", m.Readiness
        ),
        Route(get, "/config", config, "Dashboard configuration (Flink)", m.DashboardConfig),
        Route(get, "/overview", overview, "Cluster overview (Flink)", m.ClusterOverview),
        Route(get, "/jobs", jobs, "Job ids and statuses (Flink)", m.JobIdsWithStatus),
        Route(
            get,
            "/jobs/overview",
            jobs_overview,
            "Jobs with task counts (Flink)",
            m.MultipleJobsDetails,
        ),
        Route(
            get, job, one_job, "One job with its vertices and their metrics (Flink)", m.JobDetail
        ),
        Route(get, job + "/status", job_status, "A job's status (Flink)", m.JobStatusInfo),
        Route(get, job + "/config", job_config, "A job's execution config (Flink)", m.JobConfig),
        Route(get, job + "/plan", job_plan, "A job's plan (Flink)", m.JobPlan),
        Route(
            get,
            job + "/exceptions",
            job_exceptions,
            "A job's exception history (Flink)",
            m.JobExceptions,
            {"maxExceptions": "entries at most (default 10)"},
        ),
        Route(
            get,
            job + "/checkpoints",
            job_checkpoints,
            "Checkpoint statistics (Flink)",
            m.CheckpointingStatistics,
        ),
        Route(
            get,
            job + "/checkpoints/config",
            job_checkpoint_config,
            "Checkpoint configuration (Flink; 404 when checkpointing is off)",
            m.CheckpointConfigInfo,
        ),
        Route(get, vertex_path, vertex, "One vertex with its subtasks (Flink)", m.JobVertexDetail),
        Route(
            get,
            vertex_path + "/subtasks/metrics",
            subtask_metrics,
            "Metrics aggregated over a vertex's subtasks (Flink; a list)",
            m.AggregatedMetric,
            {"get": "comma-separated metric names"},
            many=True,
        ),
        Route(get, vertex_path + "/watermarks", watermarks, "Watermarks (Flink; none here)"),
        Route(get, "/taskmanagers", taskmanagers, "TaskManagers (Flink)", m.TaskManagersInfo),
        Route(get, tm, taskmanager, "One TaskManager with its slots (Flink)", m.TaskManagerDetail),
        Route(
            get,
            tm + "/metrics",
            taskmanager_metrics,
            "A TaskManager's metrics (a list)",
            m.Metric,
            {"get": "comma-separated metric names"},
            many=True,
        ),
        Route(
            get,
            "/jobmanager/config",
            jobmanager_config,
            "This replica's configuration (a list; no secrets)",
            m.ConfigEntry,
            many=True,
        ),
        Route(
            get,
            "/jobmanager/environment",
            jobmanager_environment,
            "This replica's runtime",
            m.Environment,
        ),
        Route(
            get,
            "/jobmanager/metrics",
            jobmanager_metrics,
            "This replica's metrics (a list)",
            m.Metric,
            {"get": "comma-separated metric names"},
            many=True,
        ),
        Route(get, "/jobmanager/log", jobmanager_log, "This replica's latest log lines (text)"),
        Route(
            get,
            "/cluster/leader",
            cluster_leader,
            "The leader, its epoch, and every replica's applied offset and lag",
            m.ClusterLeader,
        ),
        Route(
            get,
            job + "/events",
            job_events,
            "A job's journal events, paged by offset",
            m.JobEvents,
            {
                "from": "first journal offset (default 0)",
                "limit": f"events at most (default {EVENTS_PAGE})",
            },
        ),
        Route(
            get,
            job + "/state",
            job_state,
            "The job as it was at a point in time (a replay of the journal)",
            m.JobStateAt,
            {
                "until": "ISO 8601, epoch ms, or a duration back like 15m",
                "offset": "the last journal offset to include",
            },
        ),
    ]


_NO_METRICS: Final = MetricsStore()


def _ordered(jobs: dict[str, Job]) -> list[Job]:
    return sorted(jobs.values(), key=lambda j: j.accepted_seq)


def _json_list(rows: Sequence[m.Model]) -> web.Response:
    """A JSON list of models (Flink answers some reads with a bare list); fields that
    are None are left out (a metric listed without its value)."""
    body = "[" + ",".join(r.model_dump_json(by_alias=True, exclude_none=True) for r in rows) + "]"
    return web.Response(text=body, content_type="application/json")


def _metric_list(request: web.Request, values: dict[str, str]) -> web.Response:
    names = _metric_names(request, values)
    if names is None:
        return _json_list([m.Metric(id=n) for n in values])
    return _json_list([m.Metric(id=n, value=values[n]) for n in names])
