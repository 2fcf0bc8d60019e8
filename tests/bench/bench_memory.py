"""The coordinator's memory: bytes per job, subtask, worker and ended job kept, and the
resident memory and state size of a process folding 1,000 and 10,000 jobs.

What is real: the journals are written by ``decide`` (through ``tests.domain.cluster``,
the codec encoding and decoding every event) and folded by the real ``evolve``; the
state measured is the coordinator's ``State``; its size is ``encode_state`` (what a
snapshot holds). The fold of 1,000 and 10,000 jobs runs in a fresh process that first
imports what ``jm coordinator`` imports (aiokafka, redis, aiohttp, the REST API), so
its resident memory is that of a coordinator holding that state, without its Kafka
and Redis connections, its buffers and the REST server's (docs/memory.md adds an
allowance for those). What is simulated: the workers and their reports; there is no
Kafka in this benchmark. 10,000 jobs at once is beyond ``MAX_JOBS`` (4,096): the
generator raises the admission limit of its own process for that row only.

``running_coordinator`` (``--running N``, and ``make bench``) measures a real
``jm coordinator`` instead: the same journal produced to Kafka, replayed by the replica,
which then leads; its VmRSS from /proc/PID/status and its ``jm.state.*`` metrics from
``/jobmanager/metrics``.

Bytes per item come from tracemalloc: the Python allocations of a state folded from a
journal, less those of the same state without the items.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from coordinator.domain import DomainConfig
from coordinator.domain import admission as _admission
from schemas import limits
from schemas.events import ExecutionState

#: The job of the sizing: two vertices (source -> sink) of parallelism 2.
VERTICES = (("src", "map", 2), ("snk", "sink", 2))
SUBTASKS_PER_JOB = 4
SLOTS_PER_WORKER = 16
#: Workers of the 1,000- and 10,000-job folds: 64 slots each, so 10,000 jobs of 4
#: subtasks fit on 625 workers (MAX_WORKERS is 1,024).
FOLD_SLOTS_PER_WORKER = 64


def journal(jobs: int, workers: int, *, parallelism: int = 2, finish: bool = False,
            archive: bool = False, slots: int = SLOTS_PER_WORKER,
            max_jobs: int = limits.MAX_JOBS) -> list[bytes]:  # fmt: skip
    """A journal (encoded events) of `workers` registered and `jobs` RUNNING (or FINISHED,
    or FINISHED and archived) jobs of two vertices of `parallelism`."""
    from tests.domain.cluster import Cluster

    config = DomainConfig(archive_after_ms=0 if archive else None, max_jobs=max_jobs)
    c = Cluster(config=config)
    for w in range(workers):
        c.register(f"taskmanager-{w:05d}", slots=slots)
    c.heartbeat_all()
    for j in range(jobs):
        name = f"job-{j:06d}-0123456789abcdef0123456789"
        c.submit(name, (("src", "map", parallelism), ("snk", "sink", parallelism)))
        c.run_all(name)
        if finish:
            c.run_all(name, ExecutionState.FINISHED)
    if archive:
        c.tick(1)
    return c.journal


def folded_bytes(records: list[bytes]) -> int:
    """Python allocations held by the state folded from `records`."""
    from tests.domain.cluster import replay

    gc.collect()
    tracemalloc.start()
    state = replay(records)
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del state
    return held


def per_item(n: int = 200) -> dict[str, int]:
    """Bytes per worker, job, subtask and ended job kept (archived: its id remembered),
    and per ended job still in memory, each the difference of two folded states."""
    slots_needed = -(-n * 8 // SLOTS_PER_WORKER)  # parallelism 4: 8 subtasks a job
    workers = folded_bytes(journal(0, slots_needed))
    base = folded_bytes(journal(0, 0))
    small = folded_bytes(journal(n, slots_needed, parallelism=1))
    large = folded_bytes(journal(n, slots_needed, parallelism=4))
    finished = folded_bytes(journal(n, slots_needed, parallelism=2, finish=True))
    archived = folded_bytes(journal(n, slots_needed, parallelism=2, finish=True, archive=True))
    subtask = (large - small) // (n * 6)
    job = (small - workers) // n - 2 * subtask
    return {
        "worker": (workers - base) // slots_needed,
        "job": job,
        "subtask": subtask,
        "ended_job_in_memory": (finished - workers) // n,
        "ended_job_kept": (archived - workers) // n,
    }


def _write(records: list[bytes], path: Path) -> None:
    with path.open("wb") as f:
        for r in records:
            f.write(struct.pack(">I", len(r)) + r)


def _fold_file(path: str) -> dict[str, Any]:
    """In a fresh process: import what the coordinator imports, fold the journal file,
    report resident memory before and after, and the snapshot size."""
    import coordinator.commands.replica
    import coordinator.rest.server
    import coordinator.runtime.replica  # noqa: F401  (the coordinator's imports)
    from coordinator.domain import State, evolve
    from coordinator.domain.digest import state_to_dict
    from coordinator.runtime.snapshots import encode_state
    from schemas.codec import default_codec
    from schemas.events import JournalEvent

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    gc.collect()
    before = rss()
    state, codec = State(), default_codec()
    with open(path, "rb") as f:
        while header := f.read(4):
            event = codec.decode(f.read(struct.unpack(">I", header)[0]))
            assert isinstance(event, JournalEvent)
            evolve(state, event)
    gc.collect()
    after = rss()
    plain = len(json.dumps(state_to_dict(state), separators=(",", ":")))
    snapshot = len(encode_state(state))
    peak = rss()
    running = sum(1 for j in state.jobs.values() if j.status.value == "RUNNING")
    return {"rss_idle": before, "rss": after, "rss_snapshotting": peak, "state_json_bytes": plain,
            "snapshot_bytes": snapshot, "jobs": len(state.jobs), "running": running}  # fmt: skip


def _sizing_journal(jobs: int) -> tuple[int, list[bytes]]:
    """The workers and the journal of `jobs` RUNNING jobs of the sizing, on 64-slot workers."""
    saved = limits.MAX_JOBS
    _admission.__dict__["MAX_JOBS"] = max(saved, jobs)  # the 10,000 row only (see the module doc)
    try:
        workers = -(-jobs * SUBTASKS_PER_JOB // FOLD_SLOTS_PER_WORKER)
        records = journal(jobs, workers, slots=FOLD_SLOTS_PER_WORKER, max_jobs=max(saved, jobs))
    finally:
        _admission.__dict__["MAX_JOBS"] = saved
    return workers, records


def fold_in_process(jobs: int) -> dict[str, Any]:
    workers, records = _sizing_journal(jobs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.bin"
        _write(records, path)
        out = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_memory", "--fold", str(path)],
            check=True, capture_output=True, text=True, env={**os.environ},
        )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    result["events"] = len(records)
    result["workers"] = workers
    return result


TRANSACTION_RECORDS = 5_000


async def _produce(bootstrap: str, catalog: Any, records: list[bytes], key_file: str) -> None:
    """The generated journal into the cluster's journal topic, as a leader writes it:
    each record keyed by ``Catalog.key_for``, signed with the journal key, in
    transactions of ~5,000 records."""
    from schemas import kafkaio, signing
    from schemas.codec import default_codec

    codec = default_codec()
    keys = signing.KeyRing.load(key_file, ("journal",))
    topic = catalog.journal.name
    producer = kafkaio.producer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                transactional_id=f"{catalog.cluster_id}.bench-writer",
                                enable_idempotence=True, max_batch_size=512 * 1024)  # fmt: skip
    await producer.start()
    try:
        for start in range(0, len(records), TRANSACTION_RECORDS):
            async with producer.transaction():
                for data in records[start : start + TRANSACTION_RECORDS]:
                    event = codec.decode(data)
                    value, headers = codec.encode(event)
                    key = catalog.key_for(event)
                    signed = keys.sign("journal", topic, key, value, headers)
                    await producer.send(topic, value, key=key, headers=signed, partition=0)
    finally:
        await producer.stop()


def _metrics(url: str) -> dict[str, str]:
    import urllib.request

    names = (
        "jm.memory.resident-bytes,jm.state.estimated-bytes,jm.state.jobs,"
        "jm.state.subtasks,jm.state.workers"
    )
    with urllib.request.urlopen(f"{url}/jobmanager/metrics?get={names}", timeout=10) as r:
        return {m["id"]: m["value"] for m in json.loads(r.read())}


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def running_coordinator(jobs: int, bootstrap: str, redis_url: str, key_file: str,
                        settle_s: float = 5.0) -> dict[str, Any]:  # fmt: skip
    """A real ``jm coordinator`` holding `jobs` RUNNING jobs: the journal of the fold
    (written by ``decide``, see `journal`) is produced to a fresh cluster's journal topic,
    then one coordinator replica starts on it (Kafka, Redis, REST; it replays the journal,
    wins the lease and leads). Read once ``/jobmanager/metrics`` shows every job held and
    `settle_s` later: its VmRSS (/proc/PID/status) and the ``jm.state.*`` metrics. The
    journal's workers never heartbeat: the replica runs with a one-hour heartbeat timeout
    so it does not declare them lost while it is measured."""
    import asyncio
    import time
    import uuid

    from schemas import kafkaio
    from schemas.catalog import Catalog

    workers, records = _sizing_journal(jobs)
    catalog = Catalog(f"bench-mem-{uuid.uuid4().hex[:8]}")
    asyncio.run(kafkaio.create_topics(bootstrap, catalog))
    t0 = time.perf_counter()
    asyncio.run(_produce(bootstrap, catalog, records, key_file))
    write_s = time.perf_counter() - t0
    log_path = Path(tempfile.gettempdir()) / f"jm-bench-{catalog.cluster_id}.log"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, REDIS_URL=redis_url,
               JM_CLUSTER_ID=catalog.cluster_id, JM_SIGNING_KEYS_FILE=key_file,
               PYTHONUNBUFFERED="1")  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator", "coordinator", "--id", "bench-mem",
             "--log-level", "INFO", "--rest-port", "0", "--heartbeat-timeout-ms", "3600000"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=repo,
        )  # fmt: skip
        try:
            url, metrics, t1 = None, {}, time.perf_counter()
            while time.perf_counter() - t1 < 300:
                if proc.poll() is not None:
                    raise RuntimeError(f"jm coordinator exited (its log: {log_path})")
                if url is None:
                    text = log_path.read_text(errors="replace")
                    if "rest http://" in text:
                        url = "http://" + text.split("rest http://", 1)[1].split()[0]
                if url is not None:
                    try:
                        metrics = _metrics(url)
                    except OSError:
                        metrics = {}
                    if int(metrics.get("jm.state.jobs", "0")) >= jobs:
                        break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{jobs} jobs not held in 300 s (log: {log_path})")
            caught_up_s = time.perf_counter() - t1
            time.sleep(settle_s)
            metrics = _metrics(url)
            rss = _status_kib(proc.pid, "VmRSS") * 1024
            hwm = _status_kib(proc.pid, "VmHWM") * 1024
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "cluster_id": catalog.cluster_id,
        "events": len(records),
        "workers": workers,
        "write_s": round(write_s, 1),
        "caught_up_s": round(caught_up_s, 1),
        "rss": rss,
        "rss_peak": hwm,
        "rss_metric": int(metrics["jm.memory.resident-bytes"]),
        "state_estimated_bytes": int(metrics["jm.state.estimated-bytes"]),
        "jobs": int(metrics["jm.state.jobs"]),
        "subtasks": int(metrics["jm.state.subtasks"]),
        "state_workers": int(metrics["jm.state.workers"]),
    }


def run(sizes: tuple[int, ...] = (1_000, 10_000), stack: Any = None) -> dict[str, Any]:
    """`stack` (bootstrap, redis_url; the signing key file in JM_SIGNING_KEYS_FILE):
    also measure a running coordinator holding each size."""
    from coordinator.runtime import memory

    per = per_item()
    folds = {n: fold_in_process(n) for n in sizes}
    live = {}
    if stack is not None:
        key_file = os.environ["JM_SIGNING_KEYS_FILE"]
        # 0: the same coordinator holding nothing, what the growth per job is taken from.
        live = {str(n): running_coordinator(n, stack.bootstrap, stack.redis_url, key_file)
                for n in (0, *sizes)}  # fmt: skip
    return {
        "name": "memory",
        "per_item": per,
        "model": {"job": memory.BYTES_PER_JOB, "subtask": memory.BYTES_PER_SUBTASK,
                  "worker": memory.BYTES_PER_WORKER, "ended": memory.BYTES_PER_ENDED_JOB_KEPT},
        "folds": {str(n): r for n, r in folds.items()},
        "running": live,
        "targets": {str(n): memory.needed_bytes(jobs=n, subtasks=n * SUBTASKS_PER_JOB,
                                               workers=folds[n]["workers"]) for n in sizes},
    }  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fold"]:
        print(json.dumps(_fold_file(sys.argv[2])))
    elif sys.argv[1:2] == ["--per-item"]:
        print(json.dumps(per_item()))
    elif sys.argv[1:2] == ["--running"]:
        print(json.dumps(running_coordinator(
            int(sys.argv[2]), os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["REDIS_URL"],
            os.environ["JM_SIGNING_KEYS_FILE"])))  # fmt: skip
    elif sys.argv[1:2] == ["--jobs"]:
        print(json.dumps(fold_in_process(int(sys.argv[2]))))
    else:
        print(json.dumps(run(), indent=1))
