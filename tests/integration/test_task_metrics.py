"""Per-task metrics (issue 13, item 2): a real ``jm worker`` runs a real job, its
heartbeats carry every task's counters, and both replicas (leader and standby, each
a real ``Replica`` in this process on the real Kafka and Redis) read them into their
own MetricsStore. What one vertex wrote is exactly what the next one read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from coordinator.ha.lease import LeaseConfig
from coordinator.runtime import machine
from coordinator.runtime.metrics import MetricsStore, TaskMetrics, TaskSample
from coordinator.runtime.replica import Replica, ReplicaConfig
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.events import ReplicaRole
from schemas.settings import ClusterSettings
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import (
    REPO,
    Cluster,
    Journal,
    Producer,
    joined,
    now_ms,
    status_of,
)
from tests.integration.test_rest_reads import rest_url

pytestmark = pytest.mark.integration

TOTAL = 600  # numbers 0..599: 300 of them even


@contextlib.asynccontextmanager
async def replica(
    stack: Stack, catalog: Catalog, replica_id: str, ready: Callable[[Replica], bool]
) -> AsyncIterator[Replica]:
    settings = ClusterSettings(
        bootstrap_servers=stack.bootstrap, redis_url=stack.redis_url, cluster_id=catalog.cluster_id
    )
    config = ReplicaConfig(
        lease=LeaseConfig(ttl_ms=1_500), domain=machine.Config(heartbeat_timeout_ms=6_000)
    )
    r = Replica(settings, replica_id, config)
    task = asyncio.create_task(r.run())
    try:
        deadline = time.monotonic() + 30
        while not ready(r):
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, f"{replica_id} not ready: {r.role}"
            await asyncio.sleep(0.05)
        yield r
    finally:
        r.stop()
        await asyncio.wait_for(task, 30)


@contextlib.contextmanager
def jm_worker(stack: Stack, catalog: Catalog, tm_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """``jm worker`` (the console script) as a process; PYTHONPATH reaches it from the env."""
    jm = Path(sys.executable).parent / "jm"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(jm), "worker", "--id", tm_id, "--bootstrap-servers", stack.bootstrap,
         "--cluster-id", catalog.cluster_id, "--slots", "5", "--heartbeat-timeout", "3",
         "--cancel-timeout", "1"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def evens_job(job_id: str, sink: str) -> ev.JobSubmitted:
    vertices = (
        ev.Vertex(id="numbers", name="numbers", operator="sequence", parallelism=2,
                  max_parallelism=8, config={"count": str(TOTAL), "rate": "100"}),
        ev.Vertex(id="evens", name="evens", operator="filter", parallelism=2,
                  max_parallelism=8, config={"function": "even", "field": "value"}),
        ev.Vertex(id="sink", name="sink", operator="kafka_sink", parallelism=1,
                  max_parallelism=8, config={"topic": sink}),
    )  # fmt: skip
    edges = (
        ev.Edge(source="numbers", target="evens", partitioning=ev.Partitioning.FORWARD),
        ev.Edge(source="evens", target="sink", partitioning=ev.Partitioning.REBALANCE),
    )
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
    )  # fmt: skip


def vertex_sum(store: MetricsStore, job_id: str, vertex: str, field: str) -> int:
    return sum(getattr(t.metrics, field) for t in store.tasks_of_vertex(job_id, vertex))


def by_subtask(store: MetricsStore, job_id: str) -> dict[tuple[str, int], TaskMetrics]:
    return {(t.vertex_id, t.subtask): t.metrics for t in store.tasks_of_job(job_id)}


def skipped_both(r: Replica) -> bool:
    """The junk record was skipped and the unregistered worker's heartbeat ignored."""
    return r.heartbeat_feed.skipped >= 1 and r.heartbeat_feed.unknown >= 1


def forgotten(store: MetricsStore) -> bool:
    return store.worker("tm-1") is None


