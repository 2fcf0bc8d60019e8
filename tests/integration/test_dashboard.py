"""The web dashboard in headless Chromium against a running cluster of real processes.

Two ``jm coordinator`` replicas serve the REST API and the dashboard, a real
``jm worker`` runs a submitted three-vertex job. Selenium drives Debian's
``chromium`` through ``chromium-driver``: every page is loaded and its content
checked, the event timeline is scrubbed back to an earlier event, and the job
is cancelled from the UI. A screenshot of every page lands in
``$JM_SCREENSHOT_DIR`` (default ``.local/screenshots``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from schemas import events as ev
from tests.integration.harness import (
    REPO,
    Cluster,
    CoordinatorProcess,
    Journal,
    Producer,
    joined,
    now_ms,
    status_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

webdriver = pytest.importorskip("selenium.webdriver", reason="the test extra installs selenium")
from selenium.common.exceptions import (  # noqa: E402 - after the importorskip above
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

WAIT_S = 30.0
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--window-size=1440,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
)  # fmt: skip


def screenshot_dir() -> Path:
    path = Path(os.environ.get("JM_SCREENSHOT_DIR") or REPO / ".local" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's packages (make deps installs chromium, chromium-driver)."""
    binary = shutil.which("chromium")
    driver_binary = shutil.which("chromedriver")
    if not binary or not driver_binary:
        pytest.fail("chromium and chromedriver are needed: make deps installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_binary)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def dashboard_job(job_id: str) -> ev.JobSubmitted:
    """numbers (an endless slow source) -> evens -> counts: three vertices, two edges,
    a checkpoint every 2 s."""
    vertices = (
        ev.Vertex(id="numbers", name="numbers", operator="sequence", parallelism=1,
                  max_parallelism=8, config={"count": "0", "rate": "20"}),
        ev.Vertex(id="evens", name="evens", operator="filter", parallelism=2,
                  max_parallelism=8, config={"function": "even", "field": "value"}),
        ev.Vertex(id="counts", name="counts", operator="keyed_count", parallelism=1,
                  max_parallelism=8, config={"key_field": "value"}),
    )  # fmt: skip
    edges = (
        ev.Edge(source="numbers", target="evens", partitioning=ev.Partitioning.REBALANCE),
        ev.Edge(source="evens", target="counts", partitioning=ev.Partitioning.HASH,
                key_field="value"),
    )  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name="dashboard demo",
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
        checkpoint_config=ev.CheckpointConfig(interval_ms=2_000, timeout_ms=20_000),
    )  # fmt: skip


def failing_job(job_id: str) -> ev.JobSubmitted:
    """One source that fails after 5 records, never restarted: a FAILED job with exceptions."""
    vertex = ev.Vertex(id="source", name="source", operator="fault", parallelism=1,
                       max_parallelism=8, config={"fail_after": "5", "rate": "50"})  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name="flaky source",
        job_graph=ev.JobGraph(vertices=(vertex,)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


def rest_url(proc: CoordinatorProcess) -> str:
    found = re.search(r"^rest (http://\S+)", proc.output(), re.MULTILINE)
    assert found, f"{proc.replica_id} printed no REST address:\n{proc.output()[-2000:]}"
    return found.group(1)


def leader_of(url: str) -> str:
    """The leader's id as the API says (on a loaded machine the lease can move)."""
    with urllib.request.urlopen(f"{url}/cluster/leader", timeout=10) as answer:
        leader = json.load(answer)["leader-id"]
    assert leader in ("c1", "c2"), leader
    return str(leader)


def wait_for(what: str, check: Callable[[], Any], seconds: float = WAIT_S) -> Any:
    """Poll `check` until it returns something truthy (the page refreshes itself)."""
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (StaleElementReferenceException, WebDriverException) as err:
            last = err  # the page re-rendered under us: look again
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what} (last error: {last})")


