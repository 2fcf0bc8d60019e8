"""The ``/history/...`` relay's bounds (coordinator/rest/archived.py), over real sockets.

The replica's real REST application relays to a real HTTP server on the loopback
that answers what a broken or hostile history server could: more than the relay's
limit (with and without a Content-Length), something other than JSON, nothing at
all (a socket that accepts and never answers), or a refused connection. Each is
answered 502 in Flink's error shape, saying why; the relay goes on answering after.
The real history server is relayed in tests/integration/test_archived_jobs.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coordinator.rest import archived
from coordinator.rest.context import RestContext
from coordinator.rest.server import build_app
from coordinator.runtime.holder import StateHolder
from schemas.settings import ClusterSettings

LIMIT = archived.MAX_ANSWER_BYTES


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _history_like() -> web.Application:
    """Answers on the history server's paths, some of them beyond what is relayed."""

    async def overview(request: web.Request) -> web.StreamResponse:  # no Content-Length
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"jobs": ["')
        for _ in range(LIMIT // (1 << 20) + 1):
            await response.write(b"x" * (1 << 20))
        await response.write(b'"]}')
        return response

    async def one_job(request: web.Request) -> web.Response:  # with a Content-Length
        return web.Response(body=b"[" + b"0," * (LIMIT // 2) + b"0]",
                            content_type="application/json")  # fmt: skip

    async def config(request: web.Request) -> web.Response:
        return web.Response(text="<html>a proxy's login page</html>", content_type="text/html")

    async def journal(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return web.json_response({"jid": job_id, "first": 1, "last": 9, "events": 3},
                                 headers={"X-JM-Journal-Offset": "42"})  # fmt: skip

    app = web.Application()
    app.router.add_get("/jobs/overview", overview)
    app.router.add_get("/jobs/{job_id}", one_job)
    app.router.add_get("/jobs/{job_id}/journal", journal)
    app.router.add_get("/config", config)
    return app


def _context(url: str, timeout_ms: int = 2_000) -> RestContext:
    settings = ClusterSettings(bootstrap_servers="127.0.0.1:9092", cluster_id="relay-test")
    ctx = RestContext(holder=StateHolder(), replica_id="r", settings=settings)
    ctx.history_url = url
    ctx.history_timeout_ms = timeout_ms
    return ctx


@pytest.fixture
async def history() -> AsyncIterator[str]:
    runner, url = await _serve(_history_like())
    try:
        yield url
    finally:
        await runner.cleanup()


async def _get(ctx: RestContext, path: str) -> tuple[int, Any, dict[str, str]]:
    runner, url = await _serve(build_app(ctx))
    try:
        async with aiohttp.ClientSession() as session, session.get(url + path) as r:
            return r.status, await r.json(), dict(r.headers)
    finally:
        await runner.cleanup()
        await ctx.close()


async def test_an_answer_beyond_the_limit_is_refused_with_or_without_its_length(
    history: str,
) -> None:
    status, body, _ = await _get(_context(history), "/history/jobs/overview")
    assert status == 502
    [reason] = body["errors"]
    assert history in reason and f"limit of {LIMIT:,} bytes" in reason
    status, body, _ = await _get(_context(history), "/v1/history/jobs/some-job")
    assert status == 502 and f"limit of {LIMIT:,} bytes" in body["errors"][0]


async def test_what_fits_is_relayed_with_the_history_offset(history: str) -> None:
    status, body, headers = await _get(_context(history), "/history/jobs/a%20b/journal")
    assert status == 200
    assert body == {"jid": "a b", "first": 1, "last": 9, "events": 3}
    assert headers[archived.HISTORY_OFFSET_HEADER] == "42"
    assert int(headers["X-JM-Journal-Offset"]) == -1  # the replica's own: nothing read


async def test_an_answer_that_is_not_json_is_refused(history: str) -> None:
    status, body, _ = await _get(_context(history), "/history/config")
    assert status == 502
    assert "answered 200 with text/html, not JSON" in body["errors"][0]


async def test_a_history_server_that_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = asyncio.get_running_loop().time()
        status, body, _ = await _get(_context(url, timeout_ms=300), "/history/jobs/overview")
        took = asyncio.get_running_loop().time() - started
    assert status == 502 and "did not answer within 300 ms" in body["errors"][0]
    assert took < 5


async def test_a_refused_connection_and_no_history_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    status, body, _ = await _get(_context(f"http://127.0.0.1:{port}"), "/history/jobs/x")
    assert status == 502 and "cannot be reached" in body["errors"][0]
    status, body, _ = await _get(_context(""), "/history/jobs/overview")
    assert status == 503 and "No history server is configured" in body["errors"][0]
    status, body, _ = await _get(_context(""), "/config")
    assert body["features"]["web-history"] is False
