"""Checkpoints through the real coordinator and real workers (Kafka state store):
tasks acknowledge with handles that exist in the store, and a task redeployed
after a completed checkpoint restores from it."""

from __future__ import annotations

import re
import uuid

import pytest

from schemas import events as ev
from schemas.snapshot import decode_snapshot
from schemas.statestore import open_store
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of
from tests.worker.harness import Reports

pytestmark = pytest.mark.integration
P = ev.Partitioning


def submitted(job_id: str, vertices: tuple[ev.Vertex, ...], edges: tuple[ev.Edge, ...],
              **restart: int) -> ev.JobSubmitted:  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            **restart),
        # Failed checkpoints do not fail the job over; completed ones are all retained,
        # so the state the test reads is not discarded (subsumed) meanwhile.
        checkpoint_config=ev.CheckpointConfig(interval_ms=500, timeout_ms=3_000,
                                              tolerable_failures=1_000, retained=100),
    )  # fmt: skip


def vertex(id: str, operator: str, parallelism: int = 1, **config: str) -> ev.Vertex:
    return ev.Vertex(id=id, name=id, operator=operator, parallelism=parallelism,
                     max_parallelism=8, config=config)  # fmt: skip


async def test_every_task_acknowledges_with_a_handle_in_the_store(cluster: Cluster) -> None:
    await cluster.coordinator("c1", "--allow-checkpointing").wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 6)
    job = submitted(
        "ckpt",
        (
            vertex("numbers", "sequence", 2, rate="200"),
            vertex("keyed", "map", 2, function="mod_key", n="5"),
            vertex("count", "keyed_count", 2, key_field="key"),
        ),
        (
            ev.Edge(source="numbers", target="keyed", partitioning=P.FORWARD),
            ev.Edge(source="keyed", target="count", partitioning=P.HASH, key_field="key"),
        ),
        attempts=0,
    )
    reports = Reports(cluster.stack.bootstrap, cluster.catalog, "tm-1")
    await reports.start()
    store = open_store("kafka", catalog=cluster.catalog, bootstrap=cluster.stack.bootstrap)
    try:
        async with Producer(cluster.stack, cluster.catalog) as client, \
                Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            await client.send(job)
            events = await journal.wait_until(
                lambda es: any(isinstance(e, ev.CheckpointTriggered) for _, e in es), seconds=60
            )
        # One checkpoint acknowledged by all six tasks (the counters aligned the
        # barriers of both map subtasks on their HASH input), each with state
        # that reads back from the store.
        acks: dict[int, dict[tuple[str, int], ev.CheckpointAcknowledged]] = {}

        def all_six(e: ev.Event) -> bool:
            if isinstance(e, ev.CheckpointDeclined):
                raise AssertionError(f"declined: {e}")
            if isinstance(e, ev.CheckpointAcknowledged):
                subtask = (e.task.vertex_id, e.task.subtask_index)
                acks.setdefault(e.checkpoint_id, {})[subtask] = e
                return len(acks[e.checkpoint_id]) == 6
            return False

        await reports.wait_for(all_six, within=60, what="acks of all six tasks")
        (done,) = [by_task for by_task in acks.values() if len(by_task) == 6]
        states = {k: decode_snapshot(await store.get(a.state_handle)) for k, a in done.items()}
        for k, a in done.items():
            assert a.state_handle.startswith("kafka:")
            assert a.task.job_id == "ckpt"
            assert a.state_size > 0, k
        emitted = [states[("numbers", i)].operator_state for i in (0, 1)]
        counts = [states[("count", i)].operator_state for i in (0, 1)]
        # What the sources had emitted before their barriers is exactly what the
        # counters had counted before the same barriers: a consistent cut.
        total_emitted = sum(e["emitted"] for e in emitted if isinstance(e, dict))
        keyed = [c["counts"] for c in counts if isinstance(c, dict)]
        assert total_emitted == sum(n for k in keyed for n in k.values()) > 0
        assert not set(keyed[0]) & set(keyed[1])  # each key on one counter
        assert any(isinstance(e, ev.CheckpointTriggered) for _, e in events)
    finally:
        await reports.close()
        await store.close()
        assert "Traceback" not in worker.log()


async def test_a_restarted_source_restores_from_the_completed_checkpoint(
    cluster: Cluster,
) -> None:
    """A one-task job: its checkpoints complete on the live leader with its one ack."""
    await cluster.coordinator("c1", "--allow-checkpointing").wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 2)
    total = 600
    source = vertex(
        "numbers", "fault", count=str(total), rate="100", fail_after="300", fail_attempts="1"
    )
    job = submitted("restore", (source,), (), attempts=3, delay_ms=200)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job)
        events = await journal.wait_until(
            lambda es: status_of(es, "restore") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=90,
        )
    assert status_of(events, "restore") == ev.JobStatus.FINISHED
    completed = [e for _, e in events if isinstance(e, ev.CheckpointCompleted)]
    restarted = [e for _, e in events if isinstance(e, ev.RestartScheduled)]
    assert completed and restarted
    log = worker.log()
    # Attempt 0 failed after 300 records; attempt 1 restored the latest checkpoint
    # taken before that and emitted only the rest of the 600.
    assert re.search(r"restored checkpoint \d+ from kafka:", log), log[-3000:]
    finished = re.findall(r"restore/numbers\[0\]#1.*finished: (\d+) records", log)
    assert finished, log[-3000:]
    rest = int(finished[0])
    assert total - 300 <= rest < total
