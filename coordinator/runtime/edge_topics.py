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
the previous run's topics (``edge_run_prefix``). All this is I/O outside the journal:
it runs in the background, never blocks a decision, a failure is logged and left to the
task (creation) or to the next takeover (``sweep``, deletion). Topics it misses expire
by their 24 h retention anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from coordinator.domain import State
from coordinator.domain.chaining import topic_edges
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.edges import edge_run_prefix, edge_topic, edge_topic_config, edge_topic_prefix

log = logging.getLogger(__name__)


class EdgeTopics:
    def __init__(self, bootstrap: str, catalog: Catalog) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self._prefixes: asyncio.Queue[str] = asyncio.Queue()
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
            self._prefixes.put_nowait(edge_topic_prefix(self.catalog, event.job_id))
        elif isinstance(event, ev.ExecutionGraphCreated) and event.restart_count > 0:
            # A new run writes fresh topics (all subtasks of a run share one attempt
            # number); the previous run's tasks have all ended by now.
            for attempt in sorted({t.attempt for t in event.subtasks if t.attempt > 0}):
                self._prefixes.put_nowait(edge_run_prefix(self.catalog, event.job_id, attempt - 1))

    def sweep(self, state: State) -> None:
        """At takeover: the edge topics of jobs the journal says have ended (an earlier
        leader may have died before deleting them). Archived jobs are left to retention."""
        for job_id in sorted(state.jobs):
            if state.jobs[job_id].status.is_globally_terminal:
                self._prefixes.put_nowait(edge_topic_prefix(self.catalog, job_id))

    async def _run(self) -> None:
        while True:
            prefix = await self._prefixes.get()
            try:
                await self._delete(prefix)
            except Exception:  # housekeeping: log and go on, retention catches the rest
                log.warning("could not delete edge topics under %s", prefix, exc_info=True)

    async def _delete(self, prefix: str) -> None:
        admin = kafkaio.admin_client(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if doomed:
                await admin.delete_topics(doomed)
                self.deleted.extend(doomed)
                log.info("deleted %d edge topic(s) under %s", len(doomed), prefix)
        finally:
            await admin.close()
