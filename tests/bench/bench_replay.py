"""Benchmark: replay of a realistic journal from Kafka (read + decode + apply).

1. A fresh cluster id; its topics created with ``schemas.kafkaio.create_topics``.
2. ``workload.JournalGenerator`` drives decide/evolve like the leader and its
   records are produced to the journal by a transactional producer, committing
   every ~5,000 records (on decision boundaries), so the journal has the
   transaction markers of a real one.
3. Measured on this process (one Python thread; the broker runs beside it):
   - fetch only: a read_committed consumer with the follower's settings reads
     every record as the keyless follower does (whole record batches,
     ``kafkaio.read_batches``), no decoding (the values are kept for step 5);
   - replay: a fresh ``JournalFollower`` ``catch_up()`` from offset 0
     (read + decode + apply), the figure the target is about;
   - decode only, and decode + apply, over the same values in memory.
4. The replayed state's digest is compared with the generator's live digest.
5. Time travel: while writing, the benchmark also writes a ladder of snapshots
   the way the leader does (the generator's state after a transaction, one per
   ``SnapshotPolicy().ladder_every`` offsets, keyed by rung; simulated: no
   leader process writes them, the chunks are the leader's). Then 20 real
   ``jm replay --until T --json`` subprocesses, T the event time of a random
   journal record: wall time from spawn to exit, and the fold time ``jm``
   prints (snapshot read + tail replay, without the interpreter's start).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from coordinator.domain import State, evolve, state_digest
from coordinator.runtime import snapshots
from coordinator.runtime.journal import JournalFollower
from coordinator.runtime.snapshots import SnapshotPolicy
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog, snapshot_key
from schemas.codec import default_codec
from tests.bench import journal
from tests.bench.workload import T0, JournalGenerator

TRANSACTION_RECORDS = 5_000
#: Random points of the journal ``jm replay --until`` is timed at.
TIME_TRAVEL_POINTS = 20


def _journal_bytes_on_disk(kafka_data: Path | None, topic: str) -> int | None:
    if kafka_data is None:
        return None
    part = kafka_data / f"{topic}-0"
    if not part.is_dir():
        return None
    return sum(f.stat().st_size for f in part.glob("*.log"))


async def _write(
    bootstrap: str,
    catalog: Catalog,
    gen: JournalGenerator,
    n: int,
    ladder: SnapshotPolicy | None = None,
) -> dict[str, Any]:
    """Write `n` events of `gen` to the journal; with `ladder`, also a snapshot of the
    generator's state after the transaction that crosses each ``ladder_every``
    offsets, keyed by its rung (as the leader keys them)."""
    producer = journal.writer(bootstrap, catalog)
    await producer.start()
    topic = catalog.journal.name
    transactions = 0
    ladder_snapshots = 0
    next_rung = 0 if ladder is None else ladder.ladder_every
    gen_s = 0.0
    started = time.perf_counter()
    try:
        batches = gen.batches(n)
        done = False
        while not done:
            pending: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
            t = time.perf_counter()
            while len(pending) < TRANSACTION_RECORDS:
                batch = next(batches, None)
                if batch is None:
                    done = True
                    break
                pending.extend(batch)
            gen_s += time.perf_counter() - t
            if not pending:
                break
            async with producer.transaction():
                for key, value, headers in pending:
                    sent = await producer.send(topic, value, key=key, headers=headers, partition=0)
            transactions += 1
            covered = (await sent).offset
            if ladder is not None and covered >= next_rung:
                await _snapshot(producer, catalog, gen, covered, ladder)
                ladder_snapshots += 1
                next_rung = (covered // ladder.ladder_every + 1) * ladder.ladder_every
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - started
    return {
        "transactions": transactions,
        "write_s": elapsed,
        "generate_s": gen_s,
        "ladder_snapshots": ladder_snapshots,
    }


async def _snapshot(
    producer: Any, catalog: Catalog, gen: JournalGenerator, covered: int, ladder: SnapshotPolicy
) -> None:
    """The generator's state (the journal up to `covered`) as the leader writes a snapshot;
    stamped with the generator's clock, never earlier than an event it covers."""
    epoch = gen.state.epoch
    parts = snapshots.chunks(gen.state, f"snapshot-{epoch}-{covered}", covered, epoch, gen.now)
    rung = ladder.rung(covered)
    async with producer.transaction():
        for part in parts:
            value, headers = default_codec().encode(part)
            key = snapshot_key(part.chunk_index, rung)
            await producer.send(
                catalog.snapshots.name, value, key=key, headers=headers, partition=0
            )


