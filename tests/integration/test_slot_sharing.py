"""Slot sharing through the real coordinator and a real worker (issue 19, item 3).

sequence(2) -> map(2) -HASH-> keyed_count(2) -> sink(2) needs two slots, its highest
parallelism: each slot holds subtask i of every vertex, chained (two tasks per slot)
or not (four), each task in a slot process of its own.
"""

from __future__ import annotations

import re

import pytest

from schemas import events as ev
from tests.conftest import TopicFactory
from tests.integration.harness import Cluster, Journal, Producer, joined, status_of
from tests.integration.test_chaining import _without_chaining
from tests.integration.test_dataplane_jobs import keyed_count_job, last_count_per_key

pytestmark = pytest.mark.integration

ENDED = {ev.JobStatus.FINISHED, ev.JobStatus.FAILED, ev.JobStatus.CANCELED}
VERTICES = ("numbers", "keyed", "count", "sink")


async def test_the_keyed_job_runs_in_two_slots_of_one_worker_chained_or_not(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    chained_sink = await new_topic("shared-chained", partitions=2)
    unchained_sink = await new_topic("shared-unchained", partitions=2)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 2)
    total, keys = 2_000, 10
    chained = keyed_count_job("ss", chained_sink, total, keys, count_p=2)
    unchained = _without_chaining(keyed_count_job("ss", unchained_sink, total, keys, count_p=2))
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        # One job at a time: two jobs never share a slot, so the second would wait.
        await client.send(chained)
        events = await journal.wait_until(lambda es: status_of(es, "ss") in ENDED, seconds=90)
        await client.send(unchained)
        events = await journal.wait_until(
            lambda es: status_of(es, "ss-unchained") in ENDED, seconds=90
        )
    expected = {str(k): total // keys for k in range(keys)}
    for job_id, sink in (("ss", chained_sink), ("ss-unchained", unchained_sink)):
        assert status_of(events, job_id) is ev.JobStatus.FINISHED, job_id
        assert await last_count_per_key(cluster.stack, sink) == expected, job_id
        slots: dict[tuple[str, int], set[tuple[str, int]]] = {}
        for _, e in events:
            if isinstance(e, ev.TaskAssigned) and e.task.job_id == job_id:
                where = (e.slot.tm_id, e.slot.slot_index)
                slots.setdefault(where, set()).add((e.task.vertex_id, e.task.subtask_index))
        # Slot i held subtask i of every vertex; no restart, so nothing else.
        assert slots == {("tm-1", i): {(v, i) for v in VERTICES} for i in range(2)}, job_id
    # Chained: 2 tasks per slot; unchained: 4; each in a process of its own (lanes
    # 0 and 1 are the slots' own, the others started for the sharers).
    deployed: dict[str, list[tuple[int, int]]] = {}
    for job_id, slot, lane in re.findall(
        r"deploying (ss(?:-unchained)?)/\S+ in slot (\d) \(process (\d+)\)", worker.log()
    ):
        deployed.setdefault(job_id, []).append((int(slot), int(lane)))
    assert sorted(s for s, _ in deployed["ss"]) == [0, 0, 1, 1]
    assert sorted(s for s, _ in deployed["ss-unchained"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sorted(lane for _, lane in deployed["ss"]) == [0, 1, 2, 3]
    assert sorted(lane for _, lane in deployed["ss-unchained"]) == list(range(8))
