"""High availability drills: real replica processes, the real broker and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced

from coordinator.commands.replica import read_replicas
from coordinator.drill import OwnRedis, decided, full_replay_digest, snapshot_plus_tail_digest
from coordinator.runtime import snapshots
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.settings import ClusterSettings
from tests.conftest import Stack
from tests.integration.harness import (
    CoordinatorProcess,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    joined,
)

pytestmark = pytest.mark.integration

Start = Callable[..., CoordinatorProcess]


@pytest.fixture
async def replicas(stack: Stack, catalog: Catalog) -> AsyncIterator[Start]:
    started: list[CoordinatorProcess] = []

    def start(
        replica_id: str, *extra: str, redis_url: str | None = None,
        hooks: dict[str, object] | None = None,
    ) -> CoordinatorProcess:  # fmt: skip
        proc = CoordinatorProcess(
            stack, catalog, replica_id, *extra, redis_url=redis_url, hooks=hooks
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill(signal.SIGCONT)
        proc.stop()


async def test_kill_9_leader_of_three_during_submissions(
    stack: Stack, catalog: Catalog, replicas: Start
) -> None:
    snap = ("--snapshot-every-events", "25")
    first = replicas("r1", *snap)
    await first.wait_for_line("role LEADER")
    others = [replicas("r2", *snap), replicas("r3", *snap)]
    for proc in others:
        await proc.wait_for_line("role STANDBY")
    total = 150
    subs = [job_submitted(f"job-{i:03d}", parallelism=1) for i in range(total)]
    async with (
        ProtocolWorker(stack, catalog, "tm-1", slots=200),
        Producer(stack, catalog) as client,
        Journal(stack, catalog) as journal,
    ):
        await journal.wait_until(lambda es: joined(es, "tm-1"))

        async def stream() -> None:
            for sub in subs:
                await client.send(sub)
                await asyncio.sleep(0.01)

        sender = asyncio.create_task(stream())
        await journal.wait_until(lambda es: len(decided(es)) >= 30)
        killed_at = time.monotonic()
        first.kill()
        first.proc.wait()
        await journal.wait_until(
            lambda es: sum(isinstance(e, ev.LeaderElected) for _, e in es) == 2, seconds=30
        )
        takeover_s = time.monotonic() - killed_at
        await sender
        events = await journal.wait_until(lambda es: len(decided(es)) >= total, seconds=60)
        counts = decided(events)
        assert set(counts) == {s.event_id for s in subs}
        assert all(n == 1 for n in counts.values())
        assert takeover_s < 15, f"takeover took {takeover_s:.1f}s"  # generous; bench measures
        assert any(isinstance(e, ev.SnapshotTaken) for _, e in events)

        # Quiescence (the worker still heartbeats, nothing else happens): both survivors
        # report, at the same journal offset, the digest of a full replay and of the
        # latest snapshot plus the tail.
        settings = ClusterSettings(bootstrap_servers=stack.bootstrap, cluster_id=catalog.cluster_id)
        deadline = time.monotonic() + 30
        previous = -2
        while True:
            _, last_offset = await full_replay_digest(stack.bootstrap, catalog)
            statuses = await read_replicas(settings)
            live = [statuses.get(r) for r in ("r2", "r3")]
            settled = all(s is not None and s.applied_offset == last_offset for s in live)
            # Twice at the same offset, a second apart: the leader has stopped writing.
            if settled and last_offset == previous:
                break
            previous = last_offset if settled else -2
            assert time.monotonic() < deadline, f"replicas did not settle: {live}"
            await asyncio.sleep(0.5)
        replay_digest, _ = await full_replay_digest(stack.bootstrap, catalog, last_offset)
        tail_digest, snapshot_id = await snapshot_plus_tail_digest(
            stack.bootstrap, catalog, last_offset
        )
        assert tail_digest == replay_digest, snapshot_id
        for rid in ("r2", "r3"):
            assert statuses[rid].digest == replay_digest, rid
    assert sorted(statuses[r].role for r in ("r2", "r3")) == [
        ev.ReplicaRole.LEADER, ev.ReplicaRole.STANDBY,
    ]  # fmt: skip


async def test_frozen_leader_is_fenced_and_commits_nothing_of_its_epoch(
    stack: Stack, catalog: Catalog, replicas: Start
) -> None:
    frozen = replicas(
        "frozen", "--lease-ttl-ms", "1000",
        hooks={"skip_lease_check": True, "hold_transaction_ms": 3000},
    )  # fmt: skip
    await frozen.wait_for_line("role LEADER")
    await frozen.wait_for_line("leads with epoch 1")
    async with Producer(stack, catalog) as client, Journal(stack, catalog) as journal:
        sub = job_submitted("during-freeze", parallelism=0)  # invalid: rejected
        await client.send(sub)
        await frozen.wait_for_line("holding an open transaction")
        frozen.kill(signal.SIGSTOP)
        await asyncio.sleep(1.5)  # past the 1 s lease
        successor = replicas("successor", "--lease-ttl-ms", "1000")
        await successor.wait_for_line("leads with epoch 2")
        frozen.kill(signal.SIGCONT)
        await frozen.wait_for_line("steps down")
        events = await journal.wait_until(lambda es: sub.event_id in decided(es))
    fenced_log = frozen.output()
    assert "ProducerFenced" in fenced_log or "fenced" in fenced_log.lower(), fenced_log[-2000:]
    assert "never retrieved" not in fenced_log  # the failure is reported once, as the step-down
    epoch_one = [e for _, e in events if isinstance(e, ev.Decision) and e.epoch == 1]
    assert [type(e) for e in epoch_one] == [ev.LeaderElected]  # nothing after its election
    decision = next(e for _, e in events if isinstance(e, ev.JobRejected))
    assert decision.epoch == 2 and decision.input_event_id == sub.event_id
    # The frozen transaction really wrote to the log; read_uncommitted sees it, aborted.
    async with Journal(stack, catalog, "read_uncommitted") as dirty:
        seen = await dirty.wait_until(
            lambda es: any(isinstance(e, ev.JobRejected) and e.epoch == 1 for _, e in es)
        )
    assert any(isinstance(e, ev.JobRejected) and e.epoch == 1 for _, e in seen)


async def test_second_producer_with_the_transactional_id_fences_the_first(
    stack: Stack, catalog: Catalog
) -> None:
    def producer() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, transactional_id=catalog.transactional_id
        )

    first, second = producer(), producer()
    await first.start()
    value, _ = default_codec().encode(job_submitted("x"))
    try:
        await first.begin_transaction()
        await first.send_and_wait(catalog.journal.name, value, partition=0)
        await second.start()  # InitProducerId bumps the epoch: the first is fenced
        with pytest.raises((ProducerFenced, KafkaError)) as raised:
            await first.send_and_wait(catalog.journal.name, value, partition=0)
            await first.commit_transaction()
        assert "fenc" in repr(raised.value).lower() or isinstance(raised.value, ProducerFenced)
        async with second.transaction():
            await second.send_and_wait(catalog.journal.name, value, partition=0)
    finally:
        with contextlib.suppress(Exception):
            await first.stop()
        await second.stop()
    async with Journal(stack, catalog) as journal:
        events = await journal.wait_until(lambda es: len(es) >= 1)
        await journal.read(500)
    assert len(journal.events) == 1  # only the second producer's record is committed
    assert len(events) == 1


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    directory = Path(tempfile.mkdtemp(prefix="jm-redis-"))
    redis = OwnRedis(directory)
    redis.start()
    yield redis
    redis.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def test_redis_outage_steps_the_leader_down_and_one_leader_returns(
    stack: Stack, catalog: Catalog, replicas: Start, own_redis: OwnRedis
) -> None:
    ttl = ("--lease-ttl-ms", "1500")
    a = replicas("a", *ttl, redis_url=own_redis.url)
    await a.wait_for_line("role LEADER")
    b = replicas("b", *ttl, redis_url=own_redis.url)
    await b.wait_for_line("role STANDBY")
    own_redis.stop()
    stopped_at = time.monotonic()
    await a.wait_for_line("steps down", seconds=10)
    stepped_down_s = time.monotonic() - stopped_at
    assert stepped_down_s < 1.5 + 1.0, stepped_down_s  # within the ttl (plus polling slack)
    await asyncio.sleep(2)
    assert a.count("role LEADER") == 1 and b.count("role LEADER") == 0  # nobody leads
    own_redis.start()
    async with Journal(stack, catalog) as journal:
        await journal.wait_until(
            lambda es: sum(isinstance(e, ev.LeaderElected) for _, e in es) == 2, seconds=20
        )
        await asyncio.sleep(3)  # would a second one follow?
        await journal.read(500)
        elected = [e for _, e in journal.events if isinstance(e, ev.LeaderElected)]
    assert [e.epoch for e in elected] == [1, 2]
    assert a.count("role LEADER") + b.count("role LEADER") == 2


async def test_corrupt_latest_snapshot_falls_back_with_the_same_digest(
    stack: Stack, catalog: Catalog, replicas: Start
) -> None:
    leader = replicas("s1", "--snapshot-every-events", "5")
    await leader.wait_for_line("role LEADER")
    async with Producer(stack, catalog) as client, Journal(stack, catalog) as journal:
        for i in range(12):
            await client.send(job_submitted(f"snap-{i}", operator="nobody"))
        await journal.wait_until(
            lambda es: (
                sum(isinstance(e, ev.SnapshotTaken) for _, e in es) >= 1 and len(decided(es)) == 12
            )
        )
    leader.stop()
    replay_digest, last_offset = await full_replay_digest(stack.bootstrap, catalog)
    good_digest, good_id = await snapshot_plus_tail_digest(stack.bootstrap, catalog, last_offset)
    assert good_digest == replay_digest

    # A newer snapshot whose bytes are garbage (valid Avro, unreadable state).
    corrupt = ev.SnapshotChunk(
        event_id="corrupt:0", event_time=1, snapshot_id="corrupt", format_version=1,
        covered_offset=last_offset, chunk_index=0, chunk_count=1, payload=b"\x00not zlib",
        epoch=1,
    )  # fmt: skip
    async with Producer(stack, catalog) as client:
        await client.send(corrupt)
    loaded = await snapshots.load_latest(stack.bootstrap, catalog)
    assert loaded is not None and loaded.snapshot_id == good_id
    assert any(reason.startswith("corrupt:") for reason in loaded.skipped)
    fallback_digest, used = await snapshot_plus_tail_digest(stack.bootstrap, catalog, last_offset)
    assert (fallback_digest, used) == (replay_digest, good_id)

    # A replica process started now uses the fallback and reports the same digest.
    replica = replicas("s2", "--snapshot-every-events", "100000")
    await replica.wait_for_line("role LEADER")
    assert "snapshot skipped: corrupt" in replica.output()
    settings = ClusterSettings(bootstrap_servers=stack.bootstrap, cluster_id=catalog.cluster_id)
    # It journaled its own LeaderElected since; fold the same journal to compare.
    replay_digest, last_offset = await full_replay_digest(stack.bootstrap, catalog)
    deadline = time.monotonic() + 10
    while True:
        status = (await read_replicas(settings)).get("s2")
        if status is not None and status.applied_offset >= last_offset:
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.3)
    assert status.role == ev.ReplicaRole.LEADER
    assert (status.applied_offset, status.digest) == (last_offset, replay_digest)