async def until(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_heartbeats_carry_task_counters_to_leader_and_standby(
    stack: Stack, catalog: Catalog, new_topic: TopicFactory
) -> None:
    sink = await new_topic("evens")
    async with (
        replica(stack, catalog, "r1", lambda r: r.leader is not None and r.leader.elected.is_set())
        as leader,
        replica(stack, catalog, "r2", lambda r: r.role == ReplicaRole.STANDBY) as standby,
        Journal(stack, catalog) as journal,
        Producer(stack, catalog) as client,
    ):  # fmt: skip
        stores = {"leader": leader.metrics, "standby": standby.metrics}
        with jm_worker(stack, catalog, "tm-1") as worker:
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            await client.send(evens_job("evens", sink))

            # While the job runs (100 records/s per source subtask): counters appear...
            def sources_midway(store: MetricsStore) -> bool:
                written = vertex_sum(store, "evens", "numbers", "write_records")
                return 0 < written < TOTAL

            for name, store in stores.items():
                await until(partial(sources_midway, store), f"{name}: no running counters")
            first = vertex_sum(standby.metrics, "evens", "numbers", "write_records")
            # ... and grow with the next heartbeats.
            await until(
                lambda: vertex_sum(standby.metrics, "evens", "numbers", "write_records") > first,
                "counters did not grow",
            )
            events = await journal.wait_until(
                lambda es: status_of(es, "evens") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
                seconds=90,
            )
            assert status_of(events, "evens") == ev.JobStatus.FINISHED

            # The last heartbeats carry the ended tasks' final counts: each task's in the
            # first heartbeat after its FINISHED, so the sink's (it read everything while
            # the sources were still ending) can come one heartbeat before theirs.
            def final(store: MetricsStore) -> bool:
                m = by_subtask(store, "evens")
                return vertex_sum(store, "evens", "sink", "read_records") == TOTAL // 2 and all(
                    key in m and m[key].write_records == TOTAL // 2
                    for key in (("numbers", 0), ("numbers", 1))
                )

            for name, store in stores.items():
                await until(partial(final, store), f"{name}: no final counts")

            for store in stores.values():
                m = by_subtask(store, "evens")
                assert set(m) == {("numbers", 0), ("numbers", 1), ("evens", 0), ("evens", 1),
                                  ("sink", 0)}  # fmt: skip
                # A source reads nothing; each subtask emitted its half of the numbers.
                assert m["numbers", 0].read_records == m["numbers", 1].read_records == 0
                assert m["numbers", 0].write_records == m["numbers", 1].write_records == TOTAL // 2
                # FORWARD, chained (one task, records by call): each filter subtask read
                # exactly what its source subtask emitted, record for record, counted per
                # operator; no bytes crossed that hop (no edge topic, nothing encoded).
                for i in (0, 1):
                    assert m["evens", i].read_records == m["numbers", i].write_records
                    assert m["evens", i].read_bytes == m["numbers", i].write_bytes == 0
                # numbers 0, 2, 4, ... go to subtask 0: it keeps all of its own; subtask 1 none.
                assert m["evens", 0].write_records == TOTAL // 2
                assert m["evens", 1].write_records == 0
                # The sink read everything the filters wrote; it has no edge out.
                assert m["sink", 0].read_records == TOTAL // 2
                assert m["sink", 0].read_bytes == m["evens", 0].write_bytes > 0
                assert m["sink", 0].write_records == m["sink", 0].write_bytes == 0
                # The source ran for about 3 s at its rate: its time was counted.
                for key in (("numbers", 0), ("numbers", 1)):
                    t = m[key]
                    assert t.busy_ms + t.idle_ms + t.backpressured_ms >= 1_000, (key, t)
                assert m["sink", 0].idle_ms > 0  # it waited for input at least once
            # Both replicas hold the same counts (each read jm.heartbeats itself).
            assert by_subtask(leader.metrics, "evens") == by_subtask(standby.metrics, "evens")

            # The worker's heartbeat after the last task ended (one a second; the final
            # counts can arrive in the heartbeat before it, with the sink still running).
            def idle(store: MetricsStore) -> bool:
                sample = store.worker("tm-1")
                return sample is not None and sample.slots_free == 5 and sample.running_tasks == 0

            await until(partial(idle, standby.metrics), "no heartbeat of an idle worker")

            # A record that is no heartbeat, and a heartbeat of a worker nobody
            # registered: skipped, and the feed goes on with the next real heartbeat.
            producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(catalog.heartbeats.name, b"\x00junk", key=b"tm-1")
                await client.send(
                    ev.TaskManagerHeartbeat(
                        event_id=uuid.uuid4().hex, event_time=now_ms(), tm_id="tm-ghost",
                        incarnation="x", sequence=1, slots_free=1, running_tasks=0,
                    )
                )  # fmt: skip
            finally:
                await producer.stop()
            for r in (leader, standby):
                await until(partial(skipped_both, r), f"{r.replica_id} did not skip both")
            before = standby.metrics.worker("tm-1")
            assert before is not None
            await until(
                lambda: (
                    (w := standby.metrics.worker("tm-1")) is not None
                    and w.sequence > before.sequence
                ),
                "the feed stopped after a malformed record",
            )
            assert standby.metrics.worker("tm-ghost") is None
            assert worker.poll() is None

        # The worker deregistered when it stopped (the leader journals it as lost):
        # every replica forgets it.
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.TaskManagerLost) and e.tm_id == "tm-1" for _, e in es)
        )
        for name, store in stores.items():
            await until(partial(forgotten, store), f"{name} kept a removed worker")
            assert store.tasks_of_job("evens") == []


