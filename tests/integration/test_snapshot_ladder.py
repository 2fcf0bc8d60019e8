"""Time travel from the snapshot ladder (issue 18, item 2): the state from the newest
snapshot before a point plus the journal after it equals a replay from offset 0 to
that point, and a missing or corrupt snapshot falls back to an older one; for
``jm replay`` and for the REST API's ``/jobs/{id}/state``."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import aiohttp
import pytest
from aiokafka import TopicPartition

from coordinator import drill
from coordinator.commands.state import Folded, job_of
from coordinator.domain import STATE_FORMAT_VERSION, State, evolve, state_digest
from coordinator.rest.reads import job_state_at
from coordinator.runtime import snapshots
from coordinator.runtime.journal import StopAt
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog, snapshot_key
from schemas.codec import default_codec
from tests.conftest import run_keys
from tests.integration.harness import (
    Cluster,
    CoordinatorProcess,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    now_ms,
    status_of,
)
from tests.integration.test_cli_submit import jm
from tests.integration.test_rest_reads import rest_url

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


async def _send_chunks(
    cluster: Cluster,
    chunks: list[ev.SnapshotChunk],
    rung: Callable[[ev.SnapshotChunk], int] = lambda c: 0,
) -> None:
    catalog = cluster.catalog
    producer = kafkaio.producer(bootstrap_servers=cluster.stack.bootstrap, acks="all")
    await producer.start()
    try:
        for chunk in chunks:
            value, headers = default_codec().encode(chunk)
            key = snapshot_key(chunk.chunk_index, rung(chunk))
            headers = run_keys().sign("snapshots", catalog.snapshots.name, key, value, headers)
            await producer.send_and_wait(
                catalog.snapshots.name, value, key=key, headers=headers, partition=0
            )
    finally:
        await producer.stop()


async def _ladder_leader(cluster: Cluster) -> CoordinatorProcess:
    """A leader writing a snapshot every 5 events, each in its own ladder rung: several
    rungs to choose from."""
    c1 = cluster.coordinator("c1", "--snapshot-every-events", "5", "--snapshot-ladder-every", "5")
    await c1.wait_for_line("leads with epoch 1")
    return c1


async def _running_jobs(
    client: Producer, journal: Journal, prefix: str, jobs: int, snapshots: int
) -> list[tuple[int, ev.Event]]:
    """Submit `jobs` jobs of parallelism 2; the journal once all run and it holds at
    least `snapshots` SnapshotTaken. The leader looks whether a snapshot is due after
    each transaction, and how many events a transaction carries depends on timing: if
    the jobs' own events gave fewer snapshots, cancel requests for a job that does not
    exist (each journaled as its rejection) make the journal go on until they are there."""
    for n in range(jobs):
        await client.send(job_submitted(f"{prefix}-{n}", parallelism=2))

    def running(es: list[tuple[int, ev.Event]]) -> bool:
        return all(status_of(es, f"{prefix}-{n}") == ev.JobStatus.RUNNING for n in range(jobs))

    def answered(nudge: str) -> Callable[[list[tuple[int, ev.Event]]], bool]:
        return lambda es: any(
            isinstance(e, ev.InputRejected) and e.input_event_id == nudge for _, e in es
        )

    events = await journal.wait_until(running)
    nudges = 0
    while sum(isinstance(e, ev.SnapshotTaken) for _, e in events) < snapshots:
        assert nudges < 100, "the leader takes no snapshot"
        nudges += 1
        nudge = f"{prefix}-nudge-{nudges}"
        cancel = ev.JobCancelRequested(event_id=nudge, event_time=now_ms(), job_id="no-such-job")
        await client.send(cancel)
        events = await journal.wait_until(answered(nudge))
    return events


def _replay(cluster: Cluster, *args: str) -> tuple[dict[str, object], str]:
    """`jm replay --json ARGS`: (its output without the count of events it applied
    (fewer from a snapshot), its stderr)."""
    done = jm(cluster.stack, cluster.catalog, "replay", "--json", *args)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    del out["events"]
    return out, done.stderr


async def test_snapshot_plus_tail_equals_full_replay_at_random_points(cluster: Cluster) -> None:
    c1 = await _ladder_leader(cluster)
    stack, catalog = cluster.stack, cluster.catalog
    async with ProtocolWorker(stack, catalog, "tm-1", slots=2 * JOBS), \
            Producer(stack, catalog) as client, Journal(stack, catalog) as journal:  # fmt: skip
        events = await _running_jobs(client, journal, "ladder", JOBS, snapshots=5)
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

    # `jm drill`'s verdict at a point before the newest snapshot starts from a snapshot
    # before that point (it once took the newest, which covers events after the point).
    mid = next(o for o in offsets if o > ladder[len(ladder) // 2])
    assert mid < ladder[-1]
    from_snapshot, used = await drill.snapshot_plus_tail_digest(stack.bootstrap, catalog, mid)
    assert from_snapshot == (await drill.full_replay_digest(stack.bootstrap, catalog, mid))[0], used

    # The real jm, by offset and by time, against its own replay from offset 0.
    # Neither the point nor the offset before it holds a real snapshot, so the corrupt and
    # incomplete ones below (covering point - 1) are newer than every real one they hide.
    point = rng.choice(
        [o for o in offsets if o > ladder[len(ladder) // 2] and {o, o - 1}.isdisjoint(ladder)]
    )
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


async def test_the_rest_view_of_a_past_point_starts_from_the_ladder_like_jm_replay(
    cluster: Cluster,
) -> None:
    """``GET /jobs/{id}/state?offset=N`` of a running replica folds from the newest ladder
    snapshot at or before N (the answer says which, and how many events it replayed
    after it) and answers what a replay from offset 0 answers, also when a newer
    snapshot is corrupt; before the first snapshot it replays from offset 0."""
    c1 = await _ladder_leader(cluster)
    await c1.wait_for_line("rest http://")
    stack, catalog = cluster.stack, cluster.catalog
    async with ProtocolWorker(stack, catalog, "tm-1", slots=JOBS), \
            Producer(stack, catalog) as client, Journal(stack, catalog) as journal:  # fmt: skip
        events = await _running_jobs(client, journal, "rest-ladder", JOBS // 2, snapshots=4)
    chunks = await _snapshot_chunks(stack.bootstrap, catalog)
    ladder = sorted({c.covered_offset for c in chunks})
    assert len(ladder) >= 4, ladder

    async def check(session: aiohttp.ClientSession, point: int) -> dict[str, object]:
        """Ask for the job last touched at or before `point` (the first job when none
        was yet) and compare with the answer a replay from offset 0 gives; the fields
        that say where the replay started are returned, not compared."""
        touched = (j for o, e in reversed(events) if o <= point and (j := job_of(e)))
        job_id = next(touched, "rest-ladder-0")
        state = _fold(events, State(), -1, point)
        want = json.loads(
            job_state_at(Folded(state, point, 0, 0.0), job_id, None).model_dump_json(by_alias=True)
        )
        async with session.get(f"{rest_url(c1)}/jobs/{job_id}/state?offset={point}") as r:
            assert r.status == 200, await r.text()
            got: dict[str, object] = await r.json()
        where = {k: got.pop(k) for k in ("snapshot-offset", "replayed")}
        del want["snapshot-offset"], want["replayed"]
        assert got == want, point
        assert got["offset"] == point
        return where

    def tail(start: int, point: int) -> int:
        return sum(start < o <= point for o, _ in events)

    rng = random.Random(1818)
    points = sorted(rng.sample([o for o, _ in events if o > ladder[0]], 4))
    async with aiohttp.ClientSession() as session:
        for point in points:
            start = max(o for o in ladder if o <= point)
            where = await check(session, point)
            assert where == {"snapshot-offset": start, "replayed": tail(start, point)}, ladder

        # Before the first snapshot: from offset 0.
        early = max(o for o, _ in events if o < ladder[0])
        assert await check(session, early) == {"snapshot-offset": None,
                                               "replayed": tail(-1, early)}  # fmt: skip

        # A corrupt snapshot newer than the real one before the last point: skipped.
        point = points[-1]
        bad = ev.SnapshotChunk(
            event_id="rest-bad:0", event_time=0, snapshot_id="rest-bad",
            format_version=chunks[0].format_version, covered_offset=point - 1, chunk_index=0,
            chunk_count=1, payload=b"not zlib", epoch=max(c.epoch for c in chunks),
        )  # fmt: skip
        await _send_chunks(cluster, [bad])
        start = max(o for o in ladder if o <= point)
        assert (await check(session, point))["snapshot-offset"] == start


async def test_a_point_far_back_finds_the_newest_snapshot_before_it_by_bisection(
    cluster: Cluster,
) -> None:
    """``load_latest`` with a stop bisects the snapshots before its first window: for
    points all along a partition of 60 snapshots (corrupt, incomplete and three-chunk ones
    among them) it takes the snapshot a read of the whole partition takes, reading a
    fraction of it."""
    payload = snapshots.encode_state(State())
    sent: list[ev.SnapshotChunk] = []
    for n in range(60):
        common = {"snapshot_id": f"s{n}", "format_version": STATE_FORMAT_VERSION,
                  "covered_offset": 100 * (n + 1), "epoch": 1,
                  "event_time": 1_000 * (n + 1)}  # fmt: skip
        if n % 10 == 3:
            pieces, count = [b"not zlib"], 1  # corrupt
        elif n % 10 == 6:
            pieces, count = [payload[:5]], 2  # incomplete: one chunk of two
        elif n % 10 == 8:
            pieces = [payload[:5], payload[5:9], payload[9:]]
            count = 3
        else:
            pieces, count = [payload], 1
        sent += [ev.SnapshotChunk(event_id=f"s{n}:{i}", chunk_index=i, chunk_count=count,
                                  payload=piece, **common)  # type: ignore[arg-type]
                 for i, piece in enumerate(pieces)]  # fmt: skip
    await _send_chunks(cluster, sent, rung=lambda c: int(c.snapshot_id[1:]))
    everything = await _snapshot_chunks(cluster.stack.bootstrap, cluster.catalog)
    assert len(everything) == len(sent)

    stops = [StopAt(offset=o) for o in range(0, 6_300, 47)]
    stops += [StopAt(until_ms=t) for t in range(0, 63_000, 2_900)]
    found = 0
    for stop in stops:
        want = snapshots.assemble(everything, snapshots.usable_for(stop))
        got = await snapshots.load_latest(
            cluster.stack.bootstrap, cluster.catalog, run_keys(), before=stop
        )
        assert (None if got is None else got.snapshot_id) == (
            None if want is None else want.snapshot_id
        ), stop
        if got is not None:
            found += 1
            assert got.state == State()
            assert got.records_read < len(everything) // 2, (stop, got.records_read)
    assert found > len(stops) // 2