async def _fetch_only(
    bootstrap: str, catalog: Catalog, offsets: list[int] | None = None
) -> tuple[list[bytes], float, float]:
    """Read every committed journal record (no decoding); (values, wall s, cpu s).
    `offsets`: filled with the records' offsets."""
    consumer = kafkaio.consumer(
        bootstrap, fetch_max_wait_ms=10, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    tp = TopicPartition(catalog.journal.name, 0)
    await consumer.start()
    kafkaio.read_batches(consumer)
    try:
        consumer.assign([tp])
        end = int((await consumer.end_offsets([tp]))[tp])
        consumer.seek(tp, 0)
        values: list[bytes] = []
        append = values.append
        wall, cpu = time.perf_counter(), time.process_time()
        position = 0
        while position < end:
            fetched = await consumer.getmany(tp, timeout_ms=200, max_records=5_000)
            for batch in fetched.get(tp, []):
                for offset, value, _key, _headers in batch:
                    append(value or b"")
                    if offsets is not None:
                        offsets.append(offset)
            position = await consumer.position(tp)
        return values, time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()


async def _follow(bootstrap: str, catalog: Catalog) -> tuple[int, str, float, float, int]:
    """A fresh JournalFollower's catch_up from 0: (applied, digest, wall s, cpu s, end)."""
    follower = JournalFollower(bootstrap, catalog)
    await follower.start()
    try:
        end = await follower.end_offset()
        wall, cpu = time.perf_counter(), time.process_time()
        applied = await follower.catch_up(timeout_s=1_800)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return applied, state_digest(follower.state), wall, cpu, end
    finally:
        await follower.stop()


def _decode_only(values: list[bytes]) -> float:
    codec = default_codec()
    allowed = Catalog().journal.allowed
    decode = codec.decode
    start = time.perf_counter()
    for value in values:
        decode(value, allowed)
    return time.perf_counter() - start


def _decode_apply(values: list[bytes]) -> tuple[float, str]:
    codec = default_codec()
    allowed = Catalog().journal.allowed
    decode = codec.decode
    state = State()
    start = time.perf_counter()
    for value in values:
        event = decode(value, allowed)
        assert isinstance(event, ev.JournalEvent)
        evolve(state, event)
    return time.perf_counter() - start, state_digest(state)


_FOLDED = re.compile(r"(\d+) events applied: (.*), in ([\d.]+)s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_travel(
    bootstrap: str, catalog: Catalog, values: list[bytes], points: int = TIME_TRAVEL_POINTS
) -> dict[str, Any]:
    """`points` real ``jm replay --until T --json`` runs at random records' event times."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JM_CLUSTER_ID": catalog.cluster_id}
    codec, rng = default_codec(), random.Random(18)
    walls, folds, tails, from_snapshot = [], [], [], 0
    for index in rng.sample(range(len(values)), points):
        until = codec.decode(values[index]).event_time
        args = ["replay", "--until", str(until), "--json", "--insecure-unsigned"]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "coordinator", *args], env=env,
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        walls.append(time.perf_counter() - started)
        folded = _FOLDED.search(done.stderr)
        if done.returncode != 0 or folded is None:
            raise RuntimeError(f"jm {' '.join(args)} exited {done.returncode}: {done.stderr}")
        tails.append(int(folded.group(1)))
        from_snapshot += "from the snapshot" in folded.group(2)
        folds.append(float(folded.group(3)))
    return {
        "points": points,
        "from_snapshot": from_snapshot,
        "wall_p50_s": round(statistics.median(walls), 3),
        "wall_p99_s": round(_percentile(walls, 0.99), 3),
        "wall_max_s": round(max(walls), 3),
        "fold_p50_s": round(statistics.median(folds), 3),
        "fold_p99_s": round(_percentile(folds, 0.99), 3),
        "tail_events_median": round(statistics.median(tails)),
        "tail_events_max": max(tails),
        "load_1m": round(os.getloadavg()[0], 1),
    }


async def run(bootstrap: str, events: int, kafka_data: Path | None = None) -> dict[str, Any]:
    catalog = Catalog(f"bench-replay-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    gen = JournalGenerator(catalog)
    ladder = SnapshotPolicy()
    written = await _write(bootstrap, catalog, gen, events, ladder)
    live_digest = gen.digest()
    n = gen.events

    gc.collect()
    values, fetch_s, fetch_cpu = await _fetch_only(bootstrap, catalog)
    gc.collect()
    applied, replay_digest, replay_s, replay_cpu, end = await _follow(bootstrap, catalog)
    gc.collect()
    decode_s = _decode_only(values)
    gc.collect()
    decode_apply_s, memory_digest = _decode_apply(values)
    travel = time_travel(bootstrap, catalog, values)
    value_bytes = sum(len(v) for v in values)
    on_disk = _journal_bytes_on_disk(kafka_data, catalog.journal.name)
    return {
        "bench": "replay",
        "cluster_id": catalog.cluster_id,  # the cli benchmark reuses this journal
        "events": n,
        "fetched": len(values),
        "applied": applied,
        "end_offset": end,
        "transactions": written["transactions"],
        "generate_s": round(written["generate_s"], 2),
        "write_s": round(written["write_s"], 2),
        "value_mb": round(value_bytes / 1e6, 1),
        "log_mb": round(on_disk / 1e6, 1) if on_disk is not None else None,
        "mean_value_bytes": round(value_bytes / max(1, len(values)), 1),
        "fetch_only_per_s": round(len(values) / fetch_s),
        "fetch_only_cpu_s": round(fetch_cpu, 2),
        "replay_per_s": round(applied / replay_s),
        "replay_s": round(replay_s, 2),
        "replay_cpu_s": round(replay_cpu, 2),
        "decode_only_per_s": round(len(values) / decode_s),
        "decode_apply_memory_per_s": round(len(values) / decode_apply_s),
        "replay_share_of_memory": round(decode_apply_s / replay_s, 3),
        "ladder_every": ladder.ladder_every,
        "ladder_rungs": ladder.ladder_rungs,
        "ladder_snapshots": written["ladder_snapshots"],
        "time_travel": travel,
        "live_digest": live_digest,
        "replay_digest": replay_digest,
        "memory_replay_digest": memory_digest,
        "digest_equal": live_digest == replay_digest == memory_digest,
        "event_mix": dict(sorted(gen.counts.items(), key=lambda kv: -kv[1])),
        "jobs_submitted": gen.jobs_submitted,
        "max_jobs_in_memory": gen.max_jobs_in_memory,
        "simulated_s": round((gen.now - T0) / 1000, 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(asyncio.run(run(sys.argv[1], int(sys.argv[2])))))
