"""The two reads that go back into the journal: a job's events and a past state.

Both are asked for explicitly (``/jobs/{id}/events``, ``/jobs/{id}/state``);
every other read answers from the replica's folded state. They use their own
Kafka consumer (never the replica's, whose position is the replica's
progress), one request at a time, and bound their work per request.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Final

from coordinator.commands.state import Folded, fold, job_of
from coordinator.runtime.journal import JournalFollower, StopAt
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.jsonview import summary, to_jsonable
from schemas.settings import ClusterSettings

#: Journal offsets one ``/jobs/{id}/events`` request reads at most (records of
#: other jobs are skipped by key, undecoded); ``next-offset`` goes on from there.
EVENTS_SCAN_LIMIT: Final = 50_000


class JournalReader:
    """Reads a cluster's journal for the REST API, one request at a time."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._follower: JournalFollower | None = None

    async def _reader(self) -> JournalFollower:
        if self._follower is None:
            follower = JournalFollower(
                self.settings.bootstrap_servers, Catalog(self.settings.cluster_id),
                keys=self.settings.journal_reader_keys(),
            )  # fmt: skip
            await follower.start()
            self._follower = follower
        return self._follower

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None

    async def job_events(
        self, job_id: str, start: int, limit: int
    ) -> tuple[list[tuple[int, ev.Event]], int, int]:
        """Up to `limit` journal events of `job_id` at offsets >= `start`; with the
        offset to go on from and the journal's end offset."""
        async with self._lock:
            reader = await self._reader()
            end = await reader.end_offset()
            found: list[tuple[int, ev.Event]] = []
            here = start
            while here < end and len(found) < limit and here - start < EVENTS_SCAN_LIMIT:
                upto = min(end, here + 5_000, start + EVENTS_SCAN_LIMIT)
                records = await reader.read_range(here, upto, key=job_id.encode())
                for offset, event in records:
                    if isinstance(event, ev.Event) and job_of(event) == job_id:
                        found.append((offset, event))
                        if len(found) == limit:
                            return found, offset + 1, end
                here = upto
            return found, here, end

    async def state_at(self, stop: StopAt) -> Folded:
        """The state up to `stop`, as ``jm replay --until/--to-offset`` folds it: from the
        newest readable ladder snapshot wholly before `stop` and the journal after it
        (an older snapshot, or offset 0, when one is missing or unreadable)."""
        async with self._lock:
            folded, _ = await fold(
                argparse.Namespace(), stop, use_snapshot=True, settings=self.settings
            )
            return folded


def event_entry(offset: int, event: ev.Event) -> dict[str, object]:
    """One journal event as ``/jobs/{id}/events`` lists it."""
    return {
        "offset": offset,
        "type": type(event).__name__,
        "time": event.event_time,
        "summary": summary(event, 160),
        "event": to_jsonable(event),
    }
