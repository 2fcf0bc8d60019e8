"""Deploy a whole job graph onto real workers the way the coordinator does, and
read what reached Kafka: helpers for the data plane tests and the benchmark.

Every subtask of every vertex becomes one DeployTask carrying the vertex's
input and output edges and the parallelism of every vertex; subtasks are
spread round robin over the clusters (workers), one slot each.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.edges import HEADER_KIND, KIND_BATCH, decode_batch
from tests.worker.conftest import Cluster
from tests.worker.harness import ES, now_ms

P = ev.Partitioning


@dataclass(frozen=True)
class V:
    """A vertex of a test job."""

    id: str
    operator: str
    parallelism: int = 1
    config: dict[str, str] = field(default_factory=dict)


def edge(
    source: str, target: str, partitioning: ev.Partitioning = P.FORWARD, key: str | None = None
) -> ev.Edge:
    return ev.Edge(source=source, target=target, partitioning=partitioning, key_field=key)


@dataclass
class Job:
    """One run (attempt) of a job graph, deployed over some clusters."""

    vertices: Sequence[V]
    edges: Sequence[ev.Edge]
    job_id: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:8]}")
    attempt: int = 0
    placed: dict[ev.TaskRef, Cluster] = field(default_factory=dict)

    def tasks(self, vertex: str | None = None) -> list[ev.TaskRef]:
        return [
            ev.TaskRef(job_id=self.job_id, vertex_id=v.id, subtask_index=i, attempt=self.attempt)
            for v in self.vertices
            if vertex is None or v.id == vertex
            for i in range(v.parallelism)
        ]

    def commands(self, clusters: Sequence[Cluster]) -> dict[int, list[ev.DeployTask]]:
        """DeployTasks per cluster index, subtasks spread round robin."""
        parallelism = {v.id: v.parallelism for v in self.vertices}
        by_id = {v.id: v for v in self.vertices}
        out: dict[int, list[ev.DeployTask]] = {i: [] for i in range(len(clusters))}
        for n, task in enumerate(self.tasks()):
            index = n % len(clusters)
            cluster = clusters[index]
            v = by_id[task.vertex_id]
            self.placed[task] = cluster
            leader = cluster.leader
            out[index].append(
                ev.DeployTask(
                    event_id=uuid.uuid4().hex,
                    event_time=now_ms(),
                    epoch=leader.epoch,
                    tm_id=leader.tm_id,
                    incarnation=leader.incarnation,
                    task=task,
                    slot_index=len(out[index]),
                    operator=v.operator,
                    vertex_name=v.id,
                    parallelism=v.parallelism,
                    max_parallelism=128,
                    config=dict(v.config),
                    inputs=tuple(e for e in self.edges if e.target == v.id),
                    outputs=tuple(e for e in self.edges if e.source == v.id),
                    vertex_parallelism=dict(parallelism),
                )
            )
        return out

    async def deploy(self, clusters: Sequence[Cluster]) -> None:
        for index, commands in self.commands(clusters).items():
            if commands:
                await clusters[index].leader.send(*commands)

    async def finished(self, within: float = 30.0) -> None:
        """Wait until every task reported FINISHED; fail at once on a FAILED one."""
        deadline = time.monotonic() + within
        for task, cluster in self.placed.items():

            def ended(e: ev.Event, task: ev.TaskRef = task) -> bool:
                return isinstance(e, ev.TaskStateChanged) and e.task == task and e.state.is_terminal

            left = max(0.1, deadline - time.monotonic())
            event: ev.TaskStateChanged = await cluster.reports.wait_for(
                ended, left, f"end of {task}"
            )
            assert event.state is ES.FINISHED, (
                f"{task} ended {event.state}: {event.error_name}\n{event.error_stack}\n"
                f"{cluster.worker.log()[-4000:]}"
            )


async def read_topic(
    bootstrap: str, topic: str, partitions: Iterable[int]
) -> dict[int, list[tuple[bytes | None, Any, list[tuple[str, bytes]]]]]:
    """Every record of the partitions up to their end offsets: (key, JSON value or
    raw bytes, headers) per partition; an edge's record batch (``jm-kind: batch``)
    counts as its records, each with the batch's key and headers."""
    consumer = kafkaio.consumer(bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[int, list[tuple[bytes | None, Any, list[tuple[str, bytes]]]]] = {
            tp.partition: [] for tp in tps
        }
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "reading the topic took too long"
            fetched = await consumer.getmany(timeout_ms=200)
            for tp, records in fetched.items():
                for r in records:
                    value: Any = r.value
                    headers = list(r.headers)
                    if (HEADER_KIND, KIND_BATCH) in headers:
                        for record in decode_batch(r.value or b""):
                            out[tp.partition].append((r.key, record, headers))
                        continue
                    if r.value:
                        value = json.loads(r.value)
                    out[tp.partition].append((r.key, value, headers))
        return out
    finally:
        await consumer.stop()
