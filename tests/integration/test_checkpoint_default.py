"""``execution.checkpointing.interval``: the cluster's checkpoint interval for a job whose
checkpoint_config does not set one, filled in where the job enters (``POST /jobs`` on a
real coordinator, ``jm submit`` from its own settings), so the journaled submission
(JobAccepted) carries it and a replay reads the same. A job that sets its interval,
0 included, keeps it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from schemas import events as ev
from tests.integration.harness import Cluster, Journal
from tests.integration.test_rest_writes import rest_url

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def body(job_id: str, **extra: object) -> dict[str, object]:
    return {"job_id": job_id, "name": job_id,
            "vertices": [{"id": "numbers", "operator": "sequence", "parallelism": 1,
                          "config": {"count": "10"}}], **extra}  # fmt: skip


def jm_submit(job_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator", "submit", str(job_file), "--no-wait"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip


def intervals(events: list[tuple[int, ev.Event]]) -> dict[str, int]:
    """Each accepted job's interval, as the journal's JobAccepted carries its submission."""
    return {
        e.submission.job_id: e.submission.checkpoint_config.interval_ms
        for _, e in events
        if isinstance(e, ev.JobAccepted)
    }


async def test_jobs_without_an_interval_get_the_cluster_default(
    cluster: Cluster, tmp_path: Path
) -> None:
    leader = cluster.coordinator("c1", "-D", "execution.checkpointing.interval=5s")
    await leader.wait_for_line("role LEADER")
    url = await rest_url(leader)
    async with aiohttp.ClientSession() as session:
        for job in (body("unset"), body("zero", checkpoint_config={"interval_ms": 0}),
                    body("own", checkpoint_config={"interval_ms": 750, "timeout_ms": 9000}),
                    body("timeout-only", checkpoint_config={"timeout_ms": 9000})):  # fmt: skip
            async with session.post(f"{url}/jobs?timeout=1", json=job) as r:
                # 504: produced, not answered within 1 s on a loaded machine (still queued).
                assert r.status < 300 or r.status == 504, await r.text()
    # jm submit: its own settings (here the environment; a config file reads the same).
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(body("cli")))
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=cluster.stack.bootstrap,
               REDIS_URL=cluster.stack.redis_url, JM_CLUSTER_ID=cluster.catalog.cluster_id,
               JM_EXECUTION_CHECKPOINTING_INTERVAL="7s")  # fmt: skip
    done = await asyncio.to_thread(jm_submit, job_file, env)
    assert done.returncode == 0, done.stderr
    bad = await asyncio.to_thread(
        jm_submit, job_file, {**env, "JM_EXECUTION_CHECKPOINTING_INTERVAL": "soon"}
    )
    assert bad.returncode == 1
    assert "execution.checkpointing.interval" in bad.stderr, bad.stderr
    async with Journal(cluster.stack, cluster.catalog) as journal:
        events = await journal.wait_until(lambda es: len(intervals(es)) == 5, 60)
    assert intervals(events) == {
        "unset": 5000, "zero": 0, "own": 750, "timeout-only": 5000, "cli": 7000,
    }  # fmt: skip
