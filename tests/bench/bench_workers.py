"""Benchmarks: a worker's ``kill -9`` to its job RUNNING again, and heartbeats of a large fleet.

- ``worker_kill``: a real coordinator (defaults of schemas/timing.py: heartbeat timeout
  12,000 ms) and 2 real workers (``python -m worker --slots 2``, default heartbeat
  interval 1 s and leader timeout 6 s);
  an unbounded ``sequence`` job (``rate`` 20/s), parallelism 2, FIXED_DELAY restart after
  1,000 ms. ``kill -9`` of a worker running a subtask of the job; measured from the signal
  until every subtask's latest attempt is RUNNING on a live worker (journal
  ``TaskStateRecorded``, stamped on arrival by a read_committed reader). The killed worker
  is replaced by a fresh one (new id) before the next round.
- ``heartbeats``: one leader (``python -m coordinator coordinator``, defaults) on a fresh
  cluster per fleet size; a generator process (``python -m tests.bench.bench_workers
  beat ...``) registers N simulated workers (``TaskManagerRegistered``, 1 slot) and then
  sends one ``TaskManagerHeartbeat`` per worker per second, in 20 slices of N/20 every
  50 ms, with a batching producer (linger 5 ms). After every worker has joined and a
  warm-up, the leader's CPU (utime + stime from /proc) is measured over the window,
  with the generator's achieved rate and CPU, and the ``TaskManagerLost`` journaled
  meanwhile (a leader that fell more than a heartbeat timeout behind would declare
  workers lost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from schemas import events as ev
from schemas import kafkaio, timing
from schemas.catalog import Catalog
from tests.bench.bench_ha import Watch, cpu_s, end, stats_ms, until, watch
from tests.conftest import Stack
from tests.integration.harness import REPO, CoordinatorProcess, now_ms, signed_record
from tests.worker.harness import WorkerProcess

RESTART_DELAY_MS = 1_000
JOIN_TIMEOUT_S = 60.0  # every simulated worker joined (TaskManagerJoined), or saturated


def _job(job_id: str) -> ev.JobSubmitted:
    vertex = ev.Vertex(id="src", name="Source", operator="sequence", parallelism=2,
                       max_parallelism=8, config={"rate": "20"})  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=(vertex,)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=100, delay_ms=RESTART_DELAY_MS),
    )  # fmt: skip


def _placement(w: Watch, job_id: str) -> dict[int, tuple[int, str, bool]]:
    """Subtask -> (latest attempt, its tm id, RUNNING recorded)."""
    placed: dict[int, tuple[int, str, bool]] = {}
    running: set[tuple[int, int]] = set()
    for _, e in w.task_events:
        if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id:
            placed[e.task.subtask_index] = (e.task.attempt, e.slot.tm_id, False)
        elif (isinstance(e, ev.TaskStateRecorded) and e.task.job_id == job_id
              and e.state is ev.ExecutionState.RUNNING):  # fmt: skip
            running.add((e.task.subtask_index, e.task.attempt))
    return {s: (a, tm, (s, a) in running) for s, (a, tm, _) in placed.items()}


def _running_when(w: Watch, job_id: str, subtask: int, attempt: int) -> float | None:
    for t, e in w.task_events:
        if (isinstance(e, ev.TaskStateRecorded) and e.task.job_id == job_id
                and e.task.subtask_index == subtask and e.task.attempt == attempt
                and e.state is ev.ExecutionState.RUNNING):  # fmt: skip
            return t
    return None


async def worker_kill(stack: Stack, rounds: int) -> dict[str, Any]:
    catalog = Catalog(f"bench-wkill-{uuid.uuid4().hex[:6]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    w = Watch(keep_tasks=True)
    watcher = asyncio.create_task(watch(stack.bootstrap, catalog, w))
    coordinator = CoordinatorProcess(stack, catalog, "wk-1")
    workers: dict[str, WorkerProcess] = {}
    producer = kafkaio.producer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)
    await producer.start()

    def add_worker(i: int) -> str:
        tm_id = f"wk-tm-{i}"
        workers[tm_id] = WorkerProcess(stack.bootstrap, catalog, tm_id, "--slots", "2")
        return tm_id

    measured: list[float] = []
    lost_after: list[float] = []
    spread: list[int] = []  # workers the job ran on before each kill
    try:
        await until(lambda: bool(w.elected), "a leader elected", 60)
        ids = [add_worker(0), add_worker(1)]
        await until(lambda: set(ids) <= w.joined, "2 workers joined", 60)
        job = _job("endless")
        topic, key, value, headers = signed_record(catalog, job)
        await producer.send_and_wait(topic, value, key=key, headers=headers)
        await until(lambda: all(r for _, _, r in _placement(w, "endless").values())
                    and len(_placement(w, "endless")) == 2, "job RUNNING", 60)  # fmt: skip
        for i in range(rounds):
            await asyncio.sleep(3.0)  # steady state: heartbeats flowing, tasks running
            before = _placement(w, "endless")
            victim = before[0][1]
            spread.append(len({tm for _, tm, _ in before.values()}))
            lost_n = len(w.lost)
            t0 = time.perf_counter()
            workers[victim].signal(signal.SIGKILL)

            def recovered(before: dict[int, tuple[int, str, bool]] = before,
                          victim: str = victim) -> bool:  # fmt: skip
                now = _placement(w, "endless")
                return all(
                    running and tm != victim and (tm_before != victim or a > a_before)
                    for (a, tm, running), (a_before, tm_before, _) in zip(
                        (now[s] for s in sorted(now)),
                        (before[s] for s in sorted(before)),
                        strict=True,
                    )
                ) and len(now) == len(before)

            await until(recovered, "every subtask RUNNING again", 60)
            after = _placement(w, "endless")
            times = [_running_when(w, "endless", s, a) for s, (a, _, _) in after.items()]
            measured.append((max(t for t in times if t is not None) - t0) * 1000)
            if len(w.lost) > lost_n:
                lost_after.append((w.lost[lost_n][0] - t0) * 1000)
            # Replace the dead worker, so the next round has a spare again.
            await workers.pop(victim).close()
            new = add_worker(2 + i)
            await until(lambda: new in w.joined, "the new worker joined", 60)  # noqa: B023
        return {
            "bench": "worker_kill",
            "rounds": rounds,
            "coordinator_heartbeat_timeout_ms": timing.DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS,
            "restart_delay_ms": RESTART_DELAY_MS,
            "running_again": stats_ms(measured),
            "running_again_ms": [round(x) for x in measured],
            "lost_journaled": stats_ms(lost_after),
            "workers_running_the_job_before_kill": spread,
        }
    finally:
        await producer.stop()
        for p in workers.values():
            await p.close()
        coordinator.stop()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


# ------------------------------------------------------------------ heartbeats


async def _beat(args: argparse.Namespace) -> None:
    """The generator process: register N workers, then heartbeat each at 1 Hz."""
    catalog = Catalog(args.cluster_id)
    producer = kafkaio.producer(
        bootstrap_servers=args.bootstrap, acks=1, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    n = args.count
    tm_ids = [f"sim-{i:05d}" for i in range(n)]
    incarnation = uuid.uuid4().hex[:12]
    reports = catalog.topic_for(ev.TaskManagerRegistered).name
    beats = catalog.topic_for(ev.TaskManagerHeartbeat).name
    out = Path(args.out)
    try:
        futures = []
        for tm_id in tm_ids:
            reg = ev.TaskManagerRegistered(
                event_id=f"{tm_id}:{incarnation}:0", event_time=now_ms(), tm_id=tm_id,
                incarnation=incarnation, host="sim", slots=1, operators=("noop",),
                version="bench", running_tasks=(),
            )  # fmt: skip
            _, key, value, headers = signed_record(catalog, reg)
            futures.append(await producer.send(reports, value, key=key, headers=headers))
        await asyncio.gather(*futures)
        slices = 20
        per = -(-n // slices)
        sent = 0
        late = 0
        seq = 0
        start = time.perf_counter()
        tick = 0
        while not stop.is_set():
            due = start + tick / slices
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                late += 1
            part = tm_ids[(tick % slices) * per : (tick % slices + 1) * per]
            if tick % slices == 0:
                seq += 1
            now = now_ms()
            futures = []
            for tm_id in part:
                beat = ev.TaskManagerHeartbeat(
                    event_id=f"{tm_id}:{incarnation}:{seq}", event_time=now, tm_id=tm_id,
                    incarnation=incarnation, sequence=seq, slots_free=1, running_tasks=0,
                    last_seen_epoch=1,
                )  # fmt: skip
                _, key, value, headers = signed_record(catalog, beat)
                futures.append(await producer.send(beats, value, key=key, headers=headers))
            await asyncio.gather(*futures)
            sent += len(part)
            tick += 1
            if tick % slices == 0:
                stats = {"t": time.time(), "sent": sent, "late": late,
                         "cpu_s": time.process_time()}  # fmt: skip
                out.write_text(json.dumps(stats))  # noqa: ASYNC240 - tiny, once a second
    finally:
        await producer.stop()


def _beat_stats(path: Path) -> dict[str, Any]:
    for _ in range(50):
        with contextlib.suppress(ValueError, OSError):
            return dict(json.loads(path.read_text()))
        time.sleep(0.01)
    raise RuntimeError(f"no generator stats in {path}")


async def _heartbeat_level(stack: Stack, n: int, warmup_s: float, window_s: float
                           ) -> dict[str, Any]:  # fmt: skip
    catalog = Catalog(f"bench-hb-{n}-{uuid.uuid4().hex[:6]}")
    await kafkaio.create_topics(stack.bootstrap, catalog)
    w = Watch()
    watcher = asyncio.create_task(watch(stack.bootstrap, catalog, w))
    coordinator = CoordinatorProcess(stack, catalog, "hb-1")
    stats = Path(f"/tmp/jm-bench-{catalog.cluster_id}-beat.json")
    gen_log = open(f"/tmp/jm-bench-{catalog.cluster_id}-beat.log", "w")  # noqa: SIM115, ASYNC230
    gen: subprocess.Popen[bytes] | None = None
    try:
        await until(lambda: bool(w.elected), "a leader elected", 60)
        gen = subprocess.Popen(  # noqa: ASYNC220 - started before anything is measured
            [sys.executable, "-m", "tests.bench.bench_workers", "beat", stack.bootstrap,
             catalog.cluster_id, "--count", str(n), "--out", str(stats)],
            cwd=REPO, stdout=gen_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        t_reg = time.perf_counter()
        all_joined = True
        try:
            await until(lambda: len(w.joined) >= n, f"{n} workers joined", JOIN_TIMEOUT_S)
        except TimeoutError:
            all_joined = False  # saturated: measure what it does anyway
        joined_s = time.perf_counter() - t_reg
        await asyncio.sleep(warmup_s)
        pid = coordinator.proc.pid
        lost0 = len(w.lost)
        elected0 = len(w.elected)
        g0 = _beat_stats(stats)
        c0, t0 = cpu_s(pid), time.perf_counter()
        await asyncio.sleep(window_s)
        c1, t1 = cpu_s(pid), time.perf_counter()
        g1 = _beat_stats(stats)
        gen_cpu = None
        if gen.poll() is None:
            gen_cpu = round(100 * (g1["cpu_s"] - g0["cpu_s"]) / (g1["t"] - g0["t"]), 1)
        return {
            "bench": "heartbeats",
            "workers": n,
            "window_s": round(t1 - t0, 1),
            "leader_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
            "generator_rate_per_s": round((g1["sent"] - g0["sent"]) / (g1["t"] - g0["t"])),
            "generator_cpu_pct": gen_cpu,
            "generator_late_slices": g1["late"] - g0["late"],
            "lost_in_window": len(w.lost) - lost0,
            "elections_in_window": len(w.elected) - elected0,
            "elections_total": len(w.elected),
            "all_joined": all_joined,
            "joined": len(w.joined),
            "registration_to_all_joined_s": round(joined_s, 1) if all_joined else None,
        }
    finally:
        if gen is not None:
            end(gen)
        gen_log.close()
        coordinator.stop()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def heartbeats(stack: Stack, sizes: list[int], warmup_s: float, window_s: float
                     ) -> list[dict[str, Any]]:  # fmt: skip
    out = []
    for n in sizes:
        result = await _heartbeat_level(stack, n, warmup_s, window_s)
        out.append(result)
        behind = result["generator_rate_per_s"] < 0.9 * n
        failing = result["lost_in_window"] or result["elections_total"] > 1
        if result["leader_cpu_pct"] >= 95 or failing or not result["all_joined"] or behind:
            break  # saturated (or the generator is): larger fleets tell nothing more
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("beat", help="the heartbeat generator (run by the benchmark)")
    b.add_argument("bootstrap")
    b.add_argument("cluster_id")
    b.add_argument("--count", type=int, default=1000)
    b.add_argument("--out", required=True)
    for name in ("kill", "heartbeats"):
        p = sub.add_parser(name)
        p.add_argument("bootstrap")
        p.add_argument("redis_url")
        p.add_argument("sizes", nargs="*", type=int, default=[1000])
    args = parser.parse_args()
    if args.what == "beat":
        asyncio.run(_beat(args))
        return
    stack = Stack(args.bootstrap, args.redis_url, "bench")
    if args.what == "kill":
        print(json.dumps(asyncio.run(worker_kill(stack, 2))))
    else:
        print(json.dumps(asyncio.run(heartbeats(stack, args.sizes, 5, 10))))


if __name__ == "__main__":
    main()
