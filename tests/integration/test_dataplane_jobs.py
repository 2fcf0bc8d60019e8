"""Multi-vertex jobs through the real coordinator and real workers over Kafka edges."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import events as ev
from schemas import kafkaio
from schemas.edges import EDGE_RETENTION_MS, edge_topic, edge_topic_prefix
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of

pytestmark = pytest.mark.integration


def keyed_count_job(job_id: str, sink: str, count: int, keys: int, *, rate: int = 0,
                    source_p: int = 2, count_p: int = 3) -> ev.JobSubmitted:  # fmt: skip
    source_config = {"count": str(count)}
    if rate:
        source_config["rate"] = str(rate)
    vertices = (
        ev.Vertex(id="numbers", name="numbers", operator="sequence", parallelism=source_p,
                  max_parallelism=8, config=source_config),
        ev.Vertex(id="keyed", name="keyed", operator="map", parallelism=source_p,
                  max_parallelism=8, config={"function": "mod_key", "n": str(keys)}),
        ev.Vertex(id="count", name="count", operator="keyed_count", parallelism=count_p,
                  max_parallelism=8, config={"key_field": "key"}),
        ev.Vertex(id="sink", name="sink", operator="kafka_sink", parallelism=count_p,
                  max_parallelism=8, config={"topic": sink, "key_field": "key"}),
    )  # fmt: skip
    edges = (
        ev.Edge(source="numbers", target="keyed", partitioning=ev.Partitioning.FORWARD),
        ev.Edge(source="keyed", target="count", partitioning=ev.Partitioning.HASH,
                key_field="key"),
        ev.Edge(source="count", target="sink", partitioning=ev.Partitioning.FORWARD),
    )  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=3, delay_ms=500),
    )  # fmt: skip


async def last_count_per_key(stack: Stack, topic: str) -> dict[str, int]:
    """The sink keeps every update; the last one per key is that key's count."""
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    latest: dict[str, int] = {}
    try:
        described = await kafkaio.describe_topics(stack.bootstrap, [topic])
        tps = [TopicPartition(topic, p) for p in range(described[topic].partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                for record in records:
                    value = json.loads(record.value or b"{}")
                    latest[str(value["key"])] = int(value["count"])
    finally:
        await consumer.stop()
    return latest


async def edge_topics(stack: Stack, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()


async def test_keyed_count_over_two_workers_holds_exact_counts(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    sink = await new_topic("counts", partitions=3)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 5)
    cluster.worker("tm-2", 5)
    total, keys = 3_000, 10
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(keyed_count_job("kc", sink, total, keys))
        events = await journal.wait_until(
            lambda es: status_of(es, "kc") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=90,
        )
    assert status_of(events, "kc") == ev.JobStatus.FINISHED
    placed = {e.slot.tm_id for _, e in events if isinstance(e, ev.TaskAssigned)}
    assert placed == {"tm-1", "tm-2"}
    assert await last_count_per_key(cluster.stack, sink) == {
        str(k): total // keys for k in range(keys)
    }
    # The finished job's edge topics are deleted by the leader.
    prefix = edge_topic_prefix(cluster.catalog, "kc")
    deadline = time.monotonic() + 20
    while await edge_topics(cluster.stack, prefix):
        assert time.monotonic() < deadline, await edge_topics(cluster.stack, prefix)
        await asyncio.sleep(0.5)


async def test_worker_kill_9_mid_run_still_gives_every_key_its_count(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    sink = await new_topic("counts", partitions=2)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    first = cluster.worker("tm-1", 3)
    cluster.worker("tm-2", 3)
    total, keys = 4_000, 8
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        job = keyed_count_job("kc-kill", sink, total, keys, rate=400, source_p=1, count_p=2)
        await client.send(job)
        await journal.wait_until(lambda es: status_of(es, "kc-kill") == ev.JobStatus.RUNNING)
        # Results are flowing: then one worker dies and a spare one joins.
        deadline = time.monotonic() + 30
        while not await last_count_per_key(cluster.stack, sink):
            assert time.monotonic() < deadline, "no results before the kill"
            await asyncio.sleep(0.5)
        cluster.worker("tm-3", 3)
        first.signal(signal.SIGKILL)
        events = await journal.wait_until(
            lambda es: status_of(es, "kc-kill") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=120,
        )
    assert status_of(events, "kc-kill") == ev.JobStatus.FINISHED
    assert any(isinstance(e, ev.TaskManagerLost) and e.tm_id == "tm-1" for _, e in events)
    assert any(isinstance(e, ev.RestartScheduled) for _, e in events)
    # At-least-once with a full restart: the sink saw some counts twice, but every
    # key's last result is its full count.
    assert await last_count_per_key(cluster.stack, sink) == {
        str(k): total // keys for k in range(keys)
    }


async def sink_values(stack: Stack, topic: str) -> list[int]:
    """Every value the sink wrote so far, in order per partition."""
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    values: list[int] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                values += [int(json.loads(r.value or b"{}")["n"]) for r in records]
    finally:
        await consumer.stop()
    return values


async def test_a_latest_source_reads_on_restart_what_came_since_the_job_started(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    source, sink = await new_topic("in"), await new_topic("out")
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    cluster.worker("tm-2", 2)
    vertices = (
        ev.Vertex(id="src", name="src", operator="kafka_source", max_parallelism=8,
                  config={"topic": source, "start": "latest"}),
        ev.Vertex(id="out", name="out", operator="kafka_sink", max_parallelism=8,
                  config={"topic": sink}),
    )  # fmt: skip
    submission = ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="tail", name="tail",
        job_graph=ev.JobGraph(vertices=vertices, edges=(ev.Edge(source="src", target="out"),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=3, delay_ms=200),
    )  # fmt: skip
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip

        async def produce(*ns: int) -> None:
            for n in ns:
                await client.producer.send_and_wait(source, json.dumps({"n": n}).encode())

        async def seen(*ns: int) -> list[int]:
            deadline = time.monotonic() + 40
            while not set(ns) <= set(values := await sink_values(cluster.stack, sink)):
                assert time.monotonic() < deadline, values
                await asyncio.sleep(0.3)
            return values

        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await produce(1, 2)  # before the job: `latest` skips them
        await asyncio.sleep(0.2)
        await client.send(submission)
        events = await journal.wait_until(lambda es: status_of(es, "tail") == ev.JobStatus.RUNNING)
        running = await journal.wait_until(
            lambda es: sum(1 for _, e in es if isinstance(e, ev.TaskStateRecorded)
                           and e.state is ev.ExecutionState.RUNNING) >= 2)  # fmt: skip
        await produce(3, 4)
        await seen(3, 4)
        host = next(e.slot.tm_id for _, e in running
                    if isinstance(e, ev.TaskAssigned) and e.task.vertex_id == "src")  # fmt: skip
        cluster.workers[host].signal(signal.SIGKILL)
        await produce(5, 6)  # while the job is down: the restart must read them
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.TaskStateRecorded) and e.task.attempt == 1
                           and e.task.vertex_id == "src" and e.state is ev.ExecutionState.RUNNING
                           for _, e in es), seconds=60)  # fmt: skip
        await produce(7)
        values = await seen(3, 4, 5, 6, 7)
    assert any(isinstance(e, ev.RestartScheduled) for _, e in events)
    assert not {1, 2} & set(values), values  # produced before the job was accepted


async def test_the_leader_creates_a_runs_edge_topics_before_any_task_runs(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    """No worker at all: the job waits for slots, yet its one edge topic (keyed -> count,
    the other edges are chained) is there with a partition per count subtask, made by
    the leader as it decided the run; cancelling the job deletes it."""
    sink = await new_topic("counts", partitions=3)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    prefix = edge_topic_prefix(cluster.catalog, "ahead")
    expected = edge_topic(cluster.catalog, "ahead", 0, "keyed", "count")
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await client.send(keyed_count_job("ahead", sink, 100, 4, count_p=3))
        events = await journal.wait_until(lambda es: status_of(es, "ahead") == ev.JobStatus.CREATED)
        assert not any(isinstance(e, ev.TaskAssigned) for _, e in events)
        deadline = time.monotonic() + 30
        while await edge_topics(cluster.stack, prefix) != [expected]:
            assert time.monotonic() < deadline, await edge_topics(cluster.stack, prefix)
            await asyncio.sleep(0.2)
        described = await kafkaio.describe_topics(cluster.stack.bootstrap, [expected])
        assert described[expected].partitions == 3
        assert described[expected].config.get("retention.ms") == str(EDGE_RETENTION_MS)
        await client.send(ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=now_ms(),
                                                job_id="ahead"))  # fmt: skip
        await journal.wait_until(lambda es: status_of(es, "ahead") == ev.JobStatus.CANCELED)
    while await edge_topics(cluster.stack, prefix):
        assert time.monotonic() < deadline + 30, await edge_topics(cluster.stack, prefix)
        await asyncio.sleep(0.5)
