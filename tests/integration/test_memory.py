"""The coordinator's memory limits on real processes (docs/memory.md): ended jobs past the
retention count leave memory and stay replayable; a too-small
``jobmanager.memory.process.size`` is refused at start-up, saying what to change;
``/jobmanager/metrics`` shows resident memory and the state's size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator.commands.replica import read_replicas
from schemas import events as ev
from schemas.settings import ClusterSettings
from tests.integration.harness import Cluster, Producer, now_ms, until
from tests.integration.test_rest_reads import Api, eventually, rest_url

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def jm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    stack, cluster_id = cluster.stack, cluster.catalog.cluster_id
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap, REDIS_URL=stack.redis_url,
               JM_CLUSTER_ID=cluster_id)  # fmt: skip
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120, check=False)  # fmt: skip


def bounded_job(job_id: str) -> ev.JobSubmitted:
    """A job that finishes by itself: a sequence source of 20 records."""
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=(ev.Vertex(
            id="src", name="Source", operator="sequence", parallelism=1, max_parallelism=8,
            config={"count": "20"}),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


@pytest.mark.timeout(300)
async def test_ended_jobs_past_the_retention_count_leave_memory_and_stay_replayable(
    cluster: Cluster,
) -> None:
    # Count 1, age 1 h: only the count can archive within the test.
    c1 = cluster.coordinator("c1", "-D", "jobmanager.retention.ended-jobs.max-count=1",
                             "--archive-after-ms", "3600000")  # fmt: skip
    await c1.wait_for_line("role LEADER", seconds=120)  # generous: a loaded CI machine
    await c1.wait_for_line("rest http://", seconds=120)
    cluster.worker("tm-1", 2)
    async with aiohttp.ClientSession() as session, \
            Producer(cluster.stack, cluster.catalog) as client:  # fmt: skip
        api = Api(session, rest_url(c1))

        async def joined() -> bool:
            return bool((await api.json("/taskmanagers"))["taskmanagers"])

        await eventually(joined, "tm-1 to register", 120)

        async def status(job_id: str) -> Any:
            async with session.get(f"{api.base}/jobs/{job_id}/status") as r:
                return r.status == 200 and (await r.json())["status"] == "FINISHED"

        for job_id in ("first", "second"):
            await client.send(bounded_job(job_id))
            await eventually(lambda j=job_id: status(j), f"{job_id} to finish", 120)

        async def archived() -> Any:
            async with session.get(f"{api.base}/jobs/first") as r:
                return r.status == 404

        await eventually(archived, "the first job to be archived (past the count)", 120)
        # The one that ended last stays in memory: the count is 1, the age 1 h.
        assert (await api.json("/jobs/second"))["state"] == "FINISHED"
        [reason] = await api.error("/jobs/first", 404)
        assert "ended FINISHED and was archived" in reason
        wanted = ["jm.jobs.in-memory", "jm.jobs.archived", "jm.memory.resident-bytes",
                  "jm.state.estimated-bytes", "jm.state.jobs"]  # fmt: skip
        metrics = {
            m["id"]: int(m["value"])
            for m in await api.json("/jobmanager/metrics?get=" + ",".join(wanted))
        }
        assert metrics["jm.jobs.in-memory"] == metrics["jm.state.jobs"] == 1, metrics
        assert metrics["jm.jobs.archived"] == 1, metrics
        assert metrics["jm.memory.resident-bytes"] > 10 * 2**20, metrics
        assert metrics["jm.state.estimated-bytes"] > 0, metrics

    # Still in the log, replayable: a replica that folds the whole journal (no snapshot)
    # reaches the leader's digest at the same offset, and lists the job as archived.
    c2 = cluster.coordinator("c2", "--no-snapshots")
    await c2.wait_for_line("role STANDBY", seconds=120)
    settings = ClusterSettings(bootstrap_servers=cluster.stack.bootstrap,
                               cluster_id=cluster.catalog.cluster_id)  # fmt: skip
    statuses: dict[str, ev.ReplicaStatus] = {}

    async def same_offset() -> bool:
        statuses.update(await read_replicas(settings))
        if not {"c1", "c2"} <= set(statuses):
            return False
        return statuses["c1"].applied_offset == statuses["c2"].applied_offset

    await eventually(same_offset, "the full replay to reach the leader's offset", 120)
    assert statuses["c1"].digest == statuses["c2"].digest, "replay and leader disagree"

    listed = jm(cluster, "list", "--archived", "--json", "--full-replay")
    assert listed.returncode == 0, listed.stderr
    rows = {r["job_id"]: r for r in json.loads(listed.stdout)["jobs"]}
    assert rows["first"]["status"] == "ARCHIVED:FINISHED" and rows["first"]["archived"]
    assert rows["second"]["status"] == "FINISHED"
    shown = jm(cluster, "status", "first", "--full-replay")
    assert "archived" in shown.stdout, shown.stdout + shown.stderr
    assert c1.proc.poll() is None and c2.proc.poll() is None


async def test_a_too_small_process_size_is_refused_at_start_with_what_to_change(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = tmp_path / "jm.yaml"
    config.write_text("jobmanager:\n  memory:\n    process:\n      size: 180m\n")
    c1 = cluster.coordinator("small", "--config", str(config))
    await until(lambda: c1.proc.poll() is not None, "the coordinator to refuse", 60)
    assert c1.proc.returncode == 2, c1.output()
    out = c1.output()
    assert "jobmanager.memory.process.size 180m is below the" in out, out
    assert "set jobmanager.memory.process.size to" in out, out
    assert "or lower jobmanager.subtasks.max to" in out, out
    assert "role" not in out  # it never joined the cluster
    # What the message says to change, changed: it starts.
    fits = cluster.coordinator("fits", "--config", str(config), "-D",
                               "jobmanager.subtasks.max=10000")  # fmt: skip
    await fits.wait_for_line("role LEADER", seconds=120)
