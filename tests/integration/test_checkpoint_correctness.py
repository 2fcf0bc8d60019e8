"""The checkpoint correctness test (issue 12): a keyed count over a bounded
input, checkpointed every 500 ms, survives ``kill -9`` of workers (and, in the
second variant, of the leader) with exact results.

The seed of the random kill schedule is printed; replay a failure with
``JM_CORRECTNESS_SEED=<seed> pytest tests/integration/test_checkpoint_correctness.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition

from schemas import events as ev
from schemas import kafkaio
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import REPO, Cluster, Journal, Producer, joined, now_ms

pytestmark = pytest.mark.integration

TOTAL, KEYS, PARALLELISM = 100_000, 8, 2
#: per source subtask and second: the job runs long enough to be killed a few times
RATE = 1_500


def counting_job(job_id: str, sink: str) -> ev.JobSubmitted:
    def vertex(id: str, operator: str, **config: str) -> ev.Vertex:
        return ev.Vertex(id=id, name=id, operator=operator, parallelism=PARALLELISM,
                         max_parallelism=8, config=config)  # fmt: skip

    vertices = (
        vertex("numbers", "sequence", count=str(TOTAL), rate=str(RATE)),
        vertex("keyed", "map", function="mod_key", n=str(KEYS)),
        vertex("count", "keyed_count", key_field="key"),
        vertex("sink", "kafka_sink", topic=sink, key_field="key", delivery="exactly_once"),
    )
    P = ev.Partitioning
    edges = (
        ev.Edge(source="numbers", target="keyed", partitioning=P.FORWARD),
        ev.Edge(source="keyed", target="count", partitioning=P.HASH, key_field="key"),
        ev.Edge(source="count", target="sink", partitioning=P.FORWARD),
    )
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=50, delay_ms=200),
        # A barrier waits behind the records before it: on a loaded machine a
        # checkpoint may take tens of seconds (Flink's default timeout is 10 min).
        checkpoint_config=ev.CheckpointConfig(interval_ms=500, timeout_ms=120_000,
                                              tolerable_failures=100),
    )  # fmt: skip


async def committed_updates(stack: Stack, topic: str) -> dict[int, list[int]]:
    """key -> the counts the sink committed for it, in order (read_committed)."""
    consumer = kafkaio.consumer(stack.bootstrap, isolation_level="read_committed")
    await consumer.start()
    updates: dict[int, list[int]] = {}
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
                    updates.setdefault(int(value["key"]), []).append(int(value["count"]))
    finally:
        await consumer.stop()
    return updates


def jm_status(cluster: Cluster, job_id: str) -> dict[str, Any]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=cluster.stack.bootstrap,
               REDIS_URL=cluster.stack.redis_url, JM_CLUSTER_ID=cluster.catalog.cluster_id,
               PYTHONPATH=str(REPO))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "status", job_id, "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def status(events: list[tuple[int, ev.Event]], job_id: str) -> ev.JobStatus | None:
    found = None
    for _, e in events:
        if isinstance(e, ev.JobStatusChanged) and e.job_id == job_id:
            found = e.to_status
    return found


def _running_on(events: list[tuple[int, ev.Event]], job_id: str) -> set[str]:
    """The workers of the latest assignment of each subtask of the job."""
    placed = {
        (e.task.vertex_id, e.task.subtask_index): e.slot.tm_id
        for _, e in events
        if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id
    }
    return set(placed.values())


def restores_from_checkpoints(events: list[tuple[int, ev.Event]], job_id: str) -> list[int]:
    """The restart counts of execution graphs created after a checkpoint completed."""
    first = next(
        (o for o, e in events if isinstance(e, ev.CheckpointCompleted) and e.job_id == job_id),
        None,
    )
    return [
        e.restart_count
        for o, e in events
        if isinstance(e, ev.ExecutionGraphCreated) and e.job_id == job_id and e.restart_count
        and first is not None and o > first
    ]  # fmt: skip


# About 100-160 s alone on two cores; more when the machine is shared.
@pytest.mark.timeout(480)
@pytest.mark.parametrize("kill", ["workers", "leader"])
async def test_kill_9_during_a_checkpointed_keyed_count_loses_and_repeats_nothing(
    cluster: Cluster, new_topic: TopicFactory, kill: str
) -> None:
    seed = int(os.environ.get("JM_CORRECTNESS_SEED") or random.randrange(1 << 32))
    print(f"correctness seed {seed} (replay: JM_CORRECTNESS_SEED={seed})")
    rng = random.Random(seed)
    sink = await new_topic("counts", partitions=2)
    leader = cluster.coordinator("c1", "--allow-checkpointing")
    await leader.wait_for_line("role LEADER")
    standby = cluster.coordinator("c2", "--allow-checkpointing") if kill == "leader" else None
    names = iter(f"tm-{n}" for n in range(1, 100))
    # Three workers of 4 slots for 8 subtasks: the job fits on the survivors of
    # a kill, and the supervisor below starts a fresh worker for each killed one.
    workers = [next(names) for _ in range(3)]
    for tm in workers:
        cluster.worker(tm, 4)
    job_id = "exact"
    kills: list[str] = []
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, *workers))
        await client.send(counting_job(job_id, sink))
        # The first kill waits for a completed checkpoint: a restore from it is
        # what the test is about.
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.CheckpointCompleted) for _, e in es), seconds=150
        )
        events = await journal.read()
        plan = ["worker", "worker", "worker"] if kill == "workers" else ["leader", "worker"]
        for what in plan:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            await journal.read()
            events = journal.events  # all of them: read() returns only the new ones
            if status(events, job_id) in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED}:
                break
            if what == "leader":
                assert standby is not None
                leader.kill()
                kills.append(f"leader {leader.replica_id}")
                await standby.wait_for_line("role LEADER", seconds=60)
                leader, standby = standby, cluster.coordinator("c3", "--allow-checkpointing")
                continue
            # Slot sharing packs the job into 2 slots: kill a worker that runs some of it.
            victim = rng.choice(sorted(set(workers) & _running_on(events, job_id)) or workers)
            cluster.workers[victim].signal(signal.SIGKILL)
            workers.remove(victim)
            kills.append(f"worker {victim}")
            fresh = next(names)  # the supervisor replaces it
            cluster.worker(fresh, 4)
            workers.append(fresh)
        print(f"killed: {', '.join(kills)}")
        events = await journal.wait_until(
            lambda es: status(es, job_id) in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=240,
        )
    assert status(events, job_id) is ev.JobStatus.FINISHED, f"seed {seed}"
    assert kills, f"seed {seed}: the job finished before any kill"
    restored = restores_from_checkpoints(events, job_id)
    assert restored, f"seed {seed}: no restart restored from a checkpoint"
    shown = jm_status(cluster, job_id)
    assert shown["checkpoints"]["counts"]["restored"] >= 1, shown
    # Every run after the first kill restored a checkpoint, the last one too.
    assert shown["restored_from"]["checkpoint_id"] is not None, shown["restored_from"]

    updates = await committed_updates(cluster.stack, sink)
    expected = TOTAL // KEYS
    # Exact final counts, and no gap: each update is at most one past the one
    # before (an at-least-once sink may go back after a restore, never skip).
    assert sorted(updates) == list(range(KEYS)), f"seed {seed}: keys {sorted(updates)}"
    for key, seq in updates.items():
        assert seq[0] == 1, f"seed {seed}: key {key} starts at {seq[0]}"
        assert max(seq) == expected and seq[-1] == expected, f"seed {seed}: key {key}"
        jumps = [(a, b) for a, b in itertools.pairwise(seq) if b > a + 1]
        assert not jumps, f"seed {seed}: key {key} skips {jumps[:5]}"
    # No repeat: exactly 1, 2, ..., expected per key.
    exact = list(range(1, expected + 1))
    repeated = {k: len(seq) - expected for k, seq in updates.items() if seq != exact}
    assert not repeated, f"seed {seed}: repeated updates per key {repeated}"
