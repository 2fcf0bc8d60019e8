"""``jm list`` / ``jm status`` from the latest snapshot + tail say what a full replay says
(issue 11, item 9)."""

from __future__ import annotations

import json

import pytest

from schemas import events as ev
from tests.integration.harness import (
    Cluster,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    status_of,
)
from tests.integration.test_cli_submit import jm

pytestmark = pytest.mark.integration


async def test_list_and_status_from_snapshot_equal_full_replay(cluster: Cluster) -> None:
    # A snapshot every 20 events: several snapshots, and a tail after the last one.
    c1 = cluster.coordinator("c1", "--snapshot-every-events", "20")
    await c1.wait_for_line("leads with epoch 1")
    stack, catalog = cluster.stack, cluster.catalog
    async with ProtocolWorker(stack, catalog, "tm-1", slots=10), \
            Producer(stack, catalog) as client, Journal(stack, catalog) as journal:  # fmt: skip
        # Rejected before any snapshot: it leaves only JobRejected in the journal.
        await client.send(job_submitted("snap-bad", parallelism=0))
        for n in range(4):
            await client.send(job_submitted(f"snap-{n}", parallelism=2))
        await journal.wait_until(
            lambda es: all(status_of(es, f"snap-{n}") == ev.JobStatus.RUNNING for n in range(4))
        )
        await client.send(job_submitted("snap-late", parallelism=1))  # after the snapshots
        await journal.wait_until(
            lambda es: (
                status_of(es, "snap-late") == ev.JobStatus.RUNNING
                and sum(isinstance(e, ev.SnapshotTaken) for _, e in es) >= 2
            )
        )
        # Freeze the journal: stop the leader, so both folds see the same end.
        c1.stop()

    fast = jm(stack, catalog, "list", "--json")
    full = jm(stack, catalog, "list", "--json", "--full-replay")
    assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
    assert "from the snapshot covering offset" in jm(stack, catalog, "list").stderr
    assert "replayed from offset 0" in jm(stack, catalog, "list", "--full-replay").stderr
    listed = json.loads(fast.stdout)
    assert listed == json.loads(full.stdout)
    assert {j["job_id"] for j in listed["jobs"]} >= {"snap-0", "snap-late"}

    for job in ("snap-0", "snap-late"):
        fast = jm(stack, catalog, "status", job, "--json")
        full = jm(stack, catalog, "status", job, "--json", "--full-replay")
        assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
        assert json.loads(fast.stdout) == json.loads(full.stdout)
        assert json.loads(fast.stdout)["recent_events"], job
    fast = jm(stack, catalog, "status", "snap-bad", "--json")
    full = jm(stack, catalog, "status", "snap-bad", "--json", "--full-replay")
    assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
    rejected = json.loads(fast.stdout)
    assert rejected == json.loads(full.stdout)
    assert rejected["status"] == "REJECTED" and rejected["rejections"], rejected
    text = jm(stack, catalog, "status", "snap-0")
    assert text.returncode == 0 and "RUNNING" in text.stdout, text.stderr
