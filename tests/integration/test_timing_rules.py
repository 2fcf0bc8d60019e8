"""Timeouts that break the timing rules (docs/ha.md) are refused at start, with what to change."""

from __future__ import annotations

import asyncio

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, joined

pytestmark = pytest.mark.integration


async def test_a_worker_refuses_a_leader_its_timeout_is_unsafe_against(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")  # heartbeat timeout 6 s
    worker = cluster.worker("tm-slow", 1, "--heartbeat-timeout", "30")
    assert await worker.wait(within=30) == 2
    log = worker.log()
    assert "refusing to run against leader c1" in log
    assert "jm worker --heartbeat-timeout 30 + --cancel-timeout 1 + --heartbeat-interval 1" in log
    assert "Start the worker with --heartbeat-timeout below 4" in log
    assert "or the coordinators with --heartbeat-timeout-ms above 32000" in log
    async with Journal(cluster.stack, cluster.catalog) as journal:
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.TaskManagerLost) for _, e in es)
        )
    assert joined(events, "tm-slow")
    (lost,) = [e for _, e in events if isinstance(e, ev.TaskManagerLost)]
    assert lost.reason == "deregistered: timeouts refused"


async def test_a_coordinator_refuses_a_heartbeat_timeout_no_worker_can_meet(
    cluster: Cluster,
) -> None:
    refused = cluster.coordinator("c1", "--heartbeat-timeout-ms", "3000")  # lease ttl 1.5 s
    deadline = asyncio.get_running_loop().time() + 30
    while refused.proc.poll() is None:
        assert asyncio.get_running_loop().time() < deadline, refused.output()
        await asyncio.sleep(0.1)
    assert refused.proc.returncode == 2
    out = refused.output()
    assert "--heartbeat-timeout-ms 3000 leaves workers no safe leader timeout" in out
    assert "--lease-ttl-ms 1500" in out and "raise --heartbeat-timeout-ms" in out
    assert "role" not in out  # it never started
