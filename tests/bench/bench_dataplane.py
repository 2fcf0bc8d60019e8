"""Benchmark: records/s end to end through a 3-vertex keyed job on one real worker.

    sequence (1) --HASH(value)--> keyed_count (p) --FORWARD--> kafka_sink (p)

The job is deployed the way the coordinator does (one DeployTask per
subtask, from the worker tests' minimal transactional leader) onto a worker
started as a subprocess; the clock runs from the deployment's commit to the
last FINISHED report, so it includes task start-up (edge topic creation,
producer and consumer connections), the end-of-stream markers and the sink's
flush. Every key is distinct (``value``), so the keyed state grows with N.

    python -m tests.bench.bench_dataplane [--records 200000] [--parallelism 1 2]

Prints one JSON line per run. Needs a broker (``KAFKA_BOOTSTRAP_SERVERS``,
default 127.0.0.1:9092: ``make up``); everything it creates is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from typing import Any

from aiokafka.admin import NewTopic

from schemas import kafkaio
from schemas.catalog import Catalog
from tests.worker.conftest import FAST, Cluster
from tests.worker.dataplane import Job, P, V, edge
from tests.worker.harness import Leader, Reports, WorkerProcess

_FINISHED = re.compile(
    r"worker\.task\.[^/]+/(\S+)\[(\d+)\]#\d+: finished: (\d+) records in ([\d.]+) s"
    r"(?: \((\d+) read from edges\))?"
)


async def _cluster(bootstrap: str, catalog: Catalog, slots: int) -> Cluster:
    tm_id = f"bench-{uuid.uuid4().hex[:6]}"
    reports = Reports(bootstrap, catalog, tm_id)
    leader = Leader(bootstrap, catalog, tm_id, 1)
    worker = WorkerProcess(bootstrap, catalog, tm_id, "--slots", str(slots), *FAST)
    await reports.start()
    await leader.start()
    leader.incarnation = (await reports.registration(within=30)).incarnation
    await leader.send(leader.keepalive())
    leader.keep_alive_every(0.3)
    await asyncio.sleep(1.0)  # let the slot processes finish starting
    return Cluster(worker, leader, reports)


async def run_once(bootstrap: str, records: int, parallelism: int) -> dict[str, Any]:
    catalog = Catalog(f"bench-dp-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    sink = f"{catalog.prefix}-bench-sink"  # jobs may not name "<prefix>." topics
    admin = kafkaio.admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(sink, parallelism, 1)])
    cluster = await _cluster(bootstrap, catalog, 1 + 2 * parallelism)
    try:
        job = Job(
            vertices=[
                V("numbers", "sequence", 1, {"count": str(records)}),
                V("count", "keyed_count", parallelism, {"key_field": "value"}),
                V("out", "kafka_sink", parallelism, {"topic": sink, "key_field": "value"}),
            ],
            edges=[edge("numbers", "count", P.HASH, "value"), edge("count", "out")],
        )
        began = time.perf_counter()
        await job.deploy([cluster])
        await job.finished(within=600)
        elapsed = time.perf_counter() - began
        await cluster.worker.close()
        tasks = {
            f"{m[1]}[{m[2]}]": {
                "records_in": int(m[5] or 0),
                "records_out": int(m[3]),
                "seconds": float(m[4]),
            }
            for m in _FINISHED.finditer(cluster.worker.log())
        }
        return {
            "bench": "dataplane",
            "job": "sequence(1) -HASH-> keyed_count(p) -FORWARD-> kafka_sink(p)",
            "parallelism": parallelism,
            "records": records,
            "seconds": round(elapsed, 3),
            "records_per_s": round(records / elapsed),
            "tasks": tasks,
        }
    finally:
        await cluster.leader.close()
        await cluster.worker.close()
        await cluster.reports.close()
        with contextlib.suppress(Exception):
            prefix = f"{catalog.prefix}."
            await admin.delete_topics(
                [t for t in await admin.list_topics() if t.startswith(prefix) or t == sink]
            )
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    for p in args.parallelism:
        print(json.dumps(await run_once(args.bootstrap, args.records, p)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
