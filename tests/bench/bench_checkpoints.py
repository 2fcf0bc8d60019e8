"""Benchmarks of checkpoints (issue 12), on a real coordinator (``--allow-checkpointing``).

Every benchmark runs ``python -m coordinator coordinator`` on a fresh cluster id; this
process submits the job and reads the journal (read_committed, fetch wait 5 ms), stamping
every batch with ``time.perf_counter()`` as it arrives.

- ``trigger``: trigger-to-complete of checkpoints with trivial state. (a) 256 subtasks:
  one ``sequence`` vertex of parallelism 256 on the protocol workers of
  ``tests.bench.fleet --ack-checkpoints`` (8 simulated TaskManagers x 32 slots, one process
  each; each ``TriggerCheckpoint`` is acknowledged at once for its subtask, no state is
  written). 256 real subtasks are 256 slot processes: more than this 2-core machine runs.
  (b) Real workers: 2 ``python -m worker`` with 8 slots, ``sequence`` (``rate`` 20/s) of
  parallelism 16 (each snapshot is the source position, written to the Kafka state store).
  Per completed checkpoint: ``duration_ms`` of ``CheckpointCompleted`` (the leader's clock,
  trigger to completion) and the observed time from ``CheckpointTriggered`` to
  ``CheckpointCompleted`` arriving at the reader.
- ``demo``: compose/demo-job.yaml (sequence 200/s -> map -> keyed_count(2) -> kafka_sink(2))
  with ``checkpoint_config: {interval_ms: 1000}`` on 2 real workers (4 slots each): duration
  and size of each completed checkpoint.
- ``throughput``: the data-plane bench's keyed job (sequence(1, ``count`` N) -HASH->
  keyed_count(2) -FORWARD-> kafka_sink(2), distinct keys) on one real worker (5 slots),
  submitted to the coordinator with checkpoints every 1,000 ms and without, runs
  alternating; the clock runs from ``JobAccepted`` to the job FINISHED (both read from
  the journal). The checkpointed runs tolerate failed checkpoints (``tolerable_failures``
  1,000): a checkpoint in flight when the bounded source finishes is declined (FLIP-147 is
  not built yet), which would otherwise fail the job over.
- ``kill``: 3 real workers (2 slots each, default timings: the coordinator declares a
  silent worker lost after 12,000 ms), an unbounded keyed job (sequence 100/s -HASH->
  keyed_count(2)) checkpointed every 1,000 ms, FIXED_DELAY restart after 1,000 ms.
  ``kill -9`` of a worker running a ``keyed_count`` subtask once a checkpoint completed;
  measured from the signal until every subtask's latest attempt is RUNNING on a live
  worker; the restore is confirmed from the workers' ``restored checkpoint N`` log lines
  of the new attempts (N = the latest checkpoint completed before the kill, or later).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

from aiokafka.admin import NewTopic

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.jobgraph import load_document, parse_job_spec, to_job_submitted
from tests.bench import bench_keyed
from tests.bench.bench_ha import end, until
from tests.bench.journal import arrivals
from tests.conftest import Stack
from tests.integration.harness import REPO, CoordinatorProcess, Producer, now_ms
from tests.worker.harness import WorkerProcess

E = ev.ExecutionState
P = ev.Partitioning
Seen = list[tuple[float, ev.Event]]


def pct(values: list[float]) -> dict[str, Any]:
    """n, p50, p95 (nearest rank), max, mean of `values` (ms), rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    s = sorted(values)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(len(s) * q) - 1))]

    return {"n": len(s), "p50_ms": round(rank(0.5), 1), "p95_ms": round(rank(0.95), 1),
            "max_ms": round(s[-1], 1), "mean_ms": round(sum(s) / len(s), 1)}  # fmt: skip


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def watch(bootstrap: str, catalog: Catalog, seen: Seen) -> None:
    """Every journal event, decoded, with its arrival time."""
    codec = default_codec()
    async for now, records in arrivals(bootstrap, catalog):
        for record in records:
            seen.append((now, codec.decode(record.value or b"")))


def of(seen: Seen, kind: type[Any], job_id: str | None = None) -> list[tuple[float, Any]]:
    return [
        (t, e)
        for t, e in list(seen)
        if isinstance(e, kind) and (job_id is None or getattr(e, "job_id", None) == job_id)
    ]


