"""Archived jobs on the coordinator's REST API and dashboard, against real processes.

A real ``jm history`` and a ``jm coordinator`` leader that relays it (``--history-url``)
and archives ended jobs after 3 s; a standby with no history server configured; a real
``jm worker``. Two jobs end (FINISHED, FAILED) and leave the leader's memory. The
leader's ``/history/...`` answers equal the history server's own; the standby answers
503 saying none is configured, and, once the history server is killed, the leader
answers 502 saying it cannot be reached. Headless Chromium (Selenium, as
test_dashboard.py) shows the archived jobs, an archived job's details from the archive
and its event timeline from its first journal offset, and says plainly when there is
no history server or it does not answer. The archived-jobs list is saved as
``$JM_SCREENSHOT_DIR/20-archived-jobs.png``.
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Cluster, Producer
from tests.integration.test_dashboard import (  # noqa: F401 - browser: the fixture
    Dashboard,
    browser,
    rest_url,
    wait_for,
)
from tests.integration.test_history import HistoryProcess, failing, finishing
from tests.integration.test_rest_reads import Api, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HISTORY_OFFSET = "X-JM-History-Journal-Offset"


async def both(session: aiohttp.ClientSession, history: str, leader: str, path: str) -> Any:
    """The history server's answer to `path` and the leader's ``/history`` + `path`:
    (status, JSON body, the history server's journal offset) of each."""
    answers = []
    for url, header in ((history + path, "X-JM-Journal-Offset"),
                        (leader + "/history" + path, HISTORY_OFFSET)):  # fmt: skip
        async with session.get(url) as r:
            answers.append((r.status, await r.json(), int(r.headers[header])))
    return answers


async def test_coordinator_relays_the_archive_and_the_dashboard_shows_it(
    cluster: Cluster,
    browser: Any,  # noqa: F811 - the fixture
) -> None:
    history = HistoryProcess(cluster.stack, cluster.catalog)
    cluster.exits.callback(history.stop)
    history_url = await history.url()
    leader = cluster.coordinator("c1", "--archive-after-ms", "3000", "--history-url", history_url)
    await leader.wait_for_line("role LEADER")
    bare = cluster.coordinator("c2")
    await bare.wait_for_line("role STANDBY")
    await leader.wait_for_line("rest http://")
    await bare.wait_for_line("rest http://")
    cluster.worker("tm-1", 4)
    jobs = {"ok-job": finishing("ok-job"), "failed-job": failing("failed-job")}
    async with aiohttp.ClientSession() as session, \
            Producer(cluster.stack, cluster.catalog) as client:  # fmt: skip
        coordinator = Api(session, rest_url(leader))
        standby = Api(session, rest_url(bare))
        archive = Api(session, history_url)

        async def joined() -> bool:
            return bool((await coordinator.json("/taskmanagers"))["taskmanagers"])

        await eventually(joined, "tm-1 to register")
        for job in jobs.values():
            await client.send(job)

        async def left_memory() -> bool:
            for job_id in jobs:
                async with session.get(f"{coordinator.base}/jobs/{job_id}") as r:
                    if r.status != 404 or "archived" not in await r.text():
                        return False
            return True

        await eventually(left_memory, "the leader to archive both jobs", 120)

        async def archived() -> bool:
            async with session.get(archive.base + "/jobs/overview") as r:
                rows = (await r.json())["jobs"] if r.status == 200 else []
            return {row["jid"] for row in rows} == set(jobs)

        await eventually(archived, "the history server to archive both jobs", 90)

        # The relay answers what the history server answers, status and body.
        paths = ["/jobs/overview", "/config", "/jobs/no-such-job", "/jobs/no%20such%20job"]
        for job_id in jobs:
            paths += [f"/jobs/{job_id}{p}" for p in ("", "/checkpoints", "/journal")]
            paths += [f"/jobs/{job_id}/exceptions", f"/jobs/{job_id}/exceptions?maxExceptions=1"]
        statuses = {}
        for path in paths:
            own, relayed = await both(session, history_url, coordinator.base, path)
            assert relayed[:2] == own[:2], path
            assert relayed[2] >= own[2] > 0, path
            statuses[path] = own[0]
        assert statuses["/jobs/no-such-job"] == 404 and statuses["/jobs/ok-job"] == 200
        assert statuses["/jobs/no%20such%20job"] == 404
        assert (await coordinator.json("/history/jobs/failed-job"))["state"] == "FAILED"
        # The overview's ETag, sent back, is answered 304 without a body while the archive
        # is unchanged, by the history server and through the relay; another tag is not.
        for base in (history_url, coordinator.base + "/history"):
            async with session.get(base + "/jobs/overview") as r:
                etag = r.headers["ETag"]
                assert r.status == 200 and (await r.json())["jobs"]
            async with session.get(base + "/jobs/overview", headers={"If-None-Match": etag}) as r:
                assert (r.status, await r.read(), r.headers["ETag"]) == (304, b"", etag), base
            stale = {"If-None-Match": '"an-older-tag"'}
            async with session.get(base + "/jobs/overview", headers=stale) as r:
                assert r.status == 200 and (await r.json())["jobs"], base
        assert (await coordinator.json("/config"))["features"]["web-history"] is True
        assert (await standby.json("/config"))["features"]["web-history"] is False
        [reason] = await standby.error("/history/jobs/overview", 503)
        assert "No history server is configured" in reason and "historyserver.web.url" in reason
        openapi = await coordinator.json("/openapi.json")
        assert "/history/jobs/{job_id}/journal" in openapi["paths"]

        # An archived job's events: the coordinator reads them from its first offset.
        span = await coordinator.json("/history/jobs/ok-job/journal")
        page = await coordinator.json(f"/jobs/ok-job/events?from={span['first']}&limit=5")
        assert page["events"][0]["offset"] == span["first"]
        assert page["events"][0]["type"] == "JobAccepted"

        # The dashboard: the archived jobs, then one archived job's pages.
        ui = Dashboard(browser, coordinator.base)
        ui.open("archive", "archive")
        ui.shows("archived ok", "archived failed", "FINISHED", "FAILED", css="#archived-jobs")
        ui.shows("ok-job", "failed-job", css="#archived-jobs")
        ui.shot("20-archived-jobs")
        assert ui.nav() == "archive"

        def revalidated() -> bool:
            """Refreshed every 3 s, the list was fetched once and answered 304 since."""
            statuses: list[int] = browser.execute_script(
                "return performance.getEntriesByType('resource')"
                ".filter((e) => e.name.endsWith('history/jobs/overview'))"
                ".map((e) => e.responseStatus)"
            )
            return statuses.count(200) == 1 and statuses.count(304) >= 2

        wait_for("the archived list revalidated, not fetched again", revalidated)
        ui.shows("ok-job", "failed-job", css="#archived-jobs")
        failed_span = await coordinator.json("/history/jobs/failed-job/journal")
        ui.click('#archived-jobs a[href="#/jobs/failed-job"]')
        wait_for("the archived job's page", partial(ui.shown, "#/jobs/failed-job"))
        assert ui.nav() == "archive"  # listed under Archived jobs, not Jobs
        ui.shows("archived failed", "FAILED", css="#job-header")
        ui.shows("Archived", f"offsets {failed_span['first']} to {failed_span['last']}",
                 css="#archived-banner")  # fmt: skip
        ui.find('#job-graph g.node[data-vertex="boom"]')
        ui.open("jobs/failed-job/exceptions", "job-exceptions")
        ui.shows("InjectedFault", css="#exception-history")
        ui.open("jobs/failed-job/checkpoints", "job-checkpoints")
        ui.shows("No checkpoints", css="#checkpoint-history")
        ui.open("jobs/failed-job/timeline", "job-timeline")
        ui.shows("JobAccepted", "JobStatusChanged", css="#timeline-events")
        ui.shows(f"from journal offset {failed_span['first']} to {failed_span['last']}",
                 css="#timeline-events")  # fmt: skip
        first_row = ui.find("#timeline-events tr[data-offset]")[0]
        assert int(first_row.get_attribute("data-offset")) == failed_span["first"]
        ui.shot("21-archived-job-timeline")

        # Not configured, then not answering: the dashboard says so.
        plain = Dashboard(browser, standby.base)
        plain.open("archive", "archive")
        plain.shows("No history server is configured", css="#archive-problem")
        history.stop(signal.SIGKILL)
        [reason] = await coordinator.error("/history/jobs/overview", 502)
        assert history_url in reason and "cannot be reached" in reason
        ui.open("archive", "archive")
        ui.shows("The history server does not answer", "cannot be reached",
                 css="#archive-problem")  # fmt: skip
        browser.get(f"{ui.url}/#/jobs/ok-job")
        ui.shows("archived", "History server", "cannot be reached", css="#banner")
