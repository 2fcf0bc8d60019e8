"""Finished tasks and checkpoints (FLIP-147, simplified; docs/checkpoints.md
"Finished tasks"), through the real coordinator and workers: checkpoints go on
after a source finished, and a job restored from such a checkpoint does not
run the finished source again."""

from __future__ import annotations

import signal
import uuid

import pytest

from schemas import events as ev
from schemas.limits import FINISHED_TASK_HANDLE
from tests.conftest import TopicFactory
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of
from tests.integration.test_dataplane_jobs import last_count_per_key

pytestmark = pytest.mark.integration

SHORT, LONG, KEYS = 20, 3_000, 4


def two_sources(job_id: str, sink: str) -> ev.JobSubmitted:
    def vertex(id: str, operator: str, **config: str) -> ev.Vertex:
        return ev.Vertex(id=id, name=id, operator=operator, parallelism=1, max_parallelism=8,
                         config=config)  # fmt: skip

    vertices = (
        vertex("short", "sequence", count=str(SHORT)),
        vertex("long", "sequence", count=str(LONG), rate="250"),
        vertex("keyed", "map", function="mod_key", n=str(KEYS)),
        vertex("count", "keyed_count", key_field="key"),
        vertex("sink", "kafka_sink", topic=sink, key_field="key"),
    )
    edges = (
        ev.Edge(source="short", target="keyed"),
        ev.Edge(source="long", target="keyed"),
        ev.Edge(source="keyed", target="count", partitioning=ev.Partitioning.HASH,
                key_field="key"),
        ev.Edge(source="count", target="sink"),
    )  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=edges),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=5, delay_ms=200),
        checkpoint_config=ev.CheckpointConfig(interval_ms=500, timeout_ms=20_000),
    )  # fmt: skip


def finished_in_a_checkpoint(events: list[tuple[int, ev.Event]]) -> bool:
    """A completed checkpoint holds `short` as finished."""
    return any(
        h.task.vertex_id == "short" and h.state_handle == FINISHED_TASK_HANDLE
        for _, e in events
        if isinstance(e, ev.CheckpointCompleted)
        for h in e.task_states
    )


async def test_checkpoints_go_on_after_a_source_finished_and_restore_skips_it(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    sink = await new_topic("counts", partitions=1)
    await cluster.coordinator("c1", "--allow-checkpointing").wait_for_line("role LEADER")
    cluster.worker("tm-1", 5)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(two_sources("fin", sink))
        # `short` finishes at once; checkpoints complete without it (tolerable
        # failures 0: a checkpoint failing on it would fail the job over).
        events = await journal.wait_until(finished_in_a_checkpoint, seconds=60)
        assert not any(isinstance(e, ev.RestartScheduled) for _, e in events)
        cluster.worker("tm-2", 5)
        cluster.workers["tm-1"].signal(signal.SIGKILL)
        events = await journal.wait_until(
            lambda es: status_of(es, "fin") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=120,
        )
    assert status_of(events, "fin") is ev.JobStatus.FINISHED
    assert any(isinstance(e, ev.RestartScheduled) for _, e in events)
    # The restored `count` holds short's records; run again, they would count twice.
    per_key = (SHORT + LONG) // KEYS
    assert await last_count_per_key(cluster.stack, sink) == {str(k): per_key for k in range(KEYS)}
