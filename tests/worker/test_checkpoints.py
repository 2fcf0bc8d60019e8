"""Task checkpoints on real Kafka edges (in-process tasks, a real directory store):
barrier alignment, barrier forwarding, snapshots of keyed_count and sequence, restore.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas import edges
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.limits import FINISHED_TASK_HANDLE
from schemas.snapshot import TaskSnapshot, decode_snapshot, encode_snapshot
from schemas.statestore import DirectoryStore
from tests.conftest import Stack
from tests.worker.conftest import StartCluster
from tests.worker.dataplane import read_topic
from worker.checkpointing import Acked, CheckpointControl, CheckpointReport, state_name
from worker.edges import create_edge_topics, edge_topic
from worker.operators.api import KafkaEnv, TaskSpec
from worker.operators.registry import OperatorRegistry
from worker.task import run_task

ES = ev.ExecutionState
P = ev.Partitioning


def count_spec(job_id: str, attempt: int = 0, restore: str | None = None) -> TaskSpec:
    """keyed_count[0] of 1, reading src (2 subtasks, HASH on key), writing to out (1)."""
    return TaskSpec(
        task=ev.TaskRef(job_id=job_id, vertex_id="count", subtask_index=0, attempt=attempt),
        operator="keyed_count", vertex_name="count", parallelism=1, max_parallelism=128,
        inputs=(ev.Edge(source="src", target="count", partitioning=P.HASH, key_field="key"),),
        outputs=(ev.Edge(source="count", target="out", partitioning=P.FORWARD),),
        vertex_parallelism={"src": 2, "count": 1, "out": 1},
        restore_checkpoint_id=1 if restore else None, restore_state_handle=restore,
    )  # fmt: skip


class Upstream:
    """Writes the edge records of one upstream subtask of `src` into count's partition 0."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, subtask: int, attempt: int) -> None:
        self.producer, self.topic, self.subtask, self.attempt = producer, topic, subtask, attempt

    async def data(self, key: str) -> None:
        headers = edges.edge_headers("src", self.subtask, self.attempt)
        value = json.dumps({"key": key}).encode()
        await self.producer.send_and_wait(self.topic, value, partition=0, headers=headers)

    async def barrier(self, checkpoint_id: int) -> None:
        headers = edges.barrier_headers("src", self.subtask, self.attempt, checkpoint_id)
        await self.producer.send_and_wait(self.topic, b"", partition=0, headers=headers)

    async def end(self) -> None:
        headers = edges.edge_headers("src", self.subtask, self.attempt, end=True)
        await self.producer.send_and_wait(self.topic, b"", partition=0, headers=headers)


Out = list[tuple[str, Any]]  # ("data", record) / ("barrier", id) / ("end", None)


async def output_of(stack: Stack, topic: str) -> Out:
    out: Out = []
    for _, value, headers in (await read_topic(stack.bootstrap, topic, [0]))[0]:
        origin = edges.parse_edge_headers(headers)
        if origin.barrier is not None:
            out.append(("barrier", origin.barrier))
        else:
            out.append(("end", None) if origin.end else ("data", value))
    return out


async def until(check: Any, what: str, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} within {seconds} s")


async def start_count(
    stack: Stack, catalog: Catalog, store: DirectoryStore, spec: TaskSpec
) -> tuple[asyncio.Task[None], list[CheckpointReport], list[ES]]:
    env = KafkaEnv(stack.bootstrap, catalog)
    await create_edge_topics(env, spec)
    reports: list[CheckpointReport] = []
    states: list[ES] = []
    control = CheckpointControl(spec, store, reports.append)
    runner = asyncio.create_task(
        run_task(spec, OperatorRegistry.builtin(), lambda s, *_: states.append(s), kafka=env,
                 checkpoints=control)
    )  # fmt: skip
    return runner, reports, states


