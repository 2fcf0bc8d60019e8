"""Benchmark: wall time of real ``jm`` commands on a 1M-event journal.

1. A journal of the replay benchmark's workload (``tests/bench/workload.py``,
   written by ``bench_replay._write``), or the one a run already wrote
   (``reuse``: its cluster id), and a snapshot of its state as of 10,000
   offsets before its end (the leader writes one every 10,000 events, so this
   is the longest tail a healthy cluster leaves), written as the leader does.
2. Each command runs as a real subprocess (``python -m coordinator ...``, what
   the ``jm`` script runs), ``ROUNDS`` times, wall time from spawn to exit:
   ``jm --help``, ``jm list``, ``jm status JOB`` (a job of the final state),
   and ``jm list --full-replay`` (the whole journal from offset 0, for
   comparison). Nothing is cached between runs but what the OS caches.
   Each sample also records the CPU the subprocess used (user + system, from
   ``getrusage``) and the 1-minute load average: on a shared 2-core machine
   wall time is CPU time stretched by whatever else runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from schemas import kafkaio
from schemas.catalog import Catalog
from tests.bench import bench_replay
from tests.bench.bench_ha import _write_snapshot
from tests.bench.journal import end_offset
from tests.bench.workload import JournalGenerator
from tests.integration.harness import REPO

ROUNDS = 5
#: Offsets between the snapshot and the end of the journal (the snapshot policy's default).
TAIL = 10_000


async def prepare(bootstrap: str, events: int, reuse: str | None = None) -> dict[str, Any]:
    """A journal of `events` events (or the one of cluster `reuse`) with a snapshot
    covering all but its last TAIL offsets."""
    written: dict[str, Any] = {}
    catalog = Catalog(reuse or f"bench-cli-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)  # idempotent
    end = await end_offset(bootstrap, catalog)
    reused = end > 0
    if not reused:  # a new cluster id, or one whose journal is empty: write it
        written = await bench_replay._write(bootstrap, catalog, JournalGenerator(catalog), events)
        end = await end_offset(bootstrap, catalog)
    snap = await _write_snapshot(bootstrap, catalog, max(0, end - TAIL))
    return {"cluster_id": catalog.cluster_id, "end_offset": end, "snapshot": snap,
            "reused": reused, "write_s": round(written.get("write_s", 0.0), 1)}  # fmt: skip


def _env(bootstrap: str, cluster_id: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JM_CLUSTER_ID": cluster_id,
            "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one `jm` subprocess."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "coordinator", *args], env=env, check=False,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"jm {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu, done.stdout


def _stats(args: list[str], env: dict[str, str], rounds: int) -> dict[str, Any]:
    walls, cpus, loads = [], [], []
    for _ in range(rounds):
        wall, cpu, _ = _time(args, env)
        walls.append(wall)
        cpus.append(cpu)
        loads.append(os.getloadavg()[0])
    return {"median_s": round(statistics.median(walls), 3),
            "min_s": round(min(walls), 3), "max_s": round(max(walls), 3),
            "samples_s": [round(s, 3) for s in walls],
            "cpu_median_s": round(statistics.median(cpus), 3),
            "load_1m": [round(x, 1) for x in loads]}  # fmt: skip


def measure(bootstrap: str, cluster_id: str, rounds: int = ROUNDS) -> dict[str, Any]:
    env = _env(bootstrap, cluster_id)
    _, _, listed = _time(["list", "--json"], env)  # also warms the OS caches
    jobs = json.loads(listed)["jobs"]
    job = jobs[-1]["job_id"] if jobs else "no-such-job"
    commands = {
        "help": ["--help"],
        "list": ["list"],
        "status": ["status", job],
        "list_full_replay": ["list", "--full-replay"],
    }
    out: dict[str, Any] = {"job": job, "jobs_listed": len(jobs)}
    for name, args in commands.items():
        out[name] = _stats(args, env, rounds)
    return out


def run(bootstrap: str, events: int, reuse: str | None = None) -> dict[str, Any]:
    prepared = asyncio.run(prepare(bootstrap, events, reuse))
    return {"bench": "cli", "events": events, **prepared,
            **measure(bootstrap, prepared["cluster_id"])}  # fmt: skip


if __name__ == "__main__":
    # python -m tests.bench.bench_cli BOOTSTRAP EVENTS [CLUSTER_ID to reuse]
    reuse = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), reuse)))
