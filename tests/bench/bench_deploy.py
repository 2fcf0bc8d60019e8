"""Benchmark: submission to all RUNNING of a real 3-vertex job on real workers, with a breakdown.

Everything is a real process: one coordinator (``python -m coordinator coordinator``) on a
fresh cluster id and two workers (``python -m worker --slots 4``, each subtask in its own
slot process). The job is the one the issue names:

    sequence (p 2, count 50) --FORWARD--> map (p 2, mod_key) --HASH(key)--> keyed_count (p 2)

Jobs are submitted one at a time (the next once the previous one FINISHED, so slots are
free and every run starts from the same warm workers); the first ``WARMUP`` are not
measured. This process is the client and the observer: it stamps ``time.perf_counter()``
and the wall clock right before ``producer.send`` of the ``JobSubmitted``, and a
read_committed reader of the journal (fetch wait 500 ms: answered at once when a record or
commit marker comes) stamps each record on arrival; the
job is all RUNNING when the last subtask's ``TaskStateRecorded`` RUNNING of attempt 0
arrives. A second reader follows the workers' ``TaskStateChanged`` reports.

The breakdown, per subtask, from wall-clock times of one machine (ms):

- ``decide``: client send to the leader's decision that deployed it (``TaskAssigned.event_time``);
- ``commit``: decision to the ``TaskAssigned`` visible to the observer (the transaction's
  commit, plus the observer's fetch);
- ``delivery``: decision to the worker's DEPLOYING (``TaskStateChanged.event_time``: the
  worker received the ``DeployTask``);
- ``slot_start``: DEPLOYING to INITIALIZING (the spec reaches the slot process, the task starts);
- ``edge_clients``, ``operator_open``: the task's own start-up stages, from the ``startup
  ms:`` line it logs (worker/task.py): its edge producer and consumer ready (the slot's
  warm ones), its operators opened and restored. The edge topics are not on this path:
  the leader creates them as it decides the run, and the task's first send and fetch
  wait for them after RUNNING;
- ``first_report``: the worker's RUNNING to its ``TaskStateRecorded`` visible to the observer
  (the report's trip, the leader's decision and commit), in two parts: ``report``, the
  worker's RUNNING to the report visible on ``jm.reports`` (the slot's message to the
  worker, its producer), and ``record``, from there to the ``TaskStateRecorded`` (the
  leader's poll, decision and commit).

Each stage is given as its median over all measured subtasks and its value on the
critical path (the subtask that reached RUNNING last, per job, median over jobs).
"""

from __future__ import annotations

import asyncio
import functools
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.bench.bench_latency import percentiles
from tests.conftest import Stack
from tests.integration.harness import REPO, CoordinatorProcess, Producer, now_ms, signed_record
from tests.worker.harness import WorkerProcess

PARALLELISM = 2
WARMUP = 3
ES = ev.ExecutionState
Subtask = tuple[str, str, int]  # job, vertex, subtask
_STARTUP = re.compile(r"worker\.task\.([^/\s]+)/(\S+)\[(\d+)\]#0: startup ms: (.*)$", re.M)


def deploy_job(job_id: str, *, chaining: bool | None = None, count: int = 50) -> ev.JobSubmitted:
    """sequence -> map -> keyed count, parallelism 2, bounded (finishes on its own).
    `chaining` false: ``JobGraph.chaining`` off (by default sequence -> map chain)."""
    vertices = (
        ev.Vertex(id="numbers", name="numbers", operator="sequence", parallelism=PARALLELISM,
                  max_parallelism=8, config={"count": str(count)}),
        ev.Vertex(id="keyed", name="keyed", operator="map", parallelism=PARALLELISM,
                  max_parallelism=8, config={"function": "mod_key", "n": "4"}),
        ev.Vertex(id="count", name="count", operator="keyed_count", parallelism=PARALLELISM,
                  max_parallelism=8, config={"key_field": "key"}),
    )  # fmt: skip
    edges = (
        ev.Edge(source="numbers", target="keyed", partitioning=ev.Partitioning.FORWARD),
        ev.Edge(source="keyed", target="count", partitioning=ev.Partitioning.HASH,
                key_field="key"),
    )  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges, chaining=chaining is not False),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


@dataclass
class Seen:
    """What the readers saw: perf_counter on arrival, event times as written."""

    assigned: dict[Subtask, tuple[float, int]] = field(default_factory=dict)  # seen, decided
    slots: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # job -> (tm, slot)
    recorded: dict[Subtask, float] = field(default_factory=dict)  # RUNNING recorded, seen
    reported: dict[tuple[Subtask, ES], int] = field(default_factory=dict)  # worker event_time
    report_seen: dict[Subtask, float] = field(default_factory=dict)  # RUNNING report, seen
    status: dict[str, ev.JobStatus] = field(default_factory=dict)
    status_at: dict[tuple[str, ev.JobStatus], float] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)
    leader: bool = False


def _sub(t: ev.TaskRef) -> Subtask:
    return t.job_id, t.vertex_id, t.subtask_index


