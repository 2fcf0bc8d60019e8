"""Issue 11, items 3 and 4, on real processes: errors no restart can fix fail the job at
once; a job submitted before its workers arrive waits for them (or for the slot-wait
timeout)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import events as ev
from schemas import kafkaio
from tests.conftest import Stack
from tests.integration.harness import REPO, Cluster, Journal, Producer, joined, now_ms, status_of

pytestmark = pytest.mark.integration

ENDED = {ev.JobStatus.FINISHED, ev.JobStatus.FAILED, ev.JobStatus.CANCELED}
Events = list[tuple[int, ev.Event]]


def pipeline(job_id: str, *vertices: tuple[str, dict[str, str]]) -> ev.JobSubmitted:
    """A chain of parallelism-1 vertices (operator, config), FORWARD edges, and the
    default restart strategy (exponential delay, unlimited attempts)."""
    vs = tuple(
        ev.Vertex(id=f"v{i}", name=f"v{i}", operator=op, parallelism=1, config=config)
        for i, (op, config) in enumerate(vertices)
    )
    es = tuple(ev.Edge(source=a.id, target=b.id) for a, b in itertools.pairwise(vs))
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vs, edges=es), restart_strategy=ev.RestartStrategy(),
    )  # fmt: skip


def failures(events: Events, job_id: str) -> list[str]:
    """Causes of the job's FAILING transitions."""
    return [
        e.cause or ""
        for _, e in events
        if isinstance(e, ev.JobStatusChanged)
        and e.job_id == job_id
        and e.to_status is ev.JobStatus.FAILING
    ]


def restarts(events: Events, job_id: str) -> int:
    return sum(isinstance(e, ev.RestartScheduled) and e.job_id == job_id for _, e in events)


def jm_status(cluster: Cluster, job_id: str) -> str:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=cluster.stack.bootstrap,
        REDIS_URL=cluster.stack.redis_url,
        JM_CLUSTER_ID=cluster.catalog.cluster_id,
    )
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "status", job_id],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def topic_name(
    stack: Stack, unique: Callable[[str], str]
) -> AsyncIterator[Callable[[str], str]]:
    """Unique names of topics the test does not create itself; deleted afterwards."""
    names: list[str] = []

    def make(stem: str) -> str:
        names.append(unique(stem))
        return names[-1]

    yield make
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        with contextlib.suppress(Exception):
            await admin.delete_topics([n for n in names if n in existing])
    finally:
        await admin.close()


async def run_job(cluster: Cluster, job: ev.JobSubmitted, *workers: str) -> Events:
    """Submit `job` once `workers` joined; the journal once the job ended."""
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, *workers))
        await client.send(job)
        return await journal.wait_until(lambda es: status_of(es, job.job_id) in ENDED, seconds=90)


