"""``/history/...``: the job history server's archive, relayed by the coordinator.

Ended jobs leave the coordinator's memory (``JobArchived``); ``jm history``
(coordinator/history/, docs/history.md) keeps them. So that the dashboard needs
one origin only, and the history server may stay inside the cluster's network,
the coordinator relays the history server's read paths under ``/history``:
``GET /history/jobs/overview`` is ``GET <historyserver.web.url>/jobs/overview``,
and so on. Like every read here it needs no token.

The history server's answer is relayed as it is (status and JSON body, its ETag and
Cache-Control), with the journal offset its tables reflect in
``X-JM-History-Journal-Offset``; a client's If-None-Match is passed on, and the
history server's 304 Not Modified relayed. The relay
holds nothing: one request out per request in, bounded in time
(``historyserver.web.timeout``) and in size (``MAX_ANSWER_BYTES``). What it cannot
relay is answered in Flink's error shape, saying why: 503 when no history server
is configured, 502 when it does not answer in time, cannot be reached, answers
something other than JSON, or answers more than the limit.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from coordinator.rest import models as m
from coordinator.rest.api import OFFSET_HEADER, ApiError, Handler, Route
from coordinator.rest.context import RestContext

#: The most a relayed answer may hold (a 10,000-job overview is 3.6 MiB).
MAX_ANSWER_BYTES: Final = 32 << 20
PREFIX: Final = "/history"
#: The journal offset the history server's tables reflect, as it answered it.
HISTORY_OFFSET_HEADER: Final = "X-JM-History-Journal-Offset"
#: Passed on with the answer: the history server's ETag of ``/jobs/overview`` (a client
#: sending it back as If-None-Match is answered 304 while it is current).
CACHE_HEADERS: Final = ("ETag", "Cache-Control")
NOT_CONFIGURED: Final = (
    "No history server is configured: set historyserver.web.url (--history-url, "
    "$JM_HISTORYSERVER_WEB_URL) on the coordinator to serve archived jobs (docs/history.md)"
)


async def relay(
    ctx: RestContext, path: str, query: dict[str, str], if_none_match: str | None = None
) -> web.Response:
    """The history server's answer to ``GET path?query`` (`path` already quoted);
    `if_none_match`: the client's If-None-Match, passed on (a 304 is relayed)."""
    if not ctx.history_url:
        raise ApiError(503, NOT_CONFIGURED)
    where = f"The history server at {ctx.history_url}"
    url = URL(ctx.history_url + path, encoded=True).with_query(query)
    timeout = aiohttp.ClientTimeout(total=ctx.history_timeout_ms / 1000)
    asked = {"Accept": "application/json"}
    if if_none_match:
        asked["If-None-Match"] = if_none_match
    try:
        async with ctx.history_session().get(
            url, timeout=timeout, allow_redirects=False, headers=asked
        ) as answer:
            if (answer.content_length or 0) > MAX_ANSWER_BYTES:
                raise _too_large(where, answer.content_length or 0)
            body = bytearray()
            async for chunk in answer.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _too_large(where, len(body))
            status, content_type = answer.status, answer.content_type
            offset = answer.headers.get(OFFSET_HEADER)
            cache = {k: answer.headers[k] for k in CACHE_HEADERS if k in answer.headers}
    except TimeoutError:
        raise ApiError(
            502, f"{where} did not answer within {ctx.history_timeout_ms} ms "
            "(historyserver.web.timeout)"
        ) from None  # fmt: skip
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as err:
        raise ApiError(502, f"{where} cannot be reached: {type(err).__name__}: {err}") from None
    if status == 304 and if_none_match and "ETag" in cache:
        relayed = web.Response(status=304, headers=cache)  # the client's copy is current
    elif content_type != "application/json":
        raise ApiError(502, f"{where} answered {status} with {content_type or 'no type'}, "
                            "not JSON: is it a jm history server?")  # fmt: skip
    else:
        relayed = web.Response(body=bytes(body), status=status, content_type="application/json",
                               headers=cache)  # fmt: skip
    if offset is not None:
        relayed.headers[HISTORY_OFFSET_HEADER] = offset
    return relayed


def _too_large(where: str, size: int) -> ApiError:
    return ApiError(
        502, f"{where} answered {size:,} bytes or more, beyond the relay's limit of "
        f"{MAX_ANSWER_BYTES:,} bytes"
    )  # fmt: skip


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    def handler(suffix: str) -> Handler:
        async def answer(request: web.Request) -> web.Response:
            job_id = request.match_info.get("job_id")
            path = suffix if job_id is None else f"/jobs/{quote(job_id, safe='')}{suffix}"
            return await relay(ctx, path, dict(request.query), request.headers.get("If-None-Match"))

        return answer

    job = PREFIX + "/jobs/{job_id}"
    get = "GET"
    return [
        Route(get, PREFIX + "/jobs/overview", handler("/jobs/overview"),
              "Archived jobs: the history server's /jobs/overview, relayed"),
        Route(get, job, handler(""), "An archived job (the history server's /jobs/{id})",
              m.JobDetail),
        Route(get, job + "/exceptions", handler("/exceptions"),
              "An archived job's exception history (relayed)", m.JobExceptions,
              {"maxExceptions": "entries at most (default 10)"}),
        Route(get, job + "/checkpoints", handler("/checkpoints"),
              "An archived job's checkpoint statistics (relayed)", m.CheckpointingStatistics),
        Route(get, job + "/journal", handler("/journal"),
              "Where an archived job's events are in the journal: first, last, events "
              "(relayed; /jobs/{id}/events?from=<first> reads them)"),
        Route(get, PREFIX + "/config", handler("/config"),
              "The history server's dashboard configuration (relayed)", m.DashboardConfig),
    ]  # fmt: skip
