"""Every GET: Flink's read endpoints and the cluster's own, from the replica's state.

Nothing here replays the journal per request: the handlers read the state the
replica keeps current (``RestContext.holder``) and its metrics store. Only
``/jobs/{id}/events`` (journal records) and ``/jobs/{id}/state`` (a
point-in-time replay, asked for by name) read Kafka, through ``history``.
"""

from __future__ import annotations

import asyncio
import platform
import resource
import sys
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import web

from coordinator.commands.common import parse_time_ms
from coordinator.commands.state import Folded
from coordinator.domain.state import Job, Worker
from coordinator.rest import models as m
from coordinator.rest.api import Route, bad_request, int_query, json_answer, not_found
from coordinator.rest.context import RestContext
from coordinator.rest.history import event_entry
from coordinator.rest.views import (
    SUBTASK_METRICS,
    VERSION,
    JobsOverviewCache,
    checkpoint_config,
    checkpoint_statistics,
    current_samples,
    dashboard_config,
    exception_history,
    in_acceptance_order,
    io_metrics,
    job_detail,
    last_modification,
    plan,
    restart_description,
    span,
    subtask_metric,
    taskmanager_info,
)
from coordinator.runtime.journal import StopAt
from coordinator.runtime.memory import memory_metrics
from coordinator.runtime.metrics import MetricsStore
from schemas.events import (
    JobStatus,
    ReplicaRole,
)

#: ``/readyz`` gives up reading the journal's end offset after this long (not ready).
READY_CHECK_S: Final = 2.0
#: ``/jobs/{id}/events`` without ``limit``, and the most one request returns.
EVENTS_PAGE: Final = 100
EVENTS_PAGE_MAX: Final = 1_000


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
        reason = None
        try:  # a probe must answer even when Kafka does not
            async with asyncio.timeout(READY_CHECK_S):
                lag = await ctx.lag()
        except Exception as err:
            lag = -1
            reason = f"the journal's end offset not read: {type(err).__name__}: {err}"
        if reason is None and role not in (ReplicaRole.LEADER, ReplicaRole.STANDBY):
            reason = f"replica is {role.value}: not following the journal yet"
        elif reason is None and lag > ctx.ready_max_lag:
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
        history = bool(ctx.history_url)  # the archive is relayed under /history
        return json_answer(dashboard_config(refresh_ms=3000, cancel=True, history=history))

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
                slots_available=sum(1 for s in slots if not s),
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
        rows = [
            m.JobIdStatus(id=j.job_id, status=j.status.value)
            for j in in_acceptance_order(state.jobs)
        ]
        rows += [
            m.JobIdStatus(id=i, status=e.final_status.value) for i, e in state.ended_jobs.items()
        ]
        return json_answer(m.JobIdsWithStatus(journal_offset=ctx.offset, jobs=rows))

    overview_rows = JobsOverviewCache()

    async def jobs_overview(request: web.Request) -> web.Response:
        empty = m.MultipleJobsDetails(journal_offset=ctx.offset, jobs=[])
        head, tail = empty.model_dump_json(by_alias=True).rsplit("[]", 1)
        rows = overview_rows.json_rows(ctx.state.jobs, ctx.holder.version, ctx.now_ms())
        return web.Response(text=head + rows + tail, content_type="application/json")

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
        return json_answer(exception_history(job, ctx.state.workers, limit))

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
            start, end, duration = span([e], now)
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
            # A shared slot: one row per subtask in it; a free one: one empty row.
            for i, tasks in enumerate(worker.slots)
            for t in (tasks or (None,))
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
            "taskSlotsAvailable": str(sum(1 for s in slots if not s)),
            "Status.JVM.Memory.Heap.Used": str(rss_kb * 1024),
            "jm.journal.offset": str(ctx.offset),
            "jm.epoch": str(ctx.epoch),
            "jm.jobs.in-memory": str(len(state.jobs)),
            "jm.jobs.archived": str(len(state.ended_jobs)),
            "jm.uptime-ms": str(ctx.uptime_ms()),
            **memory_metrics(state),
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
        return json_answer(job_state_at(folded, job_id, until_ms))

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


def job_state_at(folded: Folded, job_id: str, until_ms: int | None) -> m.JobStateAt:
    """``/jobs/{id}/state``'s answer from the state a replay folded."""
    job = folded.state.jobs.get(job_id)
    ended = folded.state.ended_jobs.get(job_id)
    detail = None
    if job is not None:  # durations count to the point asked for, not to now
        at = until_ms if until_ms is not None else last_modification(job)
        detail = job_detail(job, folded.offset, max(at, job.status_since), _NO_METRICS)
    return m.JobStateAt(
        job_id=job_id,
        until=until_ms,
        offset=folded.offset,
        found=job is not None or ended is not None,
        archived_status=None if ended is None else ended.final_status.value,
        job=detail,
        snapshot_offset=folded.snapshot_offset,
        replayed=folded.applied,
    )


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
