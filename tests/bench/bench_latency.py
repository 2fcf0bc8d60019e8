"""Benchmark: submission to JobAccepted, and submission to all tasks RUNNING.

One real coordinator process (``python -m coordinator coordinator --id
bench-1``) on a fresh cluster id, and 4 ``ProtocolWorker``s (8 slots each) in
a second process (``tests.bench.fleet``); tasks finish 0.2 s after they run,
so slots free up. This process is the client and the observer:

- the client stamps ``time.perf_counter()`` right before it calls
  ``producer.send`` of a ``JobSubmitted`` (parallelism 4, operator
  ``sequence``) and does not wait for the acknowledgement before the next one;
- a read_committed journal reader (fetch wait 5 ms) stamps every batch as it
  arrives; it matches ``JobAccepted.submission.event_id`` (accepted) and the
  last subtask's ``TaskStateRecorded`` RUNNING of attempt 0 (all RUNNING).

Two modes, each with its own jobs: ``paced`` (one submission every
1/rate s) and ``burst`` (all back to back). The journal records of the
measured window also give the leader's transaction sizes: a transaction's
journal records have consecutive offsets and its commit marker takes the next
one, so every run of consecutive offsets is one transaction (transactions
that wrote nothing to the journal are not seen).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.signing import KeyRing
from tests.bench.journal import arrivals
from tests.conftest import Stack
from tests.integration.harness import REPO, CoordinatorProcess, job_submitted, signed_record

PARALLELISM = 4


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of `values` in ms, rounded to 0.1, by the nearest-rank method:
    the p-th percentile is the smallest value with at least p % of the values at or
    below it, i.e. the ceil(p / 100 * n)-th smallest (1..10 gives p50 = 5)."""
    if not values:
        return {}
    s = sorted(values)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]

    return {
        "n": len(s),
        "p50_ms": round(rank(50), 1),
        "p95_ms": round(rank(95), 1),
        "p99_ms": round(rank(99), 1),
        "max_ms": round(s[-1], 1),
        "mean_ms": round(sum(s) / len(s), 1),
    }


@dataclass
class Watch:
    """What the journal reader saw, stamped on arrival."""

    sent: dict[str, float] = field(default_factory=dict)  # submission event_id -> t
    job_of: dict[str, str] = field(default_factory=dict)  # job id -> submission event_id
    accepted: dict[str, float] = field(default_factory=dict)  # job id -> t
    running: dict[str, set[int]] = field(default_factory=dict)
    all_running: dict[str, float] = field(default_factory=dict)  # job id -> t
    joined: set[str] = field(default_factory=set)
    # Wall-clock breakdown of acceptance (ms, one machine, one clock): client stamp
    # to the leader's decision (JobAccepted.event_time), and decision to visible here.
    to_decision: dict[str, float] = field(default_factory=dict)
    to_visible: dict[str, float] = field(default_factory=dict)
    elected: bool = False
    offsets: list[int] = field(default_factory=list)
    record_offsets: bool = False


async def _watch(bootstrap: str, catalog: Catalog, w: Watch) -> None:
    codec = default_codec()
    wanted = {b"JobAccepted", b"TaskStateRecorded", b"TaskManagerJoined", b"LeaderElected"}
    async for now, records in arrivals(bootstrap, catalog):
        wall_ms = time.time() * 1000
        for record in records:
            if w.record_offsets:
                w.offsets.append(record.offset)
            kind = dict(record.headers).get("event-type")
            if kind not in wanted:
                continue
            event = codec.decode(record.value or b"")
            if isinstance(event, ev.JobAccepted):
                job_id = event.submission.job_id
                w.accepted.setdefault(job_id, now)
                w.to_decision[job_id] = event.event_time - event.submission.event_time
                w.to_visible[job_id] = wall_ms - event.event_time
            elif isinstance(event, ev.TaskStateRecorded):
                t = event.task
                if event.state is ev.ExecutionState.RUNNING and t.attempt == 0:
                    seen = w.running.setdefault(t.job_id, set())
                    seen.add(t.subtask_index)
                    if len(seen) == PARALLELISM:
                        w.all_running.setdefault(t.job_id, now)
            elif isinstance(event, ev.TaskManagerJoined):
                w.joined.add(event.tm_id)
            elif isinstance(event, ev.LeaderElected):
                w.elected = True


