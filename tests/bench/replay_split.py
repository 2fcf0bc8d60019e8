"""Where a signed replay's CPU goes, and what moving decoding off the applying thread
could save (issue 18, item 3; not part of ``make bench``).

    python -m tests.bench.replay_split BOOTSTRAP CLUSTER KEYFILE

Reads the journal of CLUSTER (one ``tests.bench.signed_replay write``) once, whole
record batches with their headers, then over those records in memory, best of 3
rounds each, CPU microseconds per record (``time.process_time``):

- ``decode``: ``Codec.decode(value, journal.allowed)``;
- ``verify``: ``signing.Verifier.valid`` (the batched fold's signature check);
- ``apply``: ``evolve`` of the decoded events on a fresh state;
- ``pickle_out`` / ``pickle_in``: ``pickle.dumps`` / ``pickle.loads`` of the decoded
  events, 1,000 at a time: what handing decoded events from a decoding process to
  the applying one costs each side at the least (the pipe's copies not counted);
- ``pickle_raw_out``: ``pickle.dumps`` of (key, value, headers) of 1,000 records at a
  time: what handing records to a verifying process would cost the applying one;
- ``verify_2_threads``: the same checks split over two threads, wall and CPU of
  the process: hashlib releases the GIL only for data of 2 KiB and more, so small
  records are checked one thread at a time.

Prints one JSON line, with the 1-minute load average before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable

from aiokafka import TopicPartition

from coordinator.domain import State, evolve
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.signing import KeyRing

ROUNDS = 3


async def _records(bootstrap: str, catalog: Catalog) -> list[kafkaio.LightRecord]:
    consumer = kafkaio.consumer(
        bootstrap, fetch_max_wait_ms=10, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    tp = TopicPartition(catalog.journal.name, 0)
    await consumer.start()
    kafkaio.read_batches(consumer, headers=True)
    try:
        consumer.assign([tp])
        end = int((await consumer.end_offsets([tp]))[tp])
        consumer.seek(tp, 0)
        out: list[kafkaio.LightRecord] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                out.extend(batch)
        return out
    finally:
        await consumer.stop()


def _best_us(n: int, work: Callable[[], object]) -> float:
    """Best CPU microseconds per record of `work` over ROUNDS rounds."""
    best = float("inf")
    for _ in range(ROUNDS):
        cpu = time.process_time()
        work()
        best = min(best, time.process_time() - cpu)
    return round(best / n * 1e6, 3)


def main(bootstrap: str, cluster: str, key_file: str) -> None:
    load_before = os.getloadavg()[0]
    catalog = Catalog(cluster)
    records = asyncio.run(_records(bootstrap, catalog))
    n = len(records)
    codec, allowed = default_codec(), catalog.journal.allowed
    verifier = KeyRing.load(key_file, ["journal"]).verifier("journal", catalog.journal.name)
    events = [codec.decode(r[1] or b"", allowed) for r in records]
    assert all(verifier.valid(r[2], r[1], r[3]) for r in records)

    def decode() -> None:
        for record in records:
            codec.decode(record[1] or b"", allowed)

    def verify(part: list[kafkaio.LightRecord]) -> None:
        valid = verifier.valid
        for _, value, key, headers in part:
            valid(key, value, headers)

    def apply() -> None:
        state = State()
        for event in events:
            assert isinstance(event, ev.JournalEvent)
            evolve(state, event)

    chunks = [events[i : i + 1_000] for i in range(0, n, 1_000)]
    pickled = [pickle.dumps(c, pickle.HIGHEST_PROTOCOL) for c in chunks]

    def pickle_out() -> None:
        for chunk in chunks:
            pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)

    def pickle_in() -> None:
        for blob in pickled:
            pickle.loads(blob)

    raw = [[r[1:] for r in records[i : i + 1_000]] for i in range(0, n, 1_000)]

    def pickle_raw_out() -> None:
        for chunk in raw:
            pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)

    def verify_2_threads() -> None:
        half = n // 2
        threads = [threading.Thread(target=verify, args=(part,))
                   for part in (records[:half], records[half:])]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    out: dict[str, object] = {"records": n, "load_before": load_before}
    out["decode_us"] = _best_us(n, decode)
    out["verify_us"] = _best_us(n, lambda: verify(records))
    out["apply_us"] = _best_us(n, apply)
    out["pickle_out_us"] = _best_us(n, pickle_out)
    out["pickle_in_us"] = _best_us(n, pickle_in)
    out["pickle_raw_out_us"] = _best_us(n, pickle_raw_out)
    out["verify_1_thread_us"] = _best_us(n, lambda: verify(records))
    wall = time.perf_counter()
    out["verify_2_threads_cpu_us"] = _best_us(n, verify_2_threads)
    out["verify_2_threads_wall_us"] = round((time.perf_counter() - wall) / ROUNDS / n * 1e6, 3)
    wall = time.perf_counter()
    for _ in range(ROUNDS):
        verify(records)
    out["verify_1_thread_wall_us"] = round((time.perf_counter() - wall) / ROUNDS / n * 1e6, 3)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