class Dashboard:
    """The browser on one replica's dashboard; saves a screenshot per page."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        self.url = url
        self.shots = screenshot_dir()
        self.saved: list[Path] = []

    def open(self, route: str, page: str) -> None:
        self.driver.get(f"{self.url}/#/{route}")
        wait_for(f"page {page}", lambda: self.driver.find_element(By.TAG_NAME, "body")
                 .get_attribute("data-page") == page)  # fmt: skip

    def text(self, css: str = "#view") -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def shows(self, *needles: str, css: str = "#view") -> None:
        try:
            wait_for(f"{needles} in {css}", lambda: all(n in self.text(css) for n in needles))
        except AssertionError:
            self.shot("failed")  # what the page showed instead
            raise

    def find(self, css: str) -> list[Any]:
        """The elements `css` selects, once there is at least one."""
        found: list[Any] = wait_for(css, lambda: self.driver.find_elements(By.CSS_SELECTOR, css))
        return found

    def scrub_to(self, kind: str) -> int:
        """Move the timeline's scrubber with the keyboard, as a person would, to the
        first event of `kind`; its journal offset."""

        def first() -> tuple[int, int] | None:
            offsets = self.find("#scrubber")[0].get_attribute("data-offsets").split(",")
            rows = self.driver.find_elements(By.CSS_SELECTOR, "#timeline-events tr[data-offset]")
            kinds = [r.find_elements(By.CSS_SELECTOR, "td")[2].text for r in rows]
            return (kinds.index(kind), int(offsets[kinds.index(kind)])) if kind in kinds else None

        index, offset = wait_for(f"a {kind} event on the timeline", first)
        offsets = self.find("#scrubber")[0].get_attribute("data-offsets").split(",")
        for step in range(index + 1):
            self.press(Keys.HOME if step == 0 else Keys.ARROW_RIGHT)
            # Each step shows the job at that event; go on from the page it rendered.
            shown = f"timeline?at={offsets[step]}"
            wait_for(shown, partial(self.shown, shown))
        return int(offset)

    def click(self, css: str) -> None:
        """Click `css`; again if the page re-rendered under it."""
        wait_for(f"clicked {css}", partial(self._click, css))

    def _click(self, css: str) -> bool:
        self.driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    def press(self, key: str) -> None:
        """A key on the scrubber; again if the page re-rendered under it (new events)."""
        wait_for(f"pressed {key!r}", partial(self._press, key))

    def _press(self, key: str) -> bool:
        self.driver.find_element(By.ID, "scrubber").send_keys(key)
        return True

    def nav(self) -> str:
        """The sidebar entry highlighted."""
        active = self.driver.find_elements(By.CSS_SELECTOR, "[data-nav].active")
        return ",".join(str(a.get_attribute("data-nav")) for a in active)

    def shown(self, hash_end: str) -> bool:
        shown = self.driver.find_element(By.TAG_NAME, "body").get_attribute("data-shown")
        return bool(shown and shown.endswith(hash_end))

    def shot(self, name: str) -> None:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(path)


async def test_dashboard_pages_timeline_and_cancel(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    job_id = uuid.uuid4().hex
    failed_id = uuid.uuid4().hex
    token_file = tmp_path / "token"
    token_file.write_text(f"dash-{uuid.uuid4().hex}\n")
    token = ("--rest-token-file", str(token_file))
    c1 = cluster.coordinator("c1", *token)
    await c1.wait_for_line("role LEADER")
    c2 = cluster.coordinator("c2", *token)
    await c2.wait_for_line("role STANDBY")
    await c1.wait_for_line("rest http://")
    await c2.wait_for_line("rest http://")
    tm_id = f"tm-{uuid.uuid4().hex[:6]}"
    cluster.worker(tm_id, 6)
    async with Journal(cluster.stack, cluster.catalog) as journal:
        await journal.wait_until(lambda es: joined(es, tm_id))
        async with Producer(cluster.stack, cluster.catalog) as producer:
            await producer.send(failing_job(failed_id))
            await journal.wait_until(lambda es: status_of(es, failed_id) is ev.JobStatus.FAILED)
            await producer.send(dashboard_job(job_id))
        await journal.wait_until(lambda es: status_of(es, job_id) is ev.JobStatus.RUNNING)

        ui = Dashboard(browser, rest_url(c1))

        ui.open("overview", "overview")
        ui.shows("dashboard demo", "RUNNING")
        ui.shows(leader_of(ui.url), css="#card-leader")
        ui.shows("of 6", css="#card-slots")  # slots available of total
        ui.shot("01-overview")

        ui.open("jobs", "jobs")
        ui.shows("dashboard demo", job_id, css="#running-jobs")
        ui.shows("flaky source", "FAILED", css="#completed-jobs")
        ui.shot("02-jobs")

        ui.open(f"jobs/{job_id}", "job-overview")
        ui.shows("dashboard demo", "RUNNING", css="#job-header")
        assert ui.nav() == "jobs"  # a job the coordinator holds is listed under Jobs
        for vertex in ("numbers", "evens", "counts"):
            ui.find(f'#job-graph g.node[data-vertex="{vertex}"]')
        ui.shows("Parallelism: 2", css="#job-graph")
        # Records flow: the workers' heartbeats carry the metrics the graph shows.
        wait_for("records out of numbers", lambda: re.search(
            r"out [1-9]", ui.text('#job-graph g.node[data-vertex="numbers"]')))  # fmt: skip
        ui.shot("03-job-graph")

        ui.open(f"jobs/{job_id}/exceptions", "job-exceptions")
        ui.shows("No root exception", css="#root-exception")
        ui.open(f"jobs/{failed_id}/exceptions", "job-exceptions")
        ui.shows("InjectedFault", css="#root-exception")
        ui.shows("InjectedFault", "source", css="#exception-history")
        ui.shot("04-job-exceptions")

        ui.open(f"jobs/{job_id}/checkpoints", "job-checkpoints")
        ui.shows("COMPLETED", css="#checkpoint-history")
        ui.shot("05-job-checkpoints")

        ui.open(f"jobs/{job_id}/timeline", "job-timeline")
        ui.shows("JobAccepted", "JobStatusChanged", css="#timeline-events")
        ui.shot("06-job-timeline")

        # Scrub back to the job's first status change (INITIALIZING -> CREATED): the job as
        # it was then (CREATED), not as it is now (RUNNING).
        created = ui.scrub_to("JobStatusChanged")
        ui.shows("CREATED", css="#history-banner")
        ui.shows("RUNNING", css="#history-banner")  # the live status, beside the earlier one
        ui.shows("CREATED", css="#job-state")
        ui.shows(f"journal offset {created}", css="#history-banner")
        ui.shot("07-job-timeline-scrubbed")

        ui.open("taskmanagers", "taskmanagers")
        ui.shows(tm_id, css="#taskmanagers")
        ui.shot("08-taskmanagers")

        ui.open("replicas", "replicas")
        ui.shows("c1", "c2", "LEADER", "STANDBY", css="#replicas")
        ui.shows(leader_of(ui.url), css="#card-leader")
        ui.shot("09-replicas")

        # Cancel from the UI: the button asks first, the confirmation sends the PATCH.
        ui.open(f"jobs/{job_id}", "job-overview")
        ui.click("#cancel-job")
        dialog = wait_for("the confirmation", lambda: browser.find_element(By.ID, "confirm")
                          .get_attribute("open") is not None)  # fmt: skip
        assert dialog
        ui.shows("dashboard demo", job_id, css="#confirm")
        # Without the token the replica refuses (401) and the dialog says so.
        browser.find_element(By.ID, "confirm-yes").click()
        ui.shows("Refused", css="#confirm-error")
        ui.shot("10-cancel-refused")
        browser.find_element(By.ID, "confirm-token").send_keys(token_file.read_text().strip())
        ui.shot("11-cancel-confirm")
        browser.find_element(By.ID, "confirm-yes").click()
        ui.shows("CANCELED", css="#job-state")
        ui.shot("12-job-canceled")
        await journal.wait_until(lambda es: status_of(es, job_id) is ev.JobStatus.CANCELED)

        # The other replica (the standby) serves the same dashboard from its replayed state.
        standby = Dashboard(browser, rest_url(c2))
        standby.open("overview", "overview")
        standby.shows("CANCELED", "flaky source", "FAILED")
        standby.shows(leader_of(standby.url), css="#card-leader")
        standby.shot("13-standby-overview")

        # Under /v1/ (Flink's CLI prefix) the same dashboard reads the API under /v1/.
        v1 = Dashboard(browser, f"{rest_url(c2)}/v1")
        v1.open("jobs", "jobs")
        v1.shows("dashboard demo", "CANCELED", css="#completed-jobs")

    assert all(p.stat().st_size > 0 for p in ui.saved + standby.saved)
