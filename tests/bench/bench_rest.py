"""Benchmark: the REST API's reads with 1,000 jobs in the state, on a leader and a standby.

1. Two real replicas (``python -m coordinator coordinator``, each with its REST
   API on a free port) of a fresh cluster; one ``ProtocolWorker`` with 16
   slots offering ``sequence``. ``jobs`` jobs (one vertex, parallelism 1) are
   submitted: 16 run, the others wait for a slot (``--slot-wait-timeout-ms``
   of an hour keeps them waiting), so the state holds every one of them.
2. Once both replicas list every job, for each replica: ``ROUNDS`` sequential
   ``GET /jobs/overview`` and ``GET /jobs/{id}`` (of a running job) from one
   client connection, latency from send to the whole body read (p50/p99/max).
3. Requests per second: ``CLIENTS`` concurrent connections ask ``GET /jobs/{id}``
   (and ``GET /jobs/overview``) for ``seconds``; the replica serves them on its
   one event-loop thread, so the figure is one core's. The replica's CPU time
   over the window is read from /proc: ``per_cpu_second`` is the rate the
   core would give if the replica had it to itself (the client shares the machine).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import aiohttp

from schemas import kafkaio
from schemas.catalog import Catalog
from tests.bench.bench_ha import cpu_s
from tests.bench.bench_latency import percentiles
from tests.conftest import Stack
from tests.integration.harness import CoordinatorProcess, Producer, ProtocolWorker, job_submitted

ROUNDS = 500
CLIENTS = 8
SLOTS = 16
FLAGS = ("--slot-wait-timeout-ms", "3600000", "--rest-port", "0")


def _url(proc: CoordinatorProcess) -> str:
    match = re.search(r"^rest (http://\S+)$", proc.output(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{proc.replica_id} printed no REST address:\n{proc.output()[-2000:]}")
    return match.group(1)


async def _listed(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(base + "/jobs") as r:
        return len((await r.json())["jobs"])


async def _latency(session: aiohttp.ClientSession, url: str, rounds: int) -> dict[str, Any]:
    samples = []
    size = 0
    for _ in range(20):  # warm-up
        async with session.get(url) as r:
            await r.read()
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(url) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: {r.status} {body[:300]!r}")
        samples.append((time.perf_counter() - started) * 1000)
        size = len(body)
    return {**percentiles(samples), "body_bytes": size}


async def _throughput(url: str, pid: int, seconds: float) -> dict[str, Any]:
    done = 0
    stop = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < stop:
            async with session.get(url) as r:
                await r.read()
            done += 1

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, t0 = cpu_s(pid), time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
        cpu, wall = cpu_s(pid) - cpu0, time.perf_counter() - t0
    return {
        "requests": done,
        "per_second": round(done / wall),
        "server_cpu_s": round(cpu, 2),
        "per_cpu_second": round(done / cpu) if cpu else None,
    }


async def run(stack: Stack, jobs: int = 1000, rounds: int = ROUNDS,
              seconds: float = 5.0) -> list[dict[str, Any]]:  # fmt: skip
    catalog = Catalog(f"bench-rest-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    leader = CoordinatorProcess(stack, catalog, "rest-1", *FLAGS)
    standby: CoordinatorProcess | None = None
    try:
        await leader.wait_for_line("role LEADER")
        standby = CoordinatorProcess(stack, catalog, "rest-2", *FLAGS)
        await standby.wait_for_line("role STANDBY")
        await standby.wait_for_line("rest http://")
        replicas = {"leader": leader, "standby": standby}
        async with ProtocolWorker(stack, catalog, "tm-1", SLOTS), \
                Producer(stack, catalog) as client, aiohttp.ClientSession() as session:  # fmt: skip
            await asyncio.sleep(1.0)  # the worker's registration before the jobs
            ids = [f"bench-{i:05d}" for i in range(jobs)]
            for job_id in ids:
                await client.send(job_submitted(job_id, parallelism=1))
            deadline = time.monotonic() + 300
            for proc in replicas.values():
                while await _listed(session, _url(proc)) < jobs:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{proc.replica_id} does not list {jobs} jobs")
                    await asyncio.sleep(0.5)
            results = []
            for role, proc in replicas.items():
                base = _url(proc)
                for what, path in (("jobs_overview", "/jobs/overview"),
                                   ("job", f"/jobs/{ids[0]}")):  # fmt: skip
                    results.append({
                        "bench": "rest", "replica": role, "endpoint": path.replace(ids[0], "{id}"),
                        "what": what, "jobs": jobs,
                        "latency": await _latency(session, base + path, rounds),
                        "throughput": await _throughput(base + path, proc.proc.pid, seconds),
                    })  # fmt: skip
            return results
    finally:
        if standby is not None:
            standby.stop()
        leader.stop()


def _main() -> None:
    """A small run against the broker and Redis of the environment (a check, not figures)."""
    import json
    import os

    stack = Stack(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                  os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "env")  # fmt: skip
    for r in asyncio.run(run(stack, jobs=50, rounds=30, seconds=1.0)):
        print(json.dumps(r))


if __name__ == "__main__":
    _main()
