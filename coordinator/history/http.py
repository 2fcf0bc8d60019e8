"""The history server's HTTP answers: Flink's HistoryServer paths, from the tables.

The answers are the coordinator's REST models (coordinator/rest/models.py) as the
archive stored them, so a job answers here with the fields the coordinator gave
while it ran. Errors are Flink's ``{"errors": [...]}``; every answer carries the
journal offset the tables reflect (``X-JM-Journal-Offset``) and allows any origin
(a read-only archive; the coordinator's dashboard reads it through the coordinator's
``/history/...`` relay, coordinator/rest/archived.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Final

from aiohttp import web

from coordinator.history.app import HistoryApp
from coordinator.history.archive import exceptions_answer, overview_rows
from coordinator.rest.api import (
    OFFSET_HEADER,
    ApiError,
    Handler,
    int_query,
    json_answer,
    not_found,
)
from coordinator.rest.server import VERSION_PREFIX
from coordinator.rest.views import dashboard_config

log = logging.getLogger(__name__)

JOB: Final = "/jobs/{job_id}"


def _json(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value), content_type="application/json")


class _OverviewCache:
    """``/jobs/overview`` as JSON, rebuilt only when the archive changed, and its ETag
    (a digest of the text: the same archive gives the same tag after a restart)."""

    def __init__(self) -> None:
        self.version = -1
        self.text = ""
        self.etag = ""


def build_app(history: HistoryApp) -> web.Application:
    tables = history.tables
    overview = _OverviewCache()

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as err:
            response = web.Response(
                text=json.dumps({"errors": err.errors}),
                status=err.status,
                content_type="application/json",
            )
        except web.HTTPException as err:
            if err.status < 400:
                raise
            reason = "Not found: " + request.path if err.status == 404 else err.reason
            response = web.Response(
                text=json.dumps({"errors": [reason]}),
                status=err.status,
                content_type="application/json",
            )
        response.headers[OFFSET_HEADER] = str(history.offset)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    def row(table: Any, request: web.Request) -> Any:
        job_id = request.match_info["job_id"]
        found = table.get(job_id)
        if found is None:
            raise not_found(f"Job {job_id} not found in the archive.")
        return found

    async def readyz(request: web.Request) -> web.Response:
        ready = history.ready[0]
        return _json({"ready": ready, "jm-journal-offset": history.offset,
                      "jm-rows-written-at-start": history.rows_written}) if ready else (
            web.Response(text=json.dumps({"errors": ["recovering the tables"]}), status=503,
                         content_type="application/json")
        )  # fmt: skip

    async def config(request: web.Request) -> web.Response:
        return json_answer(dashboard_config(refresh_ms=10000, cancel=False, history=True))

    async def jobs_overview(request: web.Request) -> web.Response:
        """With thousands of archived jobs the answer is megabytes: a client that sends
        the ETag it has back (If-None-Match) is answered 304 while it is current."""
        if overview.version != history.archive.version:
            overview.text = json.dumps({"jobs": overview_rows(tables.jobs)})
            digest = hashlib.blake2b(overview.text.encode(), digest_size=16).hexdigest()
            overview.etag = f'"{digest}"'
            overview.version = history.archive.version
        headers = {"ETag": overview.etag, "Cache-Control": "no-cache"}
        if overview.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(text=overview.text, content_type="application/json", headers=headers)

    async def one_job(request: web.Request) -> web.Response:
        return _json(row(tables.details, request))

    async def exceptions(request: web.Request) -> web.Response:
        limit = int_query(request, "maxExceptions", 10, minimum=1)
        return json_answer(exceptions_answer(row(tables.exceptions, request), limit))

    async def checkpoints(request: web.Request) -> web.Response:
        return _json(row(tables.checkpoints, request))

    async def journal(request: web.Request) -> web.Response:
        return _json({"jid": request.match_info["job_id"], **row(tables.journal, request)})

    app = web.Application(middlewares=[answer])
    for path, handler in (
        ("/readyz", readyz),
        ("/config", config),
        ("/jobs/overview", jobs_overview),
        (JOB, one_job),
        (JOB + "/exceptions", exceptions),
        (JOB + "/checkpoints", checkpoints),
        (JOB + "/journal", journal),
    ):
        for prefix in ("", VERSION_PREFIX):
            app.router.add_get(prefix + path, handler)
    return app
