"""Benchmark: back-to-back Kafka transactions with aiokafka, the leader's commit pattern.

Not a target of DESIGN.md: it explains the latency figures. Each transaction
is committed right after the previous one, as the leader loop does under load:

- ``journal+commands+offsets``: one journal record, one record to a commands
  partition, and input offsets (``send_offsets_to_transaction``): a typical
  leader transaction;
- ``offsets-only``: only input offsets (inputs that journal nothing);
- ``journal-only``: one journal record.

Measured with aiokafka's defaults (``retry_backoff_ms=100``; its fixed 20 ms
``BACKOFF_OVERRIDE`` after ``CONCURRENT_TRANSACTIONS``) and with
``retry_backoff_ms=5`` plus the override patched to 2 ms. The broker answers
``CONCURRENT_TRANSACTIONS`` while it still writes the previous transaction's
markers (KAFKA-5477), and the client then sleeps.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import aiokafka.producer.sender as aiokafka_sender
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from schemas import kafkaio
from schemas.catalog import Catalog

PATTERNS = ("journal+commands+offsets", "offsets-only", "journal-only")


async def _pattern(
    producer: AIOKafkaProducer, catalog: Catalog, pattern: str, n: int
) -> list[float]:
    out = []
    offsets_tp = TopicPartition(catalog.submissions.name, 0)
    for i in range(n + 5):
        started = time.perf_counter()
        async with producer.transaction():
            if pattern != "offsets-only":
                await producer.send(catalog.journal.name, b"x", partition=0)
            if pattern == "journal+commands+offsets":
                await producer.send(catalog.commands.name, b"x", partition=i % 16)
            if pattern != "journal-only":
                await producer.send_offsets_to_transaction(
                    {offsets_tp: OffsetAndMetadata(i, "")}, catalog.leader_group_id
                )
        if i >= 5:  # the first ones find coordinators and add the group
            out.append((time.perf_counter() - started) * 1000)
    return out


async def run(bootstrap: str, n: int = 100) -> list[dict[str, Any]]:
    results = []
    default_override = aiokafka_sender.BACKOFF_OVERRIDE
    for label, retry_backoff_ms, override in (
        ("aiokafka defaults", 100, default_override),
        ("retry_backoff_ms=5, override 2 ms", 5, 0.002),
    ):
        catalog = Catalog(f"bench-txn-{uuid.uuid4().hex[:8]}")
        await kafkaio.create_topics(bootstrap, catalog)
        aiokafka_sender.BACKOFF_OVERRIDE = override
        producer = kafkaio.producer(
            bootstrap_servers=bootstrap,
            transactional_id=catalog.transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            retry_backoff_ms=retry_backoff_ms,
        )
        await producer.start()
        try:
            for pattern in PATTERNS:
                ms = sorted(await _pattern(producer, catalog, pattern, n))
                results.append({
                    "bench": "txn", "client": label, "pattern": pattern, "n": len(ms),
                    "p50_ms": round(statistics.median(ms), 1),
                    "p95_ms": round(ms[int(len(ms) * 0.95)], 1), "max_ms": round(ms[-1], 1),
                })  # fmt: skip
        finally:
            await producer.stop()
            aiokafka_sender.BACKOFF_OVERRIDE = default_override
    return results
