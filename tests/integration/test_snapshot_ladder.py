"""Time travel from the snapshot ladder (issue 18, item 2): the state from the newest
snapshot before a point plus the journal after it equals a replay from offset 0 to
that point, and a missing or corrupt snapshot falls back to an older one."""

from __future__ import annotations

import json
import random

import pytest
from aiokafka import TopicPartition

from coordinator.domain import State, evolve, state_digest
from coordinator.runtime import snapshots
from coordinator.runtime.journal import StopAt
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog, snapshot_key
from schemas.codec import default_codec
from tests.conftest import run_keys
from tests.integration.harness import (
    Cluster,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    status_of,
)
from tests.integration.test_cli_submit import jm

pytestmark = pytest.mark.integration

JOBS = 12


async def _snapshot_chunks(bootstrap: str, catalog: Catalog) -> list[ev.SnapshotChunk]:
    reader = kafkaio.consumer(bootstrap, max_partition_fetch_bytes=snapshots.FETCH_BYTES)
    tp = TopicPartition(catalog.snapshots.name, 0)
    await reader.start()
    try:
        reader.assign([tp])
        end = (await reader.end_offsets([tp]))[tp]
        return snapshots.decode_chunks(await snapshots._read_range(reader, tp, 0, end), catalog)
    finally:
        await reader.stop()


def _fold(events: list[tuple[int, ev.Event]], state: State, after: int, upto: int) -> State:
    for offset, event in events:
        if after < offset <= upto:
            assert isinstance(event, ev.JournalEvent)
            evolve(state, event)
    return state


async def _send_chunks(cluster: Cluster, chunks: list[ev.SnapshotChunk]) -> None:
    catalog = cluster.catalog
    producer = kafkaio.producer(bootstrap_servers=cluster.stack.bootstrap, acks="all")
    await producer.start()
    try:
        for chunk in chunks:
            value, headers = default_codec().encode(chunk)
            key = snapshot_key(chunk.chunk_index, 0)
            headers = run_keys().sign("snapshots", catalog.snapshots.name, key, value, headers)
            await producer.send_and_wait(
                catalog.snapshots.name, value, key=key, headers=headers, partition=0
            )
    finally:
        await producer.stop()


def _replay(cluster: Cluster, *args: str) -> tuple[dict[str, object], str]:
    """`jm replay --json ARGS`: (its output without the count of events it applied
    (fewer from a snapshot), its stderr)."""
    done = jm(cluster.stack, cluster.catalog, "replay", "--json", *args)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    del out["events"]
    return out, done.stderr


async def test_snapshot_plus_tail_equals_full_replay_at_random_points(cluster: Cluster) -> None:
    # A snapshot every 5 events, each in its own ladder rung: several rungs to choose from.
    c1 = cluster.coordinator("c1", "--snapshot-every-events", "5", "--snapshot-ladder-every", "5")
    await c1.wait_for_line("leads with epoch 1")
    stack, catalog = cluster.stack, cluster.catalog
    async with ProtocolWorker(stack, catalog, "tm-1", slots=2 * JOBS), \
            Producer(stack, catalog) as client, Journal(stack, catalog) as journal:  # fmt: skip
        for n in range(JOBS):
            await client.send(job_submitted(f"ladder-{n}", parallelism=2))
        events = await journal.wait_until(
            lambda es: (
                all(status_of(es, f"ladder-{n}") == ev.JobStatus.RUNNING for n in range(JOBS))
                and sum(isinstance(e, ev.SnapshotTaken) for _, e in es) >= 5
            )
        )
        c1.stop()  # freeze the journal: every fold below sees the same end
        while await journal.read(500):
            pass
        events = journal.events

    chunks = await _snapshot_chunks(stack.bootstrap, catalog)
    ladder = sorted({c.covered_offset for c in chunks})
    assert len(ladder) >= 5, ladder

    # 20 random points after the first snapshot: snapshot + tail == full replay.
    rng = random.Random(18)
    offsets = [o for o, _ in events if o > ladder[0]]
    for point in sorted(rng.sample(offsets, 20)):
        full = state_digest(_fold(events, State(), -1, point))
        loaded = snapshots.assemble(chunks, snapshots.usable_for(StopAt(offset=point + 1)))
        assert loaded is not None, point
        # The newest snapshot before the point, not merely some snapshot.
        assert loaded.covered_offset == max(o for o in ladder if o <= point), point
        tail = _fold(events, loaded.state, loaded.covered_offset, point)
        assert state_digest(tail) == full, (point, loaded.snapshot_id)

    # The real jm, by offset and by time, against its own replay from offset 0.
    point = rng.choice([o for o in offsets if o > ladder[len(ladder) // 2]])
    fast, how = _replay(cluster, "--to-offset", str(point))
    slow, how_full = _replay(cluster, "--to-offset", str(point), "--full-replay")
    assert fast == slow and fast["offset"] == point
    assert "from the snapshot covering offset" in how, how
    assert "replayed from offset 0" in how_full, how_full
    stamped = next(e.event_time for o, e in events if o == point)
    at_time, how = _replay(cluster, "--until", str(stamped))
    assert at_time == _replay(cluster, "--until", str(stamped), "--full-replay")[0]
    assert int(str(at_time["offset"])) >= point
    assert "from the snapshot covering offset" in how, how

    # A corrupt snapshot and an incomplete one, both newer than every real one before
    # `point`: the replay falls back to the real one, with the same result.
    newest = max(o for o in ladder if o < point)
    epoch = max(c.epoch for c in chunks)
    bad = ev.SnapshotChunk(
        event_id="bad:0", event_time=0, snapshot_id="bad", format_version=chunks[0].format_version,
        covered_offset=point - 1, chunk_index=0, chunk_count=1, payload=b"not zlib", epoch=epoch,
    )  # fmt: skip
    half = ev.SnapshotChunk(
        event_id="half:0", event_time=0, snapshot_id="half", format_version=bad.format_version,
        covered_offset=point - 1, chunk_index=0, chunk_count=2, payload=b"", epoch=epoch,
    )  # fmt: skip
    await _send_chunks(cluster, [bad, half])
    fast, how = _replay(cluster, "--to-offset", str(point))
    assert fast == slow
    assert f"from the snapshot covering offset {newest} " in how, how
    # Before the first snapshot: from offset 0, same answer as --full-replay.
    early = min(o for o, _ in events if o >= 0)
    fast, how = _replay(cluster, "--to-offset", str(early))
    assert fast == _replay(cluster, "--to-offset", str(early), "--full-replay")[0]
    assert "replayed from offset 0" in how, how
