"""Fixtures for worker tests: start real workers, a minimal leader, a reports reader.

Short timeouts keep the suite fast: heartbeats every 0.2 s, a leader that
stays silent 2 s is lost, a task that ignores cancel for 1 s is killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.worker.harness import Leader, Reports, WorkerProcess

FAST = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2", "--cancel-timeout", "1")


@dataclass
class Cluster:
    """One worker (registered), its leader and its reports."""

    worker: WorkerProcess
    leader: Leader
    reports: Reports


StartCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def start_cluster(
    stack: Stack, catalog: Catalog, unique: Callable[[str], str]
) -> AsyncIterator[StartCluster]:
    """``await start_cluster(slots=2, epoch=1, keepalive=True)``: a registered worker
    (the leader knows its incarnation) and, if asked, keepalives every 0.3 s."""
    opened: list[Cluster] = []

    async def start(
        slots: int = 1, epoch: int = 1, keepalive: bool = True, flags: tuple[str, ...] = FAST
    ) -> Cluster:
        tm_id = unique("tm")
        reports = Reports(stack.bootstrap, catalog, tm_id)
        leader = Leader(stack.bootstrap, catalog, tm_id, epoch)
        worker = WorkerProcess(stack.bootstrap, catalog, tm_id, "--slots", str(slots), *flags)
        cluster = Cluster(worker, leader, reports)
        opened.append(cluster)
        await reports.start()
        await leader.start()
        registered = await reports.registration()
        leader.incarnation = registered.incarnation
        if keepalive:
            # The first keepalive announces the epoch; the heartbeats then say so.
            await leader.send(leader.keepalive())
            await reports.wait_for(
                lambda e: isinstance(e, ev.TaskManagerHeartbeat) and e.last_seen_epoch == epoch,
                what=f"heartbeat with epoch {epoch}",
            )
            leader.keep_alive_every(0.3)
        return cluster

    try:
        yield start
    finally:
        # Every close runs even when one raises (a client left open is collected later,
        # inside whichever test runs then); an error is raised once all have run.
        async with contextlib.AsyncExitStack() as closing:
            for cluster in opened:
                closing.push_async_callback(cluster.reports.close)
                closing.push_async_callback(cluster.worker.close)
                closing.push_async_callback(cluster.leader.close)
