"""Savepoint operations asked through this replica's REST API, and how each ended.

``POST /jobs/{id}/savepoints`` and ``POST /jobs/{id}/stop`` produce a
``SavepointRequested`` / ``StopWithSavepointRequested`` whose ``event_id`` is the
trigger id they answer with (32 hex digits, the shape of Flink's TriggerId).
A watch of the job's journal, opened before the request is sent, follows it to
its end (``JobWatch.savepoint``: the ``SavepointCompleted`` naming it, or the
refusal; a stop also waits for the job to end), and ``GET
/jobs/{id}/savepoints/{triggerid}`` reads the result here. Like Flink's
dispatcher cache, the table belongs to the replica that took the request and
is volatile: a trigger asked through another replica, or before a restart, is
unknown here (404), while the savepoint itself is a fact in the journal.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Final

from coordinator import client
from schemas import events as ev
from schemas.settings import ClusterSettings

log = logging.getLogger(__name__)

#: Trigger ids a client may choose (Flink's ``triggerId``): 32 hex digits.
TRIGGER_ID: Final = re.compile(r"[0-9a-f]{32}")
#: Finished operations remembered per replica (the oldest are forgotten first).
MAX_KEPT: Final = 1_000
#: Operations followed at once; more are refused (503) until some end.
MAX_IN_FLIGHT: Final = 100
#: How long an operation is followed before it is reported failed (Flink's
#: default checkpoint timeout, 10 min).
DEFAULT_TIMEOUT_S: Final = 600.0


class OperationStatus(enum.StrEnum):
    """Flink's QueueStatus.Id."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Operation:
    """One savepoint (or stop with savepoint) and what became of it.

    location: the savepoint's directory once written; failure: why not, when not."""

    trigger_id: str
    job_id: str
    stop: bool
    requested_ms: int
    status: OperationStatus = OperationStatus.IN_PROGRESS
    location: str | None = None
    failure: str | None = None


class TooManyOperations(Exception):
    """MAX_IN_FLIGHT operations are followed already."""


class SavepointOperations:
    """The table of this replica's savepoint operations and the tasks following them."""

    def __init__(self, settings: ClusterSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._ops: OrderedDict[tuple[str, str], Operation] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, job_id: str, trigger_id: str) -> Operation | None:
        return self._ops.get((job_id, trigger_id))

    async def trigger(
        self,
        request: ev.SavepointRequested | ev.StopWithSavepointRequested,
    ) -> Operation:
        """Send `request` and follow it; its event_id is the trigger id. A request
        whose trigger id is known already is not sent again (a client retrying)."""
        key = (request.job_id, request.event_id)
        known = self._ops.get(key)
        if known is not None:
            return known
        if len(self._tasks) >= MAX_IN_FLIGHT:
            raise TooManyOperations(f"{MAX_IN_FLIGHT} savepoint operations are in progress")
        op = Operation(
            trigger_id=request.event_id, job_id=request.job_id,
            stop=isinstance(request, ev.StopWithSavepointRequested),
            requested_ms=request.event_time,
        )  # fmt: skip
        watch = client.JobWatch(self.settings, request.job_id)
        await watch.__aenter__()
        try:
            await client.produce(self.settings, request)
        except BaseException:
            await watch.__aexit__(None, None, None)
            raise
        self._remember(op)
        task = asyncio.create_task(self._follow(watch, request, op))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def _follow(
        self,
        watch: client.JobWatch,
        request: ev.SavepointRequested | ev.StopWithSavepointRequested,
        op: Operation,
    ) -> None:
        started = time.monotonic()
        try:  # the watch was opened before the request was sent (trigger)
            await self._outcome(watch, request, op, started)
        except client.WaitTimeout as err:
            self._end(op, failure=str(err))
        except Exception as err:  # Kafka gone: say so rather than stay IN_PROGRESS forever
            log.warning("savepoint operation %s of job %s: %s: %s", op.trigger_id, op.job_id,
                        type(err).__name__, err)  # fmt: skip
            self._end(op, failure=f"{type(err).__name__}: {err}")
        finally:
            await watch.__aexit__(None, None, None)

    async def _outcome(
        self,
        watch: client.JobWatch,
        request: ev.SavepointRequested | ev.StopWithSavepointRequested,
        op: Operation,
        started: float,
    ) -> None:
        answer = await watch.savepoint(request, self.timeout_s)
        if not answer.accepted or not isinstance(answer.event, ev.SavepointCompleted):
            self._end(op, failure=answer.reason or "the savepoint failed")
            return
        location = answer.event.savepoint_path
        if op.stop:  # Flink's stop completes once the job has ended
            left = max(1.0, self.timeout_s - (time.monotonic() - started))
            status = await watch.until(ev.JobStatus.FINISHED, left)
            if status != ev.JobStatus.FINISHED:
                failure = f"the savepoint was written but the job ended {status}"
                self._end(op, location=location, failure=failure)
                return
        self._end(op, location=location)

    def _end(self, op: Operation, location: str | None = None, failure: str | None = None) -> None:
        done = replace(op, status=OperationStatus.COMPLETED, location=location, failure=failure)
        self._remember(done)

    def _remember(self, op: Operation) -> None:
        key = (op.job_id, op.trigger_id)
        self._ops[key] = op
        self._ops.move_to_end(key)
        excess = len(self._ops) - MAX_KEPT - MAX_IN_FLIGHT
        if excess > 0:  # forget the oldest finished ones; followed ones stay
            done = [k for k, o in self._ops.items() if o.status == OperationStatus.COMPLETED]
            for old in done[:excess]:
                del self._ops[old]