async def _until(check: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {seconds:.0f}s: {what}")
        await asyncio.sleep(0.02)


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _transaction_sizes(offsets: list[int]) -> dict[str, float]:
    runs: list[int] = []
    previous = None
    for offset in offsets:
        if previous is not None and offset == previous + 1:
            runs[-1] += 1
        else:
            runs.append(1)
        previous = offset
    if not runs:
        return {}
    s = sorted(runs)
    return {
        "transactions": len(s),
        "mean": round(sum(s) / len(s), 1),
        "p50": s[len(s) // 2],
        "p95": s[min(len(s) - 1, int(len(s) * 0.95))],
        "max": s[-1],
    }


async def _phase(
    producer: AIOKafkaProducer,
    catalog: Catalog,
    w: Watch,
    proc_pid: int,
    mode: str,
    jobs: int,
    rate: float,
    keys: KeyRing | None = None,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    ids = [f"{mode}-{tag}-{i:04d}" for i in range(jobs)]
    w.offsets.clear()
    w.record_offsets = True
    cpu0, wall0 = _cpu_s(proc_pid), time.perf_counter()
    futures = []
    for i, job_id in enumerate(ids):
        if mode == "paced":
            await asyncio.sleep(max(0.0, wall0 + i / rate - time.perf_counter()))
        submission = job_submitted(job_id, parallelism=PARALLELISM)
        topic, key, value, headers = signed_record(catalog, submission, keys)
        w.job_of[job_id] = submission.event_id
        w.sent[job_id] = time.perf_counter()
        futures.append(await producer.send(topic, value, key=key, headers=headers))
    await asyncio.gather(*futures)
    sent_s = time.perf_counter() - wall0
    await _until(
        lambda: all(j in w.all_running for j in ids), f"{mode}: every job all RUNNING", 180
    )
    wall = time.perf_counter() - wall0
    cpu = _cpu_s(proc_pid) - cpu0
    w.record_offsets = False
    accepted = [(w.accepted[j] - w.sent[j]) * 1000 for j in ids]
    running = [(w.all_running[j] - w.sent[j]) * 1000 for j in ids]
    return {
        "mode": mode,
        "jobs": jobs,
        "rate_per_s": rate if mode == "paced" else round(jobs / sent_s),
        "accepted": percentiles(accepted),
        "all_running": percentiles(running),
        "accepted_breakdown_p50_ms": {
            "client_to_decision": percentiles([w.to_decision[j] for j in ids]).get("p50_ms"),
            "decision_to_visible": percentiles([w.to_visible[j] for j in ids]).get("p50_ms"),
        },
        "leader_cpu_pct": round(100 * cpu / wall, 1),
        "journal_transactions": _transaction_sizes(w.offsets),
    }


async def run(stack: Stack, jobs: int, rate: float, unsigned: bool = False,
              extra: tuple[str, ...] = (), modes: tuple[str, ...] = ("paced", "burst"),
              ) -> list[dict[str, Any]]:  # fmt: skip
    """`unsigned`: the coordinator runs with --insecure-unsigned and the client does not
    sign (the cost of signed records; the simulated workers sign either way). `extra`:
    more coordinator flags (bench_telemetry: its exporters); `modes`: the phases run."""
    catalog = Catalog(f"bench-lat-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    w = Watch()
    watcher = asyncio.create_task(_watch(stack.bootstrap, catalog, w))
    flags = (("--insecure-unsigned",) if unsigned else ()) + extra
    coordinator = CoordinatorProcess(stack, catalog, "bench-1", *flags)
    keys = KeyRing.insecure() if unsigned else None
    fleet_log = open(f"/tmp/jm-bench-{catalog.cluster_id}-fleet.log", "w")  # noqa: SIM115, ASYNC230
    fleet = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "tests.bench.fleet", stack.bootstrap, stack.redis_url,
         catalog.cluster_id, "--workers", "4", "--slots", "8", "--finish-after", "0.2",
         *(("--insecure-unsigned",) if unsigned else ())],
        cwd=REPO, stdout=fleet_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    producer = kafkaio.producer(
        bootstrap_servers=stack.bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    await producer.start()
    try:
        await _until(lambda: w.elected, "a leader elected", 60)
        await _until(lambda: len(w.joined) >= 4, "4 workers joined", 60)
        # Warm-up (imports, connections, first transactions): not measured.
        await _phase(producer, catalog, w, coordinator.proc.pid, "paced", 20, rate, keys)
        await asyncio.sleep(1.0)
        out = []
        for mode in modes:
            result = await _phase(producer, catalog, w, coordinator.proc.pid, mode, jobs, rate,
                                  keys)  # fmt: skip
            out.append({"bench": "latency", "signed": not unsigned, **result})
            await asyncio.sleep(2.0)  # let the last tasks finish and slots free up
        return out
    finally:
        await producer.stop()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        fleet.terminate()
        try:
            fleet.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fleet.kill()
        fleet_log.close()
        coordinator.stop()


if __name__ == "__main__":
    import json

    bootstrap, redis_url = sys.argv[1], sys.argv[2]
    unsigned = sys.argv[4:5] == ["--insecure-unsigned"]
    results = asyncio.run(
        run(Stack(bootstrap, redis_url, "bench"), int(sys.argv[3]), 20.0, unsigned)
    )
    for r in results:
        print(json.dumps(r))
