"""Benchmark: replay of a realistic journal from Kafka (read + decode + apply).

1. A fresh cluster id; its topics created with ``schemas.kafkaio.create_topics``.
2. ``workload.JournalGenerator`` drives decide/evolve like the leader and its
   records are produced to the journal by a transactional producer, committing
   every ~5,000 records (on decision boundaries), so the journal has the
   transaction markers of a real one.
3. Measured on this process (one Python thread; the broker runs beside it):
   - fetch only: a read_committed consumer with the follower's settings reads
     every record, no decoding (the values are kept for step 5);
   - replay: a fresh ``JournalFollower`` ``catch_up()`` from offset 0
     (read + decode + apply), the figure the target is about;
   - decode only, and decode + apply, over the same values in memory.
4. The replayed state's digest is compared with the generator's live digest.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from coordinator.domain import State, evolve, state_digest
from coordinator.runtime.journal import JournalFollower
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.bench.workload import T0, JournalGenerator

TRANSACTION_RECORDS = 5_000


def _journal_bytes_on_disk(kafka_data: Path | None, topic: str) -> int | None:
    if kafka_data is None:
        return None
    part = kafka_data / f"{topic}-0"
    if not part.is_dir():
        return None
    return sum(f.stat().st_size for f in part.glob("*.log"))


async def _write(bootstrap: str, catalog: Catalog, gen: JournalGenerator, n: int) -> dict[str, Any]:
    producer = kafkaio.producer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{catalog.cluster_id}.bench-writer",
        enable_idempotence=True,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=1024 * 1024,
    )
    await producer.start()
    topic = catalog.journal.name
    transactions = 0
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
                    await producer.send(topic, value, key=key, headers=headers, partition=0)
            transactions += 1
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - started
    return {"transactions": transactions, "write_s": elapsed, "generate_s": gen_s}


async def _fetch_only(bootstrap: str, catalog: Catalog) -> tuple[list[bytes], float, float]:
    """Read every committed journal record (no decoding); (values, wall s, cpu s)."""
    consumer = kafkaio.consumer(
        bootstrap, fetch_max_wait_ms=10, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    tp = TopicPartition(catalog.journal.name, 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = int((await consumer.end_offsets([tp]))[tp])
        consumer.seek(tp, 0)
        values: list[bytes] = []
        append = values.append
        wall, cpu = time.perf_counter(), time.process_time()
        position = 0
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=5_000)
            for record in batch.get(tp, []):
                append(record.value or b"")
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


async def run(bootstrap: str, events: int, kafka_data: Path | None = None) -> dict[str, Any]:
    catalog = Catalog(f"bench-replay-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    gen = JournalGenerator(catalog)
    written = await _write(bootstrap, catalog, gen, events)
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