def status(seen: Seen, job_id: str) -> ev.JobStatus | None:
    changes = of(seen, ev.JobStatusChanged, job_id)
    return changes[-1][1].to_status if changes else None


def vertex(id: str, operator: str, parallelism: int, **config: str) -> ev.Vertex:
    return ev.Vertex(id=id, name=id, operator=operator, parallelism=parallelism,
                     max_parallelism=max(8, parallelism), config=config)  # fmt: skip


def job(job_id: str, vertices: tuple[ev.Vertex, ...], edges: tuple[ev.Edge, ...],
        checkpoints: ev.CheckpointConfig, attempts: int = 0) -> ev.JobSubmitted:  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=attempts, delay_ms=1_000),
        checkpoint_config=checkpoints,
    )  # fmt: skip


class Setup:
    """A coordinator, a journal reader and a client of one fresh cluster."""

    def __init__(self, stack: Stack, name: str, *flags: str) -> None:
        self.stack = stack
        self.catalog = Catalog(f"bench-{name}-{uuid.uuid4().hex[:6]}")
        self.flags = flags
        self.seen: Seen = []
        self.workers: list[WorkerProcess] = []

    async def __aenter__(self) -> Setup:
        await kafkaio.create_topics(self.stack.bootstrap, self.catalog)
        self.watcher = asyncio.create_task(watch(self.stack.bootstrap, self.catalog, self.seen))
        self.coordinator = CoordinatorProcess(
            self.stack, self.catalog, "ck-1", "--allow-checkpointing", *self.flags
        )
        self.client = Producer(self.stack, self.catalog)
        await self.client.__aenter__()
        await until(lambda: bool(of(self.seen, ev.LeaderElected)), "a leader elected", 60)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self.workers:
            await w.close()
        await self.client.__aexit__()
        self.coordinator.stop()
        self.watcher.cancel()
        await asyncio.gather(self.watcher, return_exceptions=True)

    def worker(self, tm_id: str, slots: int) -> WorkerProcess:
        w = WorkerProcess(self.stack.bootstrap, self.catalog, tm_id, "--slots", str(slots))
        self.workers.append(w)
        return w

    async def joined(self, n: int) -> None:
        await until(lambda: len(of(self.seen, ev.TaskManagerJoined)) >= n, f"{n} joined", 120)

    async def submit(self, submission: ev.JobSubmitted) -> None:
        await self.client.send(submission)

    async def running(self, job_id: str) -> None:
        await until(lambda: status(self.seen, job_id) is ev.JobStatus.RUNNING, "RUNNING", 180)

    async def completed(self, job_id: str, n: int, seconds: float) -> None:
        await until(lambda: len(of(self.seen, ev.CheckpointCompleted, job_id)) >= n,
                    f"{n} checkpoints completed", seconds)  # fmt: skip

    async def cancel(self, job_id: str) -> None:
        await self.client.send(ev.JobCancelRequested(
            event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, requested_by="bench",
        ))  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await until(lambda: status(self.seen, job_id) is ev.JobStatus.CANCELED, "canceled",
                        30)  # fmt: skip

    def checkpoint_figures(self, job_id: str, skip: int = 0) -> dict[str, Any]:
        triggered = {e.checkpoint_id: t for t, e in of(self.seen, ev.CheckpointTriggered, job_id)}
        done = of(self.seen, ev.CheckpointCompleted, job_id)[skip:]
        aborted = of(self.seen, ev.CheckpointAborted, job_id)
        observed = [(t - triggered[e.checkpoint_id]) * 1000 for t, e in done
                    if e.checkpoint_id in triggered]  # fmt: skip
        sizes = [e.state_size for _, e in done]
        return {
            "completed": len(done),
            "aborted": len(aborted),
            "abort_reasons": sorted({e.reason for _, e in aborted})[:3],
            "subtasks": len(done[-1][1].task_states) if done else 0,
            "duration": pct([float(e.duration_ms) for _, e in done]),
            "observed": pct(observed),
            "task_duration": pct([float(h.duration_ms) for _, e in done for h in e.task_states]),
            "size_bytes": {"min": min(sizes), "max": max(sizes), "last": sizes[-1]}
            if sizes
            else {},
        }


# ------------------------------------------------------------------- trigger