async def test_alignment_holds_an_input_past_its_barrier_and_forwards_the_barrier(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    job_id = f"j{uuid.uuid4().hex[:8]}"
    spec = count_spec(job_id)
    store = DirectoryStore(tmp_path, catalog.cluster_id)
    env = KafkaEnv(stack.bootstrap, catalog)
    runner, reports, states = await start_count(stack, catalog, store, spec)
    src_topic = edge_topic(env, spec, spec.inputs[0])
    out_topic = edge_topic(env, spec, spec.outputs[0])
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        u0, u1 = (Upstream(producer, src_topic, i, 0) for i in (0, 1))
        # Partition order: a (u0), barrier 1 (u0), a (u0, after its barrier), b, b (u1).
        await u0.data("a")
        await u0.barrier(1)
        await u0.data("a")
        await u1.data("b")
        await u1.data("b")

        async def saw_b_twice() -> bool:
            return ("data", {"key": "b", "count": 2}) in await output_of(stack, out_topic)

        # The task read past u0's second "a" (it counted both b's, which come
        # after it) but did not count that "a": u0 is blocked at barrier 1.
        await until(saw_b_twice, "count of b reaching 2")
        assert ("data", {"key": "a", "count": 2}) not in await output_of(stack, out_topic)
        assert reports == []  # not aligned: u1 has not sent barrier 1

        await u1.barrier(1)
        await u0.end()
        await u1.end()
        await asyncio.wait_for(runner, 60)
    finally:
        await producer.stop()
    assert states[-1] is ES.FINISHED

    # Barrier forwarded once, after what was counted before it and before the held "a".
    assert await output_of(stack, out_topic) == [
        ("data", {"key": "a", "count": 1}),
        ("data", {"key": "b", "count": 1}),
        ("data", {"key": "b", "count": 2}),
        ("barrier", 1),
        ("data", {"key": "a", "count": 2}),
        ("end", None),
    ]
    # Acknowledged with a handle that reads back as the counts at the barrier.
    (ack,) = reports
    assert isinstance(ack, Acked)
    assert (ack.task, ack.checkpoint_id) == (spec.task, 1)
    data = await store.get(ack.handle)
    assert ack.state_size == len(data)
    snapshot = decode_snapshot(data)
    assert snapshot.operator_state == {"counts": {"a": 1, "b": 2}}
    assert snapshot.input_positions == {}  # edges are per attempt: docs/checkpoints.md


async def test_keyed_count_restored_counts_on_from_its_snapshot(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    job_id = f"j{uuid.uuid4().hex[:8]}"
    store = DirectoryStore(tmp_path, catalog.cluster_id)
    saved = TaskSnapshot(operator_state={"counts": {"a": 41, "b": 7}})
    task0 = count_spec(job_id).task
    handle = await store.put(job_id, 1, state_name(task0), encode_snapshot(saved))
    spec = count_spec(job_id, attempt=1, restore=handle)
    env = KafkaEnv(stack.bootstrap, catalog)
    runner, _, states = await start_count(stack, catalog, store, spec)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        u0, u1 = (Upstream(producer, edge_topic(env, spec, spec.inputs[0]), i, 1) for i in (0, 1))
        await u0.data("a")
        await u1.data("c")
        await u0.end()
        await u1.end()
        await asyncio.wait_for(runner, 60)
    finally:
        await producer.stop()
    assert states[-1] is ES.FINISHED
    assert await output_of(stack, edge_topic(env, spec, spec.outputs[0])) == [
        ("data", {"key": "a", "count": 42}),
        ("data", {"key": "c", "count": 1}),
        ("end", None),
    ]


async def test_a_missing_restore_handle_fails_the_task(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path, catalog.cluster_id)
    spec = count_spec(f"j{uuid.uuid4().hex[:8]}", restore="dir:nope/chk-1/count-0")
    runner, _, states = await start_count(stack, catalog, store, spec)
    await asyncio.wait_for(runner, 60)
    assert states[-1] is ES.FAILED


async def test_sequence_source_injects_a_barrier_at_its_snapshot_position(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    job_id = f"j{uuid.uuid4().hex[:8]}"
    spec = TaskSpec(
        task=ev.TaskRef(job_id=job_id, vertex_id="src", subtask_index=0, attempt=0),
        operator="sequence", vertex_name="src", parallelism=1, max_parallelism=128,
        config={"count": "400", "rate": "1000"},
        outputs=(ev.Edge(source="src", target="sink", partitioning=P.FORWARD),),
        vertex_parallelism={"src": 1, "sink": 1},
    )  # fmt: skip
    env = KafkaEnv(stack.bootstrap, catalog)
    store = DirectoryStore(tmp_path, catalog.cluster_id)
    reports: list[CheckpointReport] = []
    states: list[ES] = []
    running = asyncio.Event()

    def report(state: ES, *_: object) -> None:
        states.append(state)
        if state is ES.RUNNING:
            running.set()

    control = CheckpointControl(spec, store, reports.append)
    runner = asyncio.create_task(
        run_task(spec, OperatorRegistry.builtin(), report, kafka=env, checkpoints=control)
    )
    await asyncio.wait_for(running.wait(), 30)
    await asyncio.sleep(0.1)  # some records out before the barrier
    control.trigger(1)
    await asyncio.wait_for(runner, 60)
    control.trigger(2)  # after the source finished: acknowledged as finished (FLIP-147)
    assert states[-1] is ES.FINISHED
    ack, finished = reports
    assert isinstance(ack, Acked) and ack.checkpoint_id == 1
    assert isinstance(finished, Acked) and finished.checkpoint_id == 2
    assert finished.handle == FINISHED_TASK_HANDLE and finished.state_size == 0
    emitted = decode_snapshot(await store.get(ack.handle)).operator_state
    out = await output_of(stack, edge_topic(env, spec, spec.outputs[0]))
    barrier_at = out.index(("barrier", 1))
    assert emitted == {"emitted": barrier_at}  # the position matches the barrier's place
    assert 0 < barrier_at < 400
    assert [v["value"] for kind, v in out if kind == "data"] == list(range(400))


async def test_the_worker_declines_a_trigger_for_a_task_it_does_not_run(
    start_cluster: StartCluster,
) -> None:
    cluster = await start_cluster()
    leader = cluster.leader
    task = ev.TaskRef(job_id="j", vertex_id="src", subtask_index=0, attempt=0)
    trigger = ev.TriggerCheckpoint(
        event_id=uuid.uuid4().hex, event_time=0, epoch=leader.epoch, tm_id=leader.tm_id,
        incarnation=leader.incarnation, task=task, checkpoint_id=3,
    )  # fmt: skip
    await leader.send(trigger)
    declined = await cluster.reports.wait_for(
        lambda e: isinstance(e, ev.CheckpointDeclined), what="CheckpointDeclined"
    )
    assert (declined.task, declined.checkpoint_id) == (task, 3)
    assert "task not running on this worker" in declined.reason
