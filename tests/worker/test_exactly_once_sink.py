"""``kafka_sink`` with ``delivery: exactly_once`` in a real worker process, against
real Kafka: the test plays the leader (commands on the worker's partition) and
the upstream subtasks (records and barriers written into the sink's edge).

What a read_committed consumer of the sink topic sees: nothing of a checkpoint
until its NotifyCheckpointComplete; an aborted checkpoint's records with the
next completed one; the end of input's records at the end; after a kill -9
between a completed checkpoint and its commit, the restored attempt commits
what was pending, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack
from tests.worker.conftest import Cluster, StartCluster
from tests.worker.dataplane import read_topic
from tests.worker.harness import Leader, now_ms
from tests.worker.test_checkpoints import Upstream
from worker.edges import create_edge_topics, edge_topic
from worker.operators.api import KafkaEnv, TaskSpec
from worker.operators.exactly_once import Marker, TransactionalWriter, read_marker
from worker.operators.kafka_io import _create_topic

ES = ev.ExecutionState
P = ev.Partitioning


def sink_deploy(leader: Leader, job_id: str, topic: str, attempt: int = 0,
                restore: ev.CheckpointAcknowledged | None = None) -> ev.DeployTask:  # fmt: skip
    """sink[0] of 1 reading src (2 subtasks, HASH on key), exactly-once into `topic`."""
    task = ev.TaskRef(job_id=job_id, vertex_id="sink", subtask_index=0, attempt=attempt)
    deploy = leader.deploy(task, "kafka_sink", topic=topic, partitions="1", key_field="key",
                           delivery="exactly_once")  # fmt: skip
    return dataclasses.replace(
        deploy,
        inputs=(ev.Edge(source="src", target="sink", partitioning=P.HASH, key_field="key"),),
        vertex_parallelism={"src": 2, "sink": 1},
        restore_checkpoint_id=None if restore is None else restore.checkpoint_id,
        restore_state_handle=None if restore is None else restore.state_handle,
    )


def notify(leader: Leader, task: ev.TaskRef, checkpoint_id: int, completed: bool) -> Any:
    kind = ev.NotifyCheckpointComplete if completed else ev.NotifyCheckpointAborted
    return kind(
        event_id=uuid.uuid4().hex, event_time=now_ms(), epoch=leader.epoch,
        tm_id=leader.tm_id, incarnation=leader.incarnation, task=task,
        checkpoint_id=checkpoint_id,
    )  # fmt: skip


async def committed(stack: Stack, topic: str) -> list[str]:
    """The keys of the sink topic's records a read_committed consumer sees, in order."""
    return [v["key"] for _, v, _ in (await read_topic(stack.bootstrap, topic, [0]))[0]]


async def until_committed(stack: Stack, topic: str, want: list[str]) -> list[str]:
    seen: list[str] = []
    for _ in range(300):
        seen = await committed(stack, topic)
        if len(seen) >= len(want):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"committed {seen}, waited for {want}")


class Run:
    """One sink attempt on a worker, with its two upstream writers."""

    def __init__(self, stack: Stack, catalog: Catalog, cluster: Cluster,
                 deploy: ev.DeployTask) -> None:  # fmt: skip
        self.stack, self.catalog, self.cluster, self.deploy = stack, catalog, cluster, deploy
        self.spec = TaskSpec.from_command(deploy)
        self.task = deploy.task
        self.producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)

    async def __aenter__(self) -> tuple[Upstream, Upstream]:
        env = KafkaEnv(self.stack.bootstrap, self.catalog)
        await create_edge_topics(env, self.spec)
        await self.producer.start()
        await self.cluster.leader.send(self.deploy)
        await self.cluster.reports.state(self.task, ES.RUNNING, within=60)
        topic = edge_topic(env, self.spec, self.spec.inputs[0])
        return tuple(Upstream(self.producer, topic, i, self.task.attempt) for i in (0, 1))  # type: ignore[return-value]

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def ack(self, checkpoint_id: int) -> ev.CheckpointAcknowledged:
        def ok(e: ev.Event) -> bool:
            if isinstance(e, ev.CheckpointDeclined) and e.task == self.task:
                raise AssertionError(f"declined: {e}")
            return (
                isinstance(e, ev.CheckpointAcknowledged)
                and e.task == self.task
                and e.checkpoint_id == checkpoint_id
            )

        ack: ev.CheckpointAcknowledged = await self.cluster.reports.wait_for(
            ok, within=60, what=f"ack of checkpoint {checkpoint_id}"
        )
        return ack

    async def notify(self, checkpoint_id: int, completed: bool = True) -> None:
        await self.cluster.leader.send(notify(self.cluster.leader, self.task, checkpoint_id,
                                              completed))  # fmt: skip

    async def wait_log(self, text: str) -> None:
        for _ in range(600):
            if text in self.cluster.worker.log():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {text!r} in the worker log:\n{self.cluster.worker.log()}")