async def trigger_protocol(stack: Stack, subtasks: int, checkpoints: int) -> dict[str, Any]:
    load_before = load()
    async with Setup(stack, "ck256") as s:
        workers, slots = 8, -(-subtasks // 8)
        fleet_log = open(f"/tmp/jm-bench-{s.catalog.cluster_id}-fleet.log", "w")  # noqa: SIM115, ASYNC230
        # One process per simulated TaskManager, as real TaskManagers are processes of
        # their own (they share the 2 cores with the coordinator, the broker and Redis).
        fleet = []
        per = int(os.environ.get("JM_BENCH_FLEET_PER_PROCESS", "1"))
        for i in range(0, workers, per):
            fleet.append(subprocess.Popen(  # noqa: ASYNC220 - started before anything is measured
                [sys.executable, "-m", "tests.bench.fleet", stack.bootstrap, stack.redis_url,
                 s.catalog.cluster_id, "--workers", str(per), "--first-index", str(i),
                 "--slots", str(slots), "--finish-after", "0", "--ack-checkpoints"],
                cwd=REPO, stdout=fleet_log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        try:
            await s.joined(workers)
            config = ev.CheckpointConfig(interval_ms=500)
            await s.submit(job("wide", (vertex("src", "sequence", subtasks, rate="1"),), (),
                               config))  # fmt: skip
            await s.running("wide")
            await s.completed("wide", checkpoints + 1, 300)
            out = s.checkpoint_figures("wide", skip=1)  # the first one warms up
            await s.cancel("wide")
        finally:
            for proc in fleet:
                end(proc)
            fleet_log.close()
        out["breakdown"] = _breakdown(
            s.seen, await asyncio.to_thread(Path(fleet_log.name).read_text)
        )
    return {"bench": "ckpt_trigger",
            "workers": "protocol (tests.bench.fleet --ack-checkpoints, 8 processes)",
            "subtasks": subtasks, "interval_ms": 500, "load_before": load_before,
            "load_after": load(), **out}  # fmt: skip


def _breakdown(seen: Seen, fleet_log: str) -> dict[str, Any]:
    """Where the protocol run's time goes, hop by hop, on wall clocks of this one machine
    (ms, per completed checkpoint): the leader's trigger (``CheckpointTriggered``'s
    event_time, the step's clock) -> the trigger's transaction seen committed by the
    journal reader -> the first and the last simulated worker got its trigger command ->
    the last acknowledgement sent (its event_time) -> the leader's step that took it
    (``CheckpointCompleted``'s event_time) -> the completion seen committed by the
    reader. The reader is a read_committed consumer (fetch wait 5 ms), like the workers."""
    got: dict[int, list[int]] = {}
    for ck, t in re.findall(r"^got (\d+) (\d+)$", fleet_log, re.M):
        got.setdefault(int(ck), []).append(int(t))
    last_ack: dict[int, int] = {}
    for ck, t in re.findall(r"^ack (\d+) (\d+)$", fleet_log, re.M):
        last_ack[int(ck)] = max(last_ack.get(int(ck), 0), int(t))
    wall = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
    trig = {e.checkpoint_id: (e.event_time, (t + wall) * 1000)
            for t, e in of(seen, ev.CheckpointTriggered)}  # fmt: skip
    done = [(e, (t + wall) * 1000) for t, e in of(seen, ev.CheckpointCompleted)][1:]
    hops: dict[str, list[float]] = {k: [] for k in (
        "trigger_to_trigger_committed", "trigger_to_first_worker_got_it",
        "trigger_to_last_worker_got_it", "last_worker_got_it_to_last_ack_sent",
        "trigger_to_last_trigger_handled", "last_ack_sent_to_completed",
        "completed_to_completion_committed")}  # fmt: skip
    for e, seen_at in done:
        ck = e.checkpoint_id
        if ck not in trig or ck not in last_ack or not got.get(ck):
            continue
        at, committed = trig[ck]
        hops["trigger_to_trigger_committed"].append(committed - at)
        hops["trigger_to_first_worker_got_it"].append(float(min(got[ck]) - at))
        hops["trigger_to_last_worker_got_it"].append(float(max(got[ck]) - at))
        hops["last_worker_got_it_to_last_ack_sent"].append(float(last_ack[ck] - max(got[ck])))
        hops["trigger_to_last_trigger_handled"].append(float(last_ack[ck] - at))
        hops["last_ack_sent_to_completed"].append(float(e.event_time - last_ack[ck]))
        hops["completed_to_completion_committed"].append(seen_at - e.event_time)
    return {name: pct(values) for name, values in hops.items()}


async def trigger_real(stack: Stack, subtasks: int, checkpoints: int) -> dict[str, Any]:
    load_before = load()
    async with Setup(stack, "ckreal") as s:
        per = -(-subtasks // 2)
        s.worker("tm-a", per)
        s.worker("tm-b", per)
        await s.joined(2)
        config = ev.CheckpointConfig(interval_ms=500)
        await s.submit(job("wide", (vertex("src", "sequence", subtasks, rate="20"),), (), config))
        await s.running("wide")
        await s.completed("wide", checkpoints + 1, 300)
        out = s.checkpoint_figures("wide", skip=1)
        await s.cancel("wide")
    return {"bench": "ckpt_trigger", "workers": "real (2 x python -m worker)",
            "subtasks": subtasks, "interval_ms": 500, "load_before": load_before,
            "load_after": load(), **out}  # fmt: skip


# ---------------------------------------------------------------------- demo


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = kafkaio.admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def demo(stack: Stack, checkpoints: int) -> dict[str, Any]:
    load_before = load()
    async with Setup(stack, "ckdemo") as s:
        sink = f"{s.catalog.cluster_id}-counts"  # not under the cluster's own "<id>."
        await create_topic(stack.bootstrap, sink, 2)
        spec = load_document(REPO / "compose" / "demo-job.yaml")
        for v in spec["vertices"]:
            if v["operator"] == "kafka_sink":
                v["config"]["topic"] = sink
        submission = to_job_submitted(parse_job_spec(spec), event_time=now_ms())
        # Added after the file's validation, which still rejects checkpoint_config (the CLI's
        # guard until issue 12 lands); the coordinator runs with --allow-checkpointing.
        submission = dataclasses.replace(
            submission, checkpoint_config=ev.CheckpointConfig(interval_ms=1_000)
        )
        s.worker("tm-a", 4)
        s.worker("tm-b", 4)
        await s.joined(2)
        await s.submit(submission)
        await s.running("demo")
        await s.completed("demo", checkpoints, 300)
        out = s.checkpoint_figures("demo")
        await s.cancel("demo")
        per_vertex: dict[str, int] = {}
        last = of(s.seen, ev.CheckpointCompleted, "demo")[-1][1]
        for h in last.task_states:
            per_vertex[h.task.vertex_id] = per_vertex.get(h.task.vertex_id, 0) + h.state_size
    return {"bench": "ckpt_demo", "job": "compose/demo-job.yaml + checkpoint_config "
            "{interval_ms: 1000}", "workers": "real (2 x python -m worker --slots 4)",
            "state_store": "kafka (worker default)", "load_before": load_before,
            "load_after": load(), "last_size_by_vertex": per_vertex, **out}  # fmt: skip


# ---------------------------------------------------------------- throughput

_FINISHED = re.compile(r"worker\.task\.[^/]+/(\S+)\[(\d+)\]#\d+: finished: (\d+) records in "
                       r"([\d.]+) s")  # fmt: skip


#: The jobs ``throughput`` runs: "keyed" is the data-plane benchmark's keyed job
#: (bench_keyed.deploy_job: key = n % 10, so 10 keys of state), "distinct" a harder one
#: whose state grows by a key per record (1,000,000 keys, about 10 MB, by the end).
THROUGHPUT_JOBS: Final = {
    "keyed": "sequence(2) -FORWARD-> map key = n % 10 (2) -HASH(key)-> keyed_count(2) "
             "-FORWARD-> kafka_sink(2), chained into 2 tasks",
    "distinct": "sequence(1) -HASH(value)-> keyed_count(2) -FORWARD-> kafka_sink(2), a key "
                "per record",
}  # fmt: skip


def _throughput_job(shape: str, job_id: str, records: int, sink: str,
                    config: ev.CheckpointConfig) -> ev.JobSubmitted:  # fmt: skip
    if shape == "keyed":
        graph = bench_keyed.deploy_job(job_id, records, sink).job_graph
        return job(job_id, graph.vertices, graph.edges, config)
    return job(job_id, (
        vertex("numbers", "sequence", 1, count=str(records)),
        vertex("count", "keyed_count", 2, key_field="value"),
        vertex("out", "kafka_sink", 2, topic=sink, key_field="value"),
    ), (
        ev.Edge(source="numbers", target="count", partitioning=P.HASH, key_field="value"),
        ev.Edge(source="count", target="out", partitioning=P.FORWARD),
    ), config)  # fmt: skip


async def _throughput_once(
    s: Setup, n: int, records: int, interval_ms: int, shape: str
) -> dict[str, Any]:
    job_id = f"{shape}-{n}"
    sink = f"{s.catalog.cluster_id}-sink-{n}"
    await create_topic(s.stack.bootstrap, sink, 2)
    config = ev.CheckpointConfig(interval_ms=interval_ms, tolerable_failures=1_000)
    submission = _throughput_job(shape, job_id, records, sink, config)
    await s.submit(submission)
    await until(lambda: bool(of(s.seen, ev.JobAccepted, None) and [
        e for _, e in of(s.seen, ev.JobAccepted) if e.submission.job_id == job_id]),
        "accepted", 60)  # fmt: skip
    accepted = next(t for t, e in of(s.seen, ev.JobAccepted) if e.submission.job_id == job_id)
    await until(lambda: status(s.seen, job_id) in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
                "finished", 900)  # fmt: skip
    final = status(s.seen, job_id)
    done_t = of(s.seen, ev.JobStatusChanged, job_id)[-1][0]
    started = [t for _, _, t in placement(s.seen, job_id).values()]
    running_t = max((t for t in started if t is not None), default=accepted)
    elapsed = done_t - accepted
    figures = s.checkpoint_figures(job_id) if interval_ms else {}
    return {
        "checkpoints_every_ms": interval_ms or None,
        "status": final.name if final else None,
        "seconds": round(elapsed, 2),
        "records_per_s": round(records / elapsed),
        "all_running_to_finished_s": round(done_t - running_t, 2),
        "checkpoints_completed": figures.get("completed", 0),
        "checkpoints_aborted": figures.get("aborted", 0),
        "abort_reasons": figures.get("abort_reasons", []),
        "checkpoint_duration": figures.get("duration"),
        "last_size_bytes": figures.get("size_bytes", {}).get("last"),
    }


async def throughput(
    stack: Stack, records: int, pairs: int, shape: str = "keyed"
) -> dict[str, Any]:
    load_before = load()
    runs = []
    async with Setup(stack, f"ckthru-{shape}") as s:
        w = s.worker("tm-a", 5)
        await s.joined(1)
        # One run not counted first: the first run of a fresh worker and broker was the
        # slowest of every series (slot interpreters, topic creation, page cache).
        warmup = await _throughput_once(s, 0, min(records, 200_000), 0, shape)
        n = 1
        for i in range(pairs):
            order = (0, 1000) if i % 2 == 0 else (1000, 0)
            for interval in order:
                runs.append(await _throughput_once(s, n, records, interval, shape))
                n += 1
        tasks = [m.groups() for m in _FINISHED.finditer(w.log())]
    off = [r["records_per_s"] for r in runs if not r["checkpoints_every_ms"]]
    on = [r["records_per_s"] for r in runs if r["checkpoints_every_ms"]]
    mean_off, mean_on = sum(off) / len(off), sum(on) / len(on)
    return {"bench": "ckpt_throughput", "records": records,
            "shape": shape, "job": THROUGHPUT_JOBS[shape], "warmup_s": warmup["seconds"],
            "workers": "real (1 x python -m worker --slots 5)", "load_before": load_before,
            "load_after": load(), "runs": runs, "mean_records_per_s_without": round(mean_off),
            "mean_records_per_s_with": round(mean_on),
            "slower_pct": round(100 * (1 - mean_on / mean_off), 1),
            "task_lines": len(tasks)}  # fmt: skip


# ---------------------------------------------------------------------- kill

_RESTORED = re.compile(r"worker\.task\.(\S+?)/(\S+)\[(\d+)\]#(\d+): restored checkpoint (\d+) "
                       r"from (\S+)")  # fmt: skip


def placement(seen: Seen, job_id: str) -> dict[tuple[str, int], tuple[int, str, float | None]]:
    """(vertex, subtask) -> (latest attempt, its tm id, when RUNNING was recorded)."""
    placed: dict[tuple[str, int], tuple[int, str]] = {}
    running: dict[tuple[str, int, int], float] = {}
    for t, e in list(seen):
        if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id:
            placed[(e.task.vertex_id, e.task.subtask_index)] = (e.task.attempt, e.slot.tm_id)
        elif (isinstance(e, ev.TaskStateRecorded) and e.task.job_id == job_id
              and e.state is E.RUNNING):  # fmt: skip
            running.setdefault((e.task.vertex_id, e.task.subtask_index, e.task.attempt), t)
    return {k: (a, tm, running.get((*k, a))) for k, (a, tm) in placed.items()}


async def kill(stack: Stack, rounds: int) -> dict[str, Any]:
    load_before = load()
    measured: list[float] = []
    restores: list[dict[str, Any]] = []
    async with Setup(stack, "ckkill") as s:
        ids = ["tm-0", "tm-1", "tm-2"]
        procs = {tm: s.worker(tm, 2) for tm in ids}
        await s.joined(3)
        config = ev.CheckpointConfig(interval_ms=1_000)
        await s.submit(job("keyed", (
            vertex("numbers", "sequence", 1, rate="100"),
            vertex("count", "keyed_count", 2, key_field="value"),
        ), (ev.Edge(source="numbers", target="count", partitioning=P.HASH, key_field="value"),),
            config, attempts=100))  # fmt: skip
        await s.running("keyed")
        for i in range(rounds):
            n_done = len(of(s.seen, ev.CheckpointCompleted, "keyed"))
            await s.completed("keyed", n_done + 2, 120)  # steady: checkpoints completing
            before = placement(s.seen, "keyed")
            latest = of(s.seen, ev.CheckpointCompleted, "keyed")[-1][1].checkpoint_id
            victim = before[("count", 0)][1]
            t0 = time.perf_counter()
            procs[victim].signal(signal.SIGKILL)

            def recovered(before: Any = before, victim: str = victim) -> bool:
                now = placement(s.seen, "keyed")
                return len(now) == len(before) and all(
                    now[k][2] is not None and now[k][1] != victim and now[k][0] > before[k][0]
                    for k in before
                )

            await until(recovered, "every subtask RUNNING again", 120)
            after = placement(s.seen, "keyed")
            measured.append((max(t for _, _, t in after.values() if t) - t0) * 1000)
            await asyncio.sleep(1.0)  # the restore log lines
            lines = [m.groups() for p in procs.values() for m in _RESTORED.finditer(p.log())]
            new = {(v, int(sub)): int(ck) for job_id, v, sub, att, ck, _ in lines
                   if job_id == "keyed" and int(att) == after[(v, int(sub))][0]}  # fmt: skip
            restores.append({"latest_completed_before_kill": latest,
                             "restored": {f"{v}[{k}]": c for (v, k), c in sorted(new.items())},
                             "all_from_checkpoint": len(new) == len(after)
                             and all(c >= latest for c in new.values())})  # fmt: skip
            # Replace the dead worker, so the next round has the same capacity.
            await procs.pop(victim).close()
            tm = f"tm-{3 + i}"
            procs[tm] = s.worker(tm, 2)
            await s.joined(4 + i)
        await s.cancel("keyed")
    return {"bench": "ckpt_kill", "rounds": rounds, "workers": "real (3 x python -m worker "
            "--slots 2)", "job": "sequence(1, 100/s) -HASH-> keyed_count(2), checkpoints "
            "every 1,000 ms", "load_before": load_before, "load_after": load(),
            "running_again": pct(measured), "running_again_ms": [round(x) for x in measured],
            "restores": restores}  # fmt: skip


if __name__ == "__main__":
    import json

    stack = Stack(sys.argv[1], sys.argv[2], "bench")
    what = sys.argv[3]
    fns: dict[str, Any] = {
        "trigger": lambda: trigger_protocol(stack, 256, 30),
        "trigger-real": lambda: trigger_real(stack, 16, 20),
        "demo": lambda: demo(stack, 10),
        "throughput": lambda: throughput(
            stack, int(sys.argv[4]) if len(sys.argv) > 4 else 100_000, 1
        ),
        "kill": lambda: kill(stack, 1),
    }
    print(json.dumps(asyncio.run(fns[what]()), default=str))
