"""Deleting the edge topics of jobs that ended: the leader's housekeeping.

Edge topics (``schemas.edges``) carry a job's data between its vertices. Once a
job is FINISHED, CANCELED or FAILED nobody reads them again, so the leader
deletes every topic under ``edge_topic_prefix(catalog, job_id)``; after a
restart, the previous run's topics (``edge_run_prefix``). This is I/O outside
the journal: it runs in the background, never blocks a decision, and is
retried at the next takeover (``sweep``). Topics it misses expire by their
24 h retention anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from coordinator.domain import State
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.edges import edge_run_prefix, edge_topic_prefix

log = logging.getLogger(__name__)


class EdgeCollector:
    def __init__(self, bootstrap: str, catalog: Catalog) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self._prefixes: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.deleted: list[str] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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
