"""Operator chaining through the real coordinator and real workers (issue 19).

The restore of a chained task's state after ``kill -9`` of its worker is the
checkpoint correctness test (test_checkpoint_correctness.py): its job chains
``numbers -> keyed`` and ``count -> sink`` (the exactly-once sink) by default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest
from aiokafka import TopicPartition

from schemas import events as ev
from schemas import kafkaio
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import Cluster, Journal, Producer, joined, status_of
from tests.integration.test_dataplane_jobs import keyed_count_job, last_count_per_key

pytestmark = pytest.mark.integration

ENDED = {ev.JobStatus.FINISHED, ev.JobStatus.FAILED}


def _without_chaining(job: ev.JobSubmitted) -> ev.JobSubmitted:
    graph = dataclasses.replace(job.job_graph, chaining=False)
    return dataclasses.replace(job, job_id=job.job_id + "-unchained", job_graph=graph)


async def test_a_chained_job_counts_exactly_what_the_unchained_one_counts_in_fewer_tasks(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    chained_sink = await new_topic("chained", partitions=2)
    unchained_sink = await new_topic("unchained", partitions=2)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 5)
    cluster.worker("tm-2", 5)
    total, keys = 2_000, 10
    # numbers -> keyed (FORWARD, p 2) and count -> sink (FORWARD, p 2) chain.
    chained = keyed_count_job("kc", chained_sink, total, keys, count_p=2)
    unchained = _without_chaining(keyed_count_job("kc", unchained_sink, total, keys, count_p=2))
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(chained)
        await client.send(unchained)
        events = await journal.wait_until(
            lambda es: status_of(es, "kc") in ENDED and status_of(es, "kc-unchained") in ENDED,
            seconds=120,
        )
    assert status_of(events, "kc") is ev.JobStatus.FINISHED
    assert status_of(events, "kc-unchained") is ev.JobStatus.FINISHED
    expected = {str(k): total // keys for k in range(keys)}
    assert await last_count_per_key(cluster.stack, chained_sink) == expected
    assert await last_count_per_key(cluster.stack, unchained_sink) == expected
    slots: dict[str, set[tuple[str, int]]] = {}
    finished: dict[str, set[tuple[str, int]]] = {}
    for _, e in events:
        if isinstance(e, ev.TaskAssigned) and e.task.attempt == 0:
            slots.setdefault(e.task.job_id, set()).add((e.slot.tm_id, e.slot.slot_index))
        if isinstance(e, ev.TaskStateRecorded) and e.state is ev.ExecutionState.FINISHED:
            finished.setdefault(e.task.job_id, set()).add((e.task.vertex_id, e.task.subtask_index))
    # The journal still shows every vertex's subtasks, chained or not...
    every = {(v, i) for v in ("numbers", "keyed", "count", "sink") for i in range(2)}
    assert finished["kc"] == finished["kc-unchained"] == every
    # ...but the chained job ran as 4 tasks, the unchained as 8 (each in 2 slots: slot
    # sharing puts subtask i of every vertex in one slot).
    assert len(slots["kc"]) == len(slots["kc-unchained"]) == 2
    deployed = Counter(
        job_id
        for w in ("tm-1", "tm-2")
        for job_id in re.findall(r"deploying (kc(?:-unchained)?)/", cluster.workers[w].log())
    )
    assert deployed == {"kc": 4, "kc-unchained": 8}


async def test_a_three_vertex_job_of_parallelism_2_runs_in_2_slots(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    sink = await new_topic("out", partitions=2)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 1)
    cluster.worker("tm-2", 1)
    total = 1_000

    def vertex(id: str, operator: str, **config: str) -> ev.Vertex:
        return ev.Vertex(id=id, name=id, operator=operator, parallelism=2, max_parallelism=8,
                         config=config)  # fmt: skip

    job = dataclasses.replace(
        keyed_count_job("three", sink, total, 5),
        job_graph=ev.JobGraph(
            vertices=(
                vertex("numbers", "sequence", count=str(total)),
                vertex("keyed", "map", function="mod_key", n="5"),
                vertex("sink", "kafka_sink", topic=sink, key_field="key"),
            ),
            edges=(
                ev.Edge(source="numbers", target="keyed"),
                ev.Edge(source="keyed", target="sink"),
            ),
        ),
    )
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(job)
        events = await journal.wait_until(lambda es: status_of(es, "three") in ENDED, seconds=90)
    assert status_of(events, "three") is ev.JobStatus.FINISHED
    assigned = [e for _, e in events if isinstance(e, ev.TaskAssigned)]
    assert len(assigned) == 6  # every vertex's subtasks, journaled
    assert {(e.slot.tm_id, e.slot.slot_index) for e in assigned} == {("tm-1", 0), ("tm-2", 0)}
    # Every number reached the sink once, through operators passing records by call.
    assert sorted(int(r["value"]) for r in await records_of(cluster.stack, sink)) == list(
        range(total)
    )


async def records_of(stack: Stack, topic: str) -> list[dict[str, int]]:
    """Every record of `topic`, decoded from JSON."""
    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    out: list[dict[str, int]] = []
    try:
        described = await kafkaio.describe_topics(stack.bootstrap, [topic])
        tps = [TopicPartition(topic, p) for p in range(described[topic].partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                out.extend(json.loads(r.value or b"{}") for r in records)
    finally:
        await consumer.stop()
    return out
