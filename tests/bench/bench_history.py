"""Benchmark: the history server (``jm history``) rebuilding from a journal of ended jobs,
and its ``/jobs/overview`` latency with that many archived jobs.

Real: Kafka, the journal records (``workload.JournalGenerator`` drives decide/evolve
like the leader, so the jobs are accepted, deployed, checkpointed, ended and archived
as a leader journals them; written in transactions of ~5,000 records and signed with
the journal key), and the history server: ``python -m coordinator.history`` as its
own process (a faust-streaming worker, a fresh consumer group and empty tables),
verifying and folding every record and writing its tables' changelogs.
Simulated: the cluster that would have written the journal (no coordinator, no workers).

Measured: from the process start until its answers carry the journal's end offset
(``X-JM-Journal-Offset``), then sequential ``GET /jobs/overview`` round trips over
loopback (aiohttp client in this process). Where the rebuild went, from the server's
INFO log: the first fold (before the faust worker starts) and the writing of its rows
into the recovered tables; the rest is the interpreter's start, the worker's start,
joining the consumer group and recovering the (empty) tables.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import aiohttp

from schemas import kafkaio, signing
from schemas.catalog import Catalog
from tests.bench import journal
from tests.bench.workload import JournalGenerator

REPO = Path(__file__).resolve().parents[2]
TRANSACTION_RECORDS = 5_000
OVERVIEW_REQUESTS = 200


async def _write(
    bootstrap: str, catalog: Catalog, gen: JournalGenerator, keys: signing.KeyRing
) -> dict[str, float]:
    """Journal `gen`'s records until its last job was submitted, ended and archived
    (``gen.max_jobs`` caps the arrivals); the record count and where the time went."""
    producer = journal.writer(bootstrap, catalog)
    topic = catalog.journal.name
    assert gen.max_jobs is not None
    await producer.start()
    records, gen_s, sign_s = 0, 0.0, 0.0
    batches = gen.batches(1 << 62)
    try:
        while True:
            t = time.perf_counter()
            pending: list[tuple[bytes, bytes, Any]] = []
            drained = False
            while len(pending) < TRANSACTION_RECORDS and not drained:
                pending.extend(next(batches))
                drained = gen.jobs_submitted >= gen.max_jobs and not gen.state.jobs
            t2 = time.perf_counter()
            signed = [(k, v, keys.sign("journal", topic, k, v, h)) for k, v, h in pending]
            t3 = time.perf_counter()
            gen_s, sign_s = gen_s + t2 - t, sign_s + t3 - t2
            async with producer.transaction():
                for key, value, headers in signed:
                    await producer.send(topic, value, key=key, headers=headers, partition=0)
            records += len(pending)
            if drained:
                break
    finally:
        await producer.stop()
    return {"records": records, "generate_s": gen_s, "sign_s": sign_s}


async def run(bootstrap: str, jobs: int = 10_000) -> dict[str, Any]:
    catalog = Catalog(f"bench-history-{uuid.uuid4().hex[:8]}")
    await kafkaio.create_topics(bootstrap, catalog)
    home = Path(tempfile.mkdtemp(prefix="jm-bench-history-"))
    key_file = home / "keys.json"
    signing.write_key_file(key_file, signing.generate(("journal",)))
    keys = signing.KeyRing.load(key_file, ("journal",))
    gen = JournalGenerator(catalog, max_jobs=jobs)
    started = time.perf_counter()
    written = await _write(bootstrap, catalog, gen, keys)
    write_s = time.perf_counter() - started
    end = await journal.end_offset(bootstrap, catalog)
    proc, log = _start(catalog, bootstrap, key_file, home / "history.log")
    t0 = time.perf_counter()
    try:
        url = await _url(home / "history.log", proc)
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(url + "/jobs/overview") as r:
                    # The last offset is the writer's commit marker: never handed over.
                    if int(r.headers["X-JM-Journal-Offset"]) >= end - 1:
                        archived = len((await r.json())["jobs"])
                        break
                await asyncio.sleep(0.2)
            rebuild_s = time.perf_counter() - t0
            latencies = []
            for _ in range(OVERVIEW_REQUESTS):
                t = time.perf_counter()
                async with session.get(url + "/jobs/overview") as r:
                    body = await r.read()
                latencies.append((time.perf_counter() - t) * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    latencies.sort()
    phases = _phases((home / "history.log").read_text(errors="replace"))
    return {
        "benchmark": "history",
        "cluster_id": catalog.cluster_id,
        "jobs_submitted": gen.jobs_submitted,
        "jobs_archived_served": archived,
        "journal_records": written["records"],
        "journal_end_offset": end,
        "write_s": round(write_s, 2),
        "write_generate_s": round(written["generate_s"], 2),
        "write_sign_s": round(written["sign_s"], 2),
        "rebuild_s": round(rebuild_s, 2),
        **phases,
        "rebuild_other_s": round(rebuild_s - phases["fold_s"] - phases["publish_s"], 2),
        "overview_bytes": len(body),
        "overview_p50_ms": round(statistics.median(latencies), 2),
        "overview_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "overview_requests": OVERVIEW_REQUESTS,
    }


def _start(
    catalog: Catalog, bootstrap: str, key_file: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], IO[str]]:
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.history", "--port", "0", "--cluster-id",
         catalog.cluster_id, "--bootstrap-servers", bootstrap, "--signing-keys", str(key_file),
         "--log-level", "INFO"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    return proc, log


def _phases(log: str) -> dict[str, Any]:
    """The first fold's and the row writing's seconds, from the server's INFO log
    (coordinator/history/app.py)."""
    fold = re.search(r"history: folded up to offset \d+ in ([\d.]+) s", log)
    rows = re.search(r"history: wrote (\d+) rows .* in ([\d.]+) s", log)
    if fold is None or rows is None:
        raise RuntimeError("jm history logged no fold or row writing (its log: history.log)")
    return {"fold_s": float(fold[1]), "publish_s": float(rows[2]), "rows_written": int(rows[1])}


def _printed_url(log: Path) -> str | None:
    text = log.read_text(errors="replace")
    if "history http://" not in text:
        return None
    return "http://" + text.split("history http://", 1)[1].split()[0]


async def _url(log: Path, proc: subprocess.Popen[bytes]) -> str:
    while (url := _printed_url(log)) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"jm history exited (its log: {log})")
        await asyncio.sleep(0.1)
    return url
