"""Replay of a signed journal, as every replica reads it (issue 18; not part of ``make bench``).

    python -m tests.bench.signed_replay write BOOTSTRAP EVENTS KEYFILE   # prints the cluster id
    python -m tests.bench.signed_replay replay BOOTSTRAP CLUSTER KEYFILE  # one JSON line

``write``: a fresh cluster's journal filled with the replay benchmark's workload
(``tests/bench/workload.py``, transactions of ~5,000 records), every record signed
with the journal key of KEYFILE as a leader signs it (KEYFILE is generated when it
does not exist). ``replay``: a fresh ``JournalFollower`` holding that journal key, so
that it verifies every record's signature, catches up from offset 0 in this
process; it prints the events applied, CPU seconds (``time.process_time``) and wall
seconds of the catch-up, events per CPU-second, the state digest, the records
skipped as foreign, and the 1-minute load average before and after. One replay per
process, so that runs of two versions of the code can be interleaved.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from coordinator.runtime import machine
from coordinator.runtime.journal import JournalFollower
from schemas import kafkaio, signing
from schemas.catalog import Catalog
from schemas.signing import KeyRing
from tests.bench import bench_replay
from tests.bench.workload import JournalGenerator, Record


class SignedJournal(JournalGenerator):
    """The workload's records, each signed with the journal key."""

    def __init__(self, catalog: Catalog, keys: KeyRing) -> None:
        super().__init__(catalog)
        self.keys = keys

    def batches(self, n: int) -> Iterator[list[Record]]:
        topic = self.catalog.journal.name
        sign = self.keys.sign
        for batch in super().batches(n):
            yield [(k, v, sign("journal", topic, k, v, h)) for k, v, h in batch]


def _keys(path: str) -> KeyRing:
    if not Path(path).exists():
        signing.write_key_file(path, signing.generate())
    return KeyRing.load(path, ["journal"])


async def write(bootstrap: str, events: int, key_file: str) -> str:
    catalog = Catalog(f"bench-signed-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    gen = SignedJournal(catalog, _keys(key_file))
    await bench_replay._write(bootstrap, catalog, gen, events)
    print(json.dumps({"cluster": catalog.cluster_id, "events": gen.events,
                      "digest": gen.digest()}))  # fmt: skip
    return catalog.cluster_id


async def replay(bootstrap: str, cluster: str, key_file: str) -> dict[str, object]:
    load_before = os.getloadavg()[0]
    follower = JournalFollower(bootstrap, Catalog(cluster), keys=_keys(key_file))
    await follower.start()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        applied = await follower.catch_up(timeout_s=3_600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await follower.stop()
    out = {
        "events": applied, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "events_per_cpu_s": round(applied / cpu), "digest": machine.digest(follower.state),
        "foreign": follower.foreign_count, "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    verb, bootstrap, what, key_file = sys.argv[1:5]
    if verb == "write":
        asyncio.run(write(bootstrap, int(what), key_file))
    else:
        asyncio.run(replay(bootstrap, what, key_file))