def test_task_sample_keeps_flinks_meaning_of_each_counter() -> None:
    """The REST layer reads TaskSample; the feed fills it from the heartbeat field by field."""
    from coordinator.runtime.heartbeat_feed import task_sample

    m = ev.TaskIoMetrics(
        task=ev.TaskRef(job_id="j", vertex_id="v", subtask_index=3, attempt=1),
        read_records=1, write_records=2, read_bytes=3, write_bytes=4, busy_ms=5, idle_ms=6,
        backpressured_ms=7,
    )  # fmt: skip
    assert task_sample("tm", m) == TaskSample(
        tm_id="tm", job_id="j", vertex_id="v", subtask=3, attempt=1,
        metrics=TaskMetrics(read_records=1, write_records=2, read_bytes=3, write_bytes=4,
                            busy_ms=5, idle_ms=6, backpressured_ms=7),
    )  # fmt: skip


async def test_jm_coordinators_serve_the_counters_per_vertex_over_rest(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    """Real ``jm coordinator`` processes (leader and standby) answer ``/jobs/{id}`` with
    the counters their own heartbeat feed read: the REST API reads ``Replica.metrics``."""
    sink = await new_topic("evens")
    c1 = cluster.coordinator("c1")
    await c1.wait_for_line("role LEADER")
    c2 = cluster.coordinator("c2")
    await c2.wait_for_line("role STANDBY")
    urls = [rest_url(c) for c in (c1, c2)]
    async with (
        Journal(cluster.stack, cluster.catalog) as journal,
        Producer(cluster.stack, cluster.catalog) as client,
        aiohttp.ClientSession() as session,
    ):
        with jm_worker(cluster.stack, cluster.catalog, "tm-1"):
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            await client.send(evens_job("evens", sink))
            events = await journal.wait_until(
                lambda es: status_of(es, "evens") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
                seconds=90,
            )
            assert status_of(events, "evens") == ev.JobStatus.FINISHED
            want = {
                "numbers": (0, TOTAL),
                "evens": (TOTAL, TOTAL // 2),
                "sink": (TOTAL // 2, 0),
            }
            for url in urls:
                deadline = time.monotonic() + 60
                while True:
                    async with session.get(f"{url}/jobs/evens") as r:
                        assert r.status == 200, await r.text()
                        body = await r.json()
                    got = {
                        v["id"]: (v["metrics"]["read-records"], v["metrics"]["write-records"])
                        for v in body["vertices"]
                    }
                    if got == want:
                        break
                    assert time.monotonic() < deadline, (url, got)
                    await asyncio.sleep(0.3)
                byte_counts = {v["id"]: v["metrics"] for v in body["vertices"]}
                assert byte_counts["evens"]["read-bytes"] == byte_counts["numbers"]["write-bytes"]
                assert byte_counts["sink"]["read-bytes"] == byte_counts["evens"]["write-bytes"] > 0