async def test_records_become_visible_on_notify_complete_and_at_the_end(
    stack: Stack, catalog: Catalog, start_cluster: StartCluster
) -> None:
    cluster = await start_cluster(slots=1)
    job_id, topic = f"j{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    run = Run(stack, catalog, cluster, sink_deploy(cluster.leader, job_id, topic))
    async with run as (u0, u1):
        await u0.data("a1")
        await u0.barrier(1)
        await asyncio.sleep(0.3)  # the sink waits (aligns) for u1's barrier meanwhile
        await u1.data("b1")
        await u1.barrier(1)
        ack1 = await run.ack(1)
        # The alignment the EdgeReader measured reaches the acknowledgement.
        assert ack1.alignment_ms >= 200, ack1
        assert ack1.state_size > 0
        # Pre-committed only: nothing visible until the checkpoint is complete.
        assert await committed(stack, topic) == []
        await run.notify(1)
        assert sorted(await until_committed(stack, topic, ["a1", "b1"])) == ["a1", "b1"]

        # Checkpoint 2 is aborted: its records wait for checkpoint 3.
        await u0.data("a2")
        await u1.data("b2")
        for u in (u0, u1):
            await u.barrier(2)
        await run.ack(2)
        await run.notify(2, completed=False)
        await run.wait_log("checkpoint 2 aborted: pending [2]")
        assert len(await committed(stack, topic)) == 2
        await u0.data("a3")
        for u in (u0, u1):
            await u.barrier(3)
        await run.ack(3)
        await run.notify(3)
        seen = await until_committed(stack, topic, ["a1", "b1", "a2", "b2", "a3"])
        assert sorted(seen[2:]) == ["a2", "a3", "b2"]

        # Records after the last checkpoint are committed at the end of input.
        await u1.data("b4")
        await u0.end()
        await u1.end()
        await cluster.reports.state(run.task, ES.FINISHED, within=60)
    seen = await committed(stack, topic)
    assert sorted(seen) == ["a1", "a2", "a3", "b1", "b2", "b4"]
    marker = await read_marker(
        KafkaEnv(stack.bootstrap, catalog), f"{catalog.cluster_id}-{job_id}-sink-0"
    )
    assert (marker.checkpoint, marker.final) == (3, True)
    assert "Traceback" not in cluster.worker.log()


async def test_a_completed_but_uncommitted_checkpoint_is_committed_once_on_restore(
    stack: Stack, catalog: Catalog, start_cluster: StartCluster
) -> None:
    """Checkpoints 1 and 2 complete; only 1 is committed when the worker dies (kill -9).
    The next attempt restores checkpoint 2, whose snapshot still lists checkpoint 1's
    records as pending (the commit came after the snapshot): the commit marker says 1
    is in the topic, so only 2's records are written, once."""
    first = await start_cluster(slots=1)
    job_id, topic = f"j{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    run = Run(stack, catalog, first, sink_deploy(first.leader, job_id, topic))
    async with run as (u0, u1):
        await u0.data("x1")
        await u1.data("x2")
        for u in (u0, u1):
            await u.barrier(1)
        await run.ack(1)
        await u0.data("x3")
        for u in (u0, u1):
            await u.barrier(2)
        ack2 = await run.ack(2)
        await run.notify(1)
        assert sorted(await until_committed(stack, topic, ["x1", "x2"])) == ["x1", "x2"]
        first.worker.signal(signal.SIGKILL)
        await first.worker.wait(30)
    assert sorted(await committed(stack, topic)) == ["x1", "x2"]

    second = await start_cluster(slots=1)
    run = Run(stack, catalog, second,
              sink_deploy(second.leader, job_id, topic, attempt=1, restore=ack2))  # fmt: skip
    async with run as (u0, u1):
        # Restoring committed checkpoint 2's pending records, and only those.
        seen = await until_committed(stack, topic, ["x1", "x2", "x3"])
        assert sorted(seen) == ["x1", "x2", "x3"]
        # The sources resume after checkpoint 2: the rest comes once, at the end.
        await u0.data("x4")
        await u0.end()
        await u1.end()
        await second.reports.state(run.task, ES.FINISHED, within=60)
    assert sorted(await committed(stack, topic)) == ["x1", "x2", "x3", "x4"]
    log = second.worker.log()
    assert "1 pending interval(s) to commit, 1 committed already" in log, log[-3000:]


