"""A job's edge topics: created ahead of its tasks, deleted once it ended. The leader's
housekeeping.

Edge topics (``schemas.edges``) carry a job's data between its vertices, one set per
run (attempt). Creating a topic and waiting for its partitions' leaders takes tens of
milliseconds, so the leader starts it the moment it *decides* a run
(``ExecutionGraphCreated``, before the transaction commits): the broker creates the
topics while the decision commits and the ``DeployTask`` travels to the workers and
their slots start, and a task that arrives first creates them itself (worker/edges.py;
both ways are idempotent). Topics created for a decision whose transaction then fails
have the names the next leader's same decision uses, or are deleted with the job.

Once a job is FINISHED, CANCELED or FAILED nobody reads them again, so the leader
deletes every topic under ``edge_topic_prefix(catalog, job_id)``; after a restart,
the previous run's topics (``edge_run_prefix``). Deleting is not urgent, and it is
not free: the broker's work on a deletion slows a deploy decided in the same moment
(about 13 ms at the median, docs/benchmarks.md). So deletions wait (``DeletionSchedule``) until
no run has been decided for ``quiet_ms``, or the oldest has waited ``max_wait_ms``, and
then go out together: one topic listing, one DeleteTopics request.

All this is I/O outside the journal: it runs in the background, never blocks a
decision, a failure is logged and left to the task (creation) or to the next takeover
(``sweep``, deletion). Topics it misses expire by their 24 h retention anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from coordinator.domain import State
from coordinator.domain.chaining import topic_edges
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.edges import edge_run_prefix, edge_topic, edge_topic_config, edge_topic_prefix

log = logging.getLogger(__name__)


#: Deletions wait until no run was decided for this long ...
DELETE_QUIET_MS = 2_000
#: ... or until the oldest of them has waited this long.
DELETE_MAX_WAIT_MS = 60_000


class DeletionSchedule:
    """When the edge topics of ended runs are deleted: not while runs are being
    deployed. Times are monotonic milliseconds; no I/O."""

    def __init__(self, quiet_ms: int = DELETE_QUIET_MS, max_wait_ms: int = DELETE_MAX_WAIT_MS):
        self.quiet_ms = quiet_ms
        self.max_wait_ms = max_wait_ms
        self._waiting: dict[str, int] = {}  # prefix -> since when
        self._last_run = -(2**62)

    def add(self, prefix: str, now: int) -> None:
        self._waiting.setdefault(prefix, now)

    def run_decided(self, now: int) -> None:
        self._last_run = max(self._last_run, now)

    def due_in(self, now: int) -> int | None:
        """Milliseconds until the waiting deletions are due (0: now; None: none wait)."""
        if not self._waiting:
            return None
        quiet_at = self._last_run + self.quiet_ms
        oldest_at = min(self._waiting.values()) + self.max_wait_ms
        return max(0, min(quiet_at, oldest_at) - now)

    def take(self) -> list[str]:
        """Every waiting prefix, oldest first; none wait afterwards."""
        taken = sorted(self._waiting, key=lambda p: (self._waiting[p], p))
        self._waiting = {}
        return taken


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class EdgeTopics:
    def __init__(
        self, bootstrap: str, catalog: Catalog, schedule: DeletionSchedule | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.schedule = schedule or DeletionSchedule()
        self._more_deletions = asyncio.Event()
        self._wanted: dict[str, int] = {}  # topics to create, {name: partitions}
        self._more = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.deleted: list[str] = []
        #: topics this leader asked the broker to create (the ones tasks had not yet).
        self.created: list[str] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="edge-topics-delete"),
            asyncio.create_task(self._create_loop(), name="edge-topics-create"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def decided(self, event: ev.JournalEvent, state: State) -> None:
        """Called with every journal event the leader decided, before it commits: a new
        run's edge topics are created in the background from here on."""
        if not isinstance(event, ev.ExecutionGraphCreated) or not event.subtasks:
            return
        self.schedule.run_decided(_now_ms())
        job = state.jobs.get(event.job_id)
        if job is None:
            return
        attempt = event.subtasks[0].attempt
        for (source, target), partitions in topic_edges(job.submission.job_graph).items():
            self._wanted[edge_topic(self.catalog, event.job_id, attempt, source, target)] = (
                partitions
            )
        if self._wanted:
            self._more.set()

    async def _create_loop(self) -> None:
        """One creation at a time, with every topic wanted since the last one: a burst of
        submissions is a few CreateTopics requests, not one client per job."""
        admin = None
        try:
            while True:
                await self._more.wait()
                self._more.clear()
                wanted, self._wanted = self._wanted, {}
                try:
                    if admin is None:
                        admin = kafkaio.admin_client(bootstrap_servers=self.bootstrap)
                        await admin.start()
                    self.created.extend(
                        await kafkaio.ensure_topics(
                            admin, wanted, self.catalog.replication_factor,
                            edge_topic_config(self.catalog),
                        )
                    )  # fmt: skip
                except Exception:  # the tasks create what is missing themselves
                    log.warning("could not create %d edge topic(s) ahead", len(wanted),
                                exc_info=True)  # fmt: skip
                    if admin is not None:
                        await admin.close()
                    admin = None
        finally:
            if admin is not None:
                await admin.close()

    def observe(self, event: ev.JournalEvent) -> None:
        """Called with every committed journal event of the leader."""
        if isinstance(event, ev.JobStatusChanged) and event.to_status.is_globally_terminal:
            self._delete_later(edge_topic_prefix(self.catalog, event.job_id))
        elif isinstance(event, ev.ExecutionGraphCreated) and event.restart_count > 0:
            # A new run writes fresh topics (all subtasks of a run share one attempt
            # number); the previous run's tasks have all ended by now.
            for attempt in sorted({t.attempt for t in event.subtasks if t.attempt > 0}):
                self._delete_later(edge_run_prefix(self.catalog, event.job_id, attempt - 1))

    def sweep(self, state: State) -> None:
        """At takeover: the edge topics of jobs the journal says have ended (an earlier
        leader may have died before deleting them). Archived jobs are left to retention."""
        for job_id in sorted(state.jobs):
            if state.jobs[job_id].status.is_globally_terminal:
                self._delete_later(edge_topic_prefix(self.catalog, job_id))

    def _delete_later(self, prefix: str) -> None:
        self.schedule.add(prefix, _now_ms())
        self._more_deletions.set()

    async def _run(self) -> None:
        while True:
            due_in = self.schedule.due_in(_now_ms())
            if due_in is None:
                await self._more_deletions.wait()
                self._more_deletions.clear()
                continue
            if due_in > 0:
                # A run decided meanwhile moves the time on: look again when this is up.
                await asyncio.sleep(due_in / 1000)
                continue
            prefixes = self.schedule.take()
            try:
                await self._delete(prefixes)
            except Exception:  # housekeeping: log and go on, retention catches the rest
                log.warning("could not delete edge topics under %s", ", ".join(prefixes),
                            exc_info=True)  # fmt: skip

    async def _delete(self, prefixes: list[str]) -> None:
        admin = kafkaio.admin_client(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
            if doomed:
                await admin.delete_topics(doomed)
                self.deleted.extend(doomed)
                log.info("deleted %d edge topic(s) under %s", len(doomed), ", ".join(prefixes))
        finally:
            await admin.close()