async def test_a_typod_function_fails_the_job_once_without_restarts(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    job = pipeline("typo", ("sequence", {"count": "10"}), ("map", {"function": "no_such_function"}))
    events = await run_job(cluster, job, "tm-1")
    assert status_of(events, "typo") is ev.JobStatus.FAILED
    assert restarts(events, "typo") == 0
    (cause,) = failures(events, "typo")
    assert "non-recoverable" in cause
    assert "no function named 'no_such_function' on this worker" in cause


async def test_a_missing_sink_topic_fails_the_job_with_the_fix(
    cluster: Cluster, topic_name: Callable[[str], str]
) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    missing = topic_name("missing")
    job = pipeline("nosink", ("sequence", {"count": "10"}), ("kafka_sink", {"topic": missing}))
    events = await run_job(cluster, job, "tm-1")
    assert status_of(events, "nosink") is ev.JobStatus.FAILED
    assert restarts(events, "nosink") == 0
    (cause,) = failures(events, "nosink")
    assert f"MissingTopicError: topic {missing!r} does not exist" in cause
    assert "partitions: N" in cause  # how to fix it
    assert missing not in await kafkaio.describe_topics(cluster.stack.bootstrap, [missing])


async def test_a_sink_with_partitions_creates_its_topic_and_the_job_runs(
    cluster: Cluster, topic_name: Callable[[str], str]
) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    out = topic_name("created")
    job = pipeline(
        "mksink", ("sequence", {"count": "10"}), ("kafka_sink", {"topic": out, "partitions": "3"})
    )
    events = await run_job(cluster, job, "tm-1")
    assert status_of(events, "mksink") is ev.JobStatus.FINISHED
    described = await kafkaio.describe_topics(cluster.stack.bootstrap, [out])
    assert described[out].partitions == 3
    consumer = kafkaio.consumer(cluster.stack.bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(out, p) for p in range(3)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert sum(ends.values()) == 10


async def test_a_job_submitted_before_any_worker_waits_then_runs(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    job = pipeline("early", ("sequence", {"count": "10"}))
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await client.send(job)
        events = await journal.wait_until(lambda es: status_of(es, "early") is ev.JobStatus.CREATED)
        assert not any(isinstance(e, ev.JobRejected) for _, e in events)
        (created,) = [
            e for _, e in events if isinstance(e, ev.JobStatusChanged) and e.job_id == "early"
        ]
        assert created.cause == "waiting for a worker offering 'sequence' (for v0#0)"
        assert "waiting  waiting for a worker offering 'sequence'" in jm_status(cluster, "early")
        cluster.worker("tm-1", 1)
        events = await journal.wait_until(lambda es: status_of(es, "early") in ENDED, seconds=60)
    assert status_of(events, "early") is ev.JobStatus.FINISHED


async def test_a_job_no_worker_arrives_for_fails_after_the_slot_wait_timeout(
    cluster: Cluster,
) -> None:
    await cluster.coordinator("c1", "--slot-wait-timeout-ms", "2000").wait_for_line("role LEADER")
    job = pipeline("alone", ("sequence", {"count": "10"}))
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await client.send(job)
        events = await journal.wait_until(lambda es: status_of(es, "alone") in ENDED, seconds=60)
    assert status_of(events, "alone") is ev.JobStatus.FAILED
    (cause,) = failures(events, "alone")
    assert cause.startswith("NoResourceAvailableException: no slots for 2000 ms")
    assert "waiting for a worker offering 'sequence'" in cause


async def test_a_job_that_enables_checkpointing_is_accepted_and_checkpointed_by_default(
    cluster: Cluster,
) -> None:
    """Checkpoints work end to end: a coordinator started without any flag accepts
    a checkpointed job and completes its checkpoints; --no-allow-checkpointing
    refuses such a job with the reason."""
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    job = dataclasses.replace(
        pipeline("ckpt", ("sequence", {"count": "6000", "rate": "100"})),
        checkpoint_config=ev.CheckpointConfig(interval_ms=300),
    )
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job)
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.CheckpointCompleted) for _, e in es), seconds=60
        )
    assert not any(isinstance(e, ev.JobRejected) for _, e in events)


async def test_no_allow_checkpointing_rejects_a_checkpointed_job_with_the_reason(
    cluster: Cluster,
) -> None:
    await cluster.coordinator("c1", "--no-allow-checkpointing").wait_for_line("role LEADER")
    job = dataclasses.replace(
        pipeline("ckpt", ("sequence", {"count": "10"})),
        checkpoint_config=ev.CheckpointConfig(interval_ms=10_000),
    )
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await client.send(job)
        events = await journal.wait_until(
            lambda es: any(isinstance(e, ev.JobRejected) and e.job_id == "ckpt" for _, e in es)
        )
    (rejected,) = [e for _, e in events if isinstance(e, ev.JobRejected)]
    assert "checkpointing is turned off on this coordinator" in rejected.reason
    assert not any(isinstance(e, ev.JobAccepted) for _, e in events)