async def test_a_new_attempt_fences_the_old_producer(stack: Stack, catalog: Catalog) -> None:
    """Two attempts of one sink subtask share a transactional id: the old one can no
    longer commit once the new one started, and a final marker makes a later attempt
    drop its input (a bounded job restarted after its sink had finished)."""
    env = KafkaEnv(stack.bootstrap, catalog)
    job_id, topic = f"j{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"
    specs = [
        TaskSpec(task=ev.TaskRef(job_id=job_id, vertex_id="sink", subtask_index=0, attempt=a),
                 operator="kafka_sink", vertex_name="sink", parallelism=1, max_parallelism=8)
        for a in (0, 1, 2)
    ]  # fmt: skip
    await _create_topic(env, topic, 1)  # the sink's own topic creation
    log = logging.getLogger("test.eos")
    old = TransactionalWriter(env, specs[0], topic, log)
    new = TransactionalWriter(env, specs[1], topic, log)
    await old.start()
    try:
        old.add(("k", '{"key":"old"}'))
        old.snapshot(1)
        await new.start()  # fences `old`
        with pytest.raises(KafkaError):
            await old.commit(1)
        # Its outcome unknown to it, the old attempt commits nothing more.
        assert old.broken is not None
        with pytest.raises(KafkaError):
            await old.commit(1)
        new.add(("k", '{"key":"new"}'))
        await new.commit(0, final=True)
    finally:
        await old.close()
        await new.close()
    assert await committed(stack, topic) == ["new"]
    assert (await read_marker(env, new.transactional_id)).final
    later = TransactionalWriter(env, specs[2], topic, log)
    await later.start()
    try:
        assert later.dropping
        later.add(("k", '{"key":"again"}'))
        await later.commit(5, final=True)
    finally:
        await later.close()
    assert await committed(stack, topic) == ["new"]
    assert Marker.decode(Marker(4, True).encode()).checkpoint == 4


async def test_a_new_attempt_reads_its_marker_past_another_subtasks_open_transaction(
    stack: Stack, catalog: Catalog
) -> None:
    """The marker topic is shared by the sink subtasks. Sink 0's worker dies between
    writing its marker and committing (its transaction stays open), then sink 1
    commits checkpoint 2. Sink 1's next attempt, restoring checkpoint 2, must read
    marker 2, not stop at the open transaction (a read_committed consumer's end)
    and commit interval 2 again (the correctness test's repeat, seed 3453543529)."""
    env = KafkaEnv(stack.bootstrap, catalog)
    job_id, topic = f"j{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"

    def spec(subtask: int, attempt: int) -> TaskSpec:
        task = ev.TaskRef(job_id=job_id, vertex_id="sink", subtask_index=subtask, attempt=attempt)
        return TaskSpec(task=task, operator="kafka_sink", vertex_name="sink", parallelism=2,
                        max_parallelism=8)  # fmt: skip

    await _create_topic(env, topic, 1)
    log = logging.getLogger("test.eos")
    sink0, sink1 = (TransactionalWriter(env, spec(i, 0), topic, log) for i in (0, 1))
    later0, later1 = (TransactionalWriter(env, spec(i, 1), topic, log) for i in (0, 1))
    try:
        await sink0.start()
        await sink1.start()
        sink1.add(("k", '{"key":"one"}'))
        sink1.snapshot(1)
        await sink1.commit(1)
        # Sink 0 commits checkpoint 2: its marker is written, its commit never sent.
        producer = sink0.producer
        assert producer is not None
        await producer.begin_transaction()
        key = sink0.transactional_id.encode()
        await (await producer.send(sink0.marker_topic, Marker(2).encode(), key=key))
        sink1.add(("k", '{"key":"two"}'))
        state = sink1.snapshot(2).operator_state
        await sink1.commit(2)
        reading = asyncio.create_task(later1.start())
        await asyncio.sleep(1.0)  # let it read first (before the fix it ended here)
        await later0.start()  # sink 0's next attempt fences its open transaction
        await reading
        assert later1.committed.checkpoint == 2, later1.committed
        await later1.restore(2, state)
        assert later1.records_committed == 0
    finally:
        for writer in (sink0, sink1, later0, later1):
            await writer.close()
    assert await committed(stack, topic) == ["one", "two"]
