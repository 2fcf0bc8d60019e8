"""A heartbeat from no registered worker is counted by the leader and shown by ``jm replicas``
(issue 11, item 8), against a real coordinator process and ``jm`` as its own process."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Producer, now_ms
from tests.integration.test_cli_submit import jm

pytestmark = pytest.mark.integration


async def test_heartbeats_of_unknown_workers_are_counted_and_shown(cluster: Cluster) -> None:
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("leads with epoch 1")
    async with Producer(cluster.stack, cluster.catalog) as client:
        for sequence in range(3):
            beat = ev.TaskManagerHeartbeat(
                event_id=f"hb-{sequence}", event_time=now_ms(), tm_id="nobody-registered",
                incarnation="inc-1", sequence=sequence, slots_free=1, running_tasks=0,
            )  # fmt: skip
            await client.send(beat)
    deadline = time.monotonic() + 30
    while True:
        shown = await asyncio.to_thread(jm, cluster.stack, cluster.catalog, "replicas")
        assert shown.returncode == 0, shown.stderr
        if "NOTE 3 heartbeat(s)" in shown.stdout:
            break
        assert time.monotonic() < deadline, f"not shown in 30 s:\n{shown.stdout}"
        await asyncio.sleep(0.5)
    assert (
        "c1: NOTE 3 heartbeat(s) from no registered worker incarnation were ignored" in shown.stdout
    )
    as_json = jm(cluster.stack, cluster.catalog, "replicas", "--json")
    (row,) = json.loads(as_json.stdout)
    assert row["replica_id"] == "c1" and row["unknown_heartbeats"] == 3
