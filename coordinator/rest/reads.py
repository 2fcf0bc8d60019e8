"""Every GET: Flink's read endpoints and the cluster's own, from the replica's state.

Nothing here replays the journal: the handlers read the state the replica
keeps current (``RestContext.holder``) and its metrics store.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from coordinator.rest import models as m
from coordinator.rest.api import Route, json_answer
from coordinator.rest.context import RestContext
from schemas.events import JobStatus

#: What ``/config`` and ``/overview`` give as Flink's version fields.
VERSION: Final = "kafka-jobmanager-0.1"


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return json_answer(m.Health(status="ok", replica_id=ctx.replica_id, role=ctx.role().value))

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

    return [
        Route("GET", "/healthz", healthz, "Alive (the process answers)", m.Health),
        Route("GET", "/config", config, "Dashboard configuration (Flink)", m.DashboardConfig),
        Route("GET", "/overview", overview, "Cluster overview (Flink)", m.ClusterOverview),
    ]