async def _follow(bootstrap: str, topic: str, partitions: int, seen: Seen) -> None:
    codec = default_codec()
    consumer = kafkaio.consumer(bootstrap, fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    await consumer.start()
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    try:
        while True:
            for records in (await consumer.getmany(*tps, timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    _note(seen, codec.decode(record.value or b""), now)
    finally:
        await consumer.stop()


def _note(seen: Seen, e: ev.Event, now: float) -> None:
    if isinstance(e, ev.TaskAssigned) and e.task.attempt == 0:
        seen.assigned[_sub(e.task)] = (now, e.event_time)
        seen.slots.setdefault(e.task.job_id, set()).add((e.slot.tm_id, e.slot.slot_index))
    elif isinstance(e, ev.TaskStateRecorded) and e.task.attempt == 0 and e.state is ES.RUNNING:
        seen.recorded.setdefault(_sub(e.task), now)
    elif isinstance(e, ev.TaskStateChanged) and e.task.attempt == 0:
        seen.reported.setdefault((_sub(e.task), e.state), e.event_time)
        if e.state is ES.RUNNING:
            seen.report_seen.setdefault(_sub(e.task), now)
    elif isinstance(e, ev.JobStatusChanged):
        seen.status[e.job_id] = e.to_status
        seen.status_at[(e.job_id, e.to_status)] = now
    elif isinstance(e, ev.TaskManagerJoined):
        seen.joined.add(e.tm_id)
    elif isinstance(e, ev.LeaderElected):
        seen.leader = True


def _all_running(seen: Seen, job_id: str) -> bool:
    """Every subtask of every vertex recorded RUNNING (the journal shows vertices, chained
    or not)."""
    return sum(1 for s in seen.recorded if s[0] == job_id) >= 3 * PARALLELISM


def _finished(seen: Seen, job_id: str) -> bool:
    return seen.status.get(job_id) is ev.JobStatus.FINISHED


async def _until(check: Any, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {seconds:.0f}s: {what}")
        await asyncio.sleep(0.005)


def _startup_lines(logs: str) -> dict[Subtask, dict[str, float]]:
    out: dict[Subtask, dict[str, float]] = {}
    for job, vertex, index, rest in _STARTUP.findall(logs):
        stages = dict(kv.split("=") for kv in rest.split())
        out[(job, vertex, int(index))] = {k: float(v) for k, v in stages.items()}
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _breakdown(
    seen: Seen, jobs: list[str], sent_wall: dict[str, int], startup: dict[Subtask, dict[str, float]]
) -> dict[str, Any]:
    per_stage: dict[str, list[float]] = {}
    critical: dict[str, list[float]] = {}
    for job in jobs:
        subtasks = [s for s in seen.assigned if s[0] == job]
        last = max(subtasks, key=lambda s: seen.recorded[s])
        for s in subtasks:
            seen_at, decided = seen.assigned[s]
            deploying = seen.reported.get((s, ES.DEPLOYING))
            initializing = seen.reported.get((s, ES.INITIALIZING))
            running = seen.reported.get((s, ES.RUNNING))
            stages: dict[str, float] = {"decide": decided - sent_wall[job]}
            if deploying is not None:
                stages["delivery"] = deploying - decided
            if deploying is not None and initializing is not None:
                stages["slot_start"] = initializing - deploying
            stages.update(startup.get(s, {}))
            if running is not None:
                # perf_counter and wall clock: the observer's arrival stamped as wall time.
                recorded_wall = time.time() * 1000 - (time.perf_counter() - seen.recorded[s]) * 1000
                stages["first_report"] = recorded_wall - running
                if s in seen.report_seen:
                    stages["report"] = (
                        recorded_wall - running - (seen.recorded[s] - seen.report_seen[s]) * 1000
                    )
                    stages["record"] = (seen.recorded[s] - seen.report_seen[s]) * 1000
                committed_wall = time.time() * 1000 - (time.perf_counter() - seen_at) * 1000
                stages["commit"] = committed_wall - decided
            for k, v in stages.items():
                per_stage.setdefault(k, []).append(v)
                if s == last:
                    critical.setdefault(k, []).append(v)
    order = ("decide", "commit", "delivery", "slot_start", "edge_clients", "operator_open",
             "first_report", "report", "record")  # fmt: skip
    return {
        "median_subtask_ms": {k: _median(per_stage.get(k, [])) for k in order},
        "critical_path_ms": {k: _median(critical.get(k, [])) for k in order},
    }


async def run(stack: Stack, jobs: int, *, simulated: bool = False, chaining: bool | None = None,
              slots: int = 4) -> dict[str, Any]:  # fmt: skip
    """Submission to all RUNNING of `jobs` measured submissions (after WARMUP).
    `simulated`: two benchmark workers (``tests.bench.fleet``: RUNNING reported the moment
    ``DeployTask`` arrives, FINISHED 0.2 s later) instead of real ones, the same job: the
    coordinator's share of the figure."""
    catalog = Catalog(f"bench-dep-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    seen = Seen()
    readers = [
        asyncio.create_task(_follow(stack.bootstrap, catalog.journal.name, 1, seen)),
        asyncio.create_task(
            _follow(stack.bootstrap, catalog.reports.name, catalog.reports.partitions, seen)
        ),
    ]
    coordinator = CoordinatorProcess(stack, catalog, "bench-1")
    workers: list[WorkerProcess] = []
    fleet: subprocess.Popen[bytes] | None = None
    if simulated:
        fleet = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", "tests.bench.fleet", stack.bootstrap, stack.redis_url,
             catalog.cluster_id, "--workers", "2", "--slots", str(slots), "--finish-after",
             "0.2", "--operators", "sequence,map,keyed_count"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    else:
        workers = [
            WorkerProcess(stack.bootstrap, catalog, f"bench-tm-{i}", "--slots", str(slots))
            for i in range(2)
        ]
    producer = kafkaio.producer(
        bootstrap_servers=stack.bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    await producer.start()
    sent: dict[str, float] = {}
    sent_wall: dict[str, int] = {}
    ids: list[str] = []
    try:
        await _until(lambda: seen.leader, "a leader elected", 180)
        await _until(lambda: len(seen.joined) >= 2, "2 workers joined", 180)
        await asyncio.sleep(1.0)  # slot processes started
        tag = uuid.uuid4().hex[:6]
        for i in range(WARMUP + jobs):
            job_id = f"dep-{tag}-{i:03d}"
            submission = deploy_job(job_id, chaining=chaining)
            topic, key, value, headers = signed_record(catalog, submission)
            sent_wall[job_id] = now_ms()
            sent[job_id] = time.perf_counter()
            await producer.send(topic, value, key=key, headers=headers)
            await _until(functools.partial(_all_running, seen, job_id), f"{job_id} RUNNING", 60)
            await _until(functools.partial(_finished, seen, job_id), f"{job_id} FINISHED", 60)
            if i >= WARMUP:
                ids.append(job_id)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # the last startup lines written
    finally:
        await producer.stop()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        logs = "".join(w.log() for w in workers)
        for w in workers:
            await w.close()
        if fleet is not None:
            fleet.terminate()
            fleet.wait(timeout=15)
        coordinator.stop()
    all_running = [
        (max(t for s, t in seen.recorded.items() if s[0] == j) - sent[j]) * 1000 for j in ids
    ]
    return {
        "bench": "deploy",
        "workers": "benchmark (simulated)" if simulated else "real",
        "job": "sequence -> map -> keyed_count, parallelism 2",
        "chaining": chaining,
        "slots_per_job": _median([float(len(seen.slots[j])) for j in ids]),
        "all_running": percentiles(all_running),
        **_breakdown(seen, ids, sent_wall, _startup_lines(logs)),
    }


async def throughput(stack: Stack, records: int, *, chaining: bool | None = None,
                     runs: int = 1) -> dict[str, Any]:  # fmt: skip
    """Records per second through the same job with `records` numbers (keyed into 4 keys),
    from the last subtask RUNNING to the job FINISHED as the journal shows them (the
    end-of-stream markers and the final reports included), best of `runs`."""
    catalog = Catalog(f"bench-thr-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    seen = Seen()
    reader = asyncio.create_task(_follow(stack.bootstrap, catalog.journal.name, 1, seen))
    coordinator = CoordinatorProcess(stack, catalog, "bench-1")
    workers = [
        WorkerProcess(stack.bootstrap, catalog, f"bench-tm-{i}", "--slots", "4") for i in range(2)
    ]
    rates: list[float] = []
    try:
        await _until(lambda: seen.leader, "a leader elected", 180)
        await _until(lambda: len(seen.joined) >= 2, "2 workers joined", 180)
        async with Producer(stack, catalog) as client:
            for i in range(runs):
                job_id = f"thr-{i}"
                await client.send(deploy_job(job_id, chaining=chaining, count=records))
                await _until(functools.partial(_all_running, seen, job_id), "RUNNING", 120)
                await _until(functools.partial(_finished, seen, job_id), "FINISHED", 600)
                began = max(t for s, t in seen.recorded.items() if s[0] == job_id)
                ended = seen.status_at[(job_id, ev.JobStatus.FINISHED)]
                rates.append(records / (ended - began))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        for w in workers:
            await w.close()
        coordinator.stop()
    return {
        "bench": "deploy-throughput",
        "job": "sequence -> map -> keyed_count, parallelism 2, real workers",
        "chaining": chaining,
        "records": records,
        "records_per_s": round(max(rates)),
        "runs_records_per_s": [round(r) for r in rates],
    }


if __name__ == "__main__":
    import json
    import os

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    stack = Stack(bootstrap, redis_url, "bench")
    if sys.argv[2:3] == ["--throughput"]:
        for chaining in (None, False):
            print(json.dumps(asyncio.run(throughput(stack, n, chaining=chaining))), flush=True)
        sys.exit(0)
    for simulated, chaining in ((False, None), (False, False), (True, None)):
        result = asyncio.run(run(stack, n, simulated=simulated, chaining=chaining))
        print(json.dumps(result), flush=True)
