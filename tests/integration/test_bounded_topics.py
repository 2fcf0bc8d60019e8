"""Bounded reading of the compacted topics: a snapshot is found from the end of
jm.snapshots without loading the partition, and replicas past their retention
leave `jm replicas` and get a tombstone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from coordinator.commands.replica import (
    REPLICA_STALE_RETENTION_MS,
    REPLICA_STOPPED_RETENTION_MS,
    prune_replicas,
    read_replicas,
)
from coordinator.domain import State, state_digest
from coordinator.runtime import snapshots
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.settings import ClusterSettings
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def _send(stack: Stack, topic: str, events: list[ev.Event], catalog: Catalog) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            value, headers = default_codec().encode(event)
            await producer.send_and_wait(
                topic, value, key=catalog.key_for(event), headers=headers, partition=0
            )
    finally:
        await producer.stop()


async def test_the_latest_snapshot_is_read_from_the_end(stack: Stack, catalog: Catalog) -> None:
    chunks: list[ev.Event] = []
    for n in range(60):  # 60 snapshots of growing states, the last one is wanted
        state = State(epoch=n + 1, next_job_seq=n)
        chunks.extend(
            snapshots.chunks(state, f"snap-{n}", covered_offset=10 * n, epoch=n + 1, now=n)
        )
    await _send(stack, catalog.snapshots.name, chunks, catalog)
    loaded = await snapshots.load_latest(stack.bootstrap, catalog)
    assert loaded is not None and loaded.snapshot_id == "snap-59"
    assert state_digest(loaded.state) == state_digest(State(epoch=60, next_job_seq=59))
    assert loaded.records_read <= snapshots.FIRST_WINDOW


async def test_an_unreadable_latest_snapshot_widens_the_window(
    stack: Stack, catalog: Catalog
) -> None:
    good = snapshots.chunks(State(epoch=3), "good", covered_offset=5, epoch=3, now=0)
    newer = [
        ev.SnapshotChunk(
            event_id=f"bad:{i}",
            event_time=0,
            snapshot_id="bad",
            format_version=999,
            covered_offset=100 + i,
            chunk_index=0,
            chunk_count=1,
            payload=b"x",
            epoch=4,
        )
        for i in range(40)
    ]
    await _send(stack, catalog.snapshots.name, [*good, *newer], catalog)
    loaded = await snapshots.load_latest(stack.bootstrap, catalog)
    assert loaded is not None and loaded.snapshot_id == "good"


async def test_replicas_past_their_retention_are_hidden_then_pruned(
    stack: Stack, catalog: Catalog
) -> None:
    now = int(time.time() * 1000)

    def status(rid: str, role: ev.ReplicaRole, age_ms: int) -> ev.ReplicaStatus:
        return ev.ReplicaStatus(
            event_id=f"s-{rid}",
            event_time=now - age_ms,
            replica_id=rid,
            role=role,
            epoch=1,
            applied_offset=0,
            lag=0,
            digest="d",
        )

    await _send(
        stack,
        catalog.replicas.name,
        [
            status("live", ev.ReplicaRole.LEADER, 1_000),
            status("just-stopped", ev.ReplicaRole.STOPPED, 1_000),
            status("stopped-long-ago", ev.ReplicaRole.STOPPED, REPLICA_STOPPED_RETENTION_MS + 1),
            status("killed", ev.ReplicaRole.STANDBY, REPLICA_STALE_RETENTION_MS + 1),
        ],
        catalog,
    )
    settings = ClusterSettings(bootstrap_servers=stack.bootstrap, cluster_id=catalog.cluster_id)
    assert sorted(await read_replicas(settings, now=now)) == ["just-stopped", "live"]
    assert len(await read_replicas(settings, include_gone=True, now=now)) == 4
    assert await prune_replicas(settings, now=now) == ["killed", "stopped-long-ago"]
    assert sorted(await read_replicas(settings, include_gone=True, now=now)) == [
        "just-stopped",
        "live",
    ]
    records = await kafkaio.read_partition(stack.bootstrap, catalog.replicas.name)
    assert [r.key for r in records if r.value is None] == [b"killed", b"stopped-long-ago"]


async def test_topics_create_brings_an_older_snapshots_topic_in_line(
    stack: Stack, unique: Callable[[str], str]
) -> None:
    """A cluster made before segment.ms joined the catalog: `jm topics create`
    updates it (check_topics would refuse it otherwise)."""
    catalog = Catalog(unique("old"))
    older = dataclasses.replace(catalog.snapshots, extra={})
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        topic = NewTopic(older.name, 1, 1, topic_configs=older.config())
        response = await admin.create_topics([topic])
        assert [code for _, code, _ in response.topic_errors] == [0]
        deadline = time.monotonic() + 10
        while older.name not in await kafkaio.describe_topics(stack.bootstrap, [older.name]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        with pytest.raises(kafkaio.TopicError, match=r"segment\.ms=\d+, the catalog says 600000"):
            await kafkaio.check_topics(stack.bootstrap, catalog, ["snapshots"])
        outcome = await kafkaio.create_topics(stack.bootstrap, catalog)
        assert outcome[catalog.snapshots.name] == "updated"
        assert outcome[catalog.journal.name] == "created"
        await kafkaio.check_topics(stack.bootstrap, catalog)
        assert await kafkaio.create_topics(stack.bootstrap, catalog) == {
            t.name: "exists" for t in catalog.topics
        }
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([t.name for t in catalog.topics])
        await admin.close()
