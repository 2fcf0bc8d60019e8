"""A keyed counting job with an exactly-once Kafka sink, end to end on the real
coordinator (``--allow-checkpointing``) and a real worker: checkpoints complete,
the sink commits on their NotifyCheckpointComplete and at the end of input, and a
read_committed consumer of the sink topic sees every key's counts 1..N exactly once.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections import defaultdict
from typing import Any

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of, until
from tests.integration.test_checkpoint_tasks import vertex
from tests.worker.dataplane import read_topic

pytestmark = pytest.mark.integration
P = ev.Partitioning


def eos_job(topic: str, total: int, keys: int, rate: int = 800) -> ev.JobSubmitted:
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="eos", name="eos",
        job_graph=ev.JobGraph(
            vertices=(
                vertex("numbers", "sequence", 2, count=str(total), rate=str(rate)),
                vertex("keyed", "map", 2, function="mod_key", n=str(keys)),
                vertex("count", "keyed_count", 2, key_field="key"),
                vertex("out", "kafka_sink", 2, topic=topic, partitions="2", key_field="key",
                       delivery="exactly_once"),
            ),
            edges=(
                ev.Edge(source="numbers", target="keyed", partitioning=P.FORWARD),
                ev.Edge(source="keyed", target="count", partitioning=P.HASH, key_field="key"),
                ev.Edge(source="count", target="out", partitioning=P.FORWARD),
            ),
        ),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=3, delay_ms=200),
        checkpoint_config=ev.CheckpointConfig(interval_ms=400, timeout_ms=10_000,
                                              tolerable_failures=1_000),
    )  # fmt: skip


def committed_counts(
    records: dict[int, list[tuple[bytes | None, Any, Any]]],
) -> dict[int, list[int]]:
    counts: dict[int, list[int]] = defaultdict(list)
    for partition in records.values():
        for _, value, _ in partition:
            counts[value["key"]].append(value["count"])
    return counts


async def test_keyed_count_into_an_exactly_once_sink(cluster: Cluster) -> None:
    await cluster.coordinator("c1", "--allow-checkpointing").wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 8)
    total, keys = 6000, 5
    topic = f"counts-{uuid.uuid4().hex[:8]}"
    job = eos_job(topic, total, keys)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job)
        events = await journal.wait_until(
            lambda es: status_of(es, "eos") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=180,
        )
    assert status_of(events, "eos") == ev.JobStatus.FINISHED
    assert any(isinstance(e, ev.CheckpointCompleted) for _, e in events)
    log = worker.log()
    # Commits came both on checkpoint notifications and at the end of input.
    assert re.search(r"committed \d+ record\(s\) of checkpoint\(s\) \[\d", log), log[-3000:]
    assert "and the end of input" in log, log[-3000:]
    assert "Traceback" not in log

    counts = committed_counts(await read_topic(cluster.stack.bootstrap, topic, [0, 1]))
    assert sorted(counts) == list(range(keys))
    for key, seen in counts.items():
        # Per key one counter subtask and one sink partition: updates in order,
        # no gap, no repeat.
        assert seen == list(range(1, total // keys + 1)), (key, seen[:20], len(seen))


async def test_a_worker_killed_mid_job_leaves_the_committed_counts_exact(cluster: Cluster) -> None:
    """kill -9 of the worker running the sinks after two checkpoints completed: the job
    restarts on the other worker from the latest checkpoint; the committed output is
    still every count exactly once."""
    await cluster.coordinator("c1", "--allow-checkpointing").wait_for_line("role LEADER")
    workers = {tm: cluster.worker(tm, 8) for tm in ("tm-1", "tm-2")}
    total, keys = 12000, 4  # 40 s at 150 records/s per source subtask
    topic = f"counts-{uuid.uuid4().hex[:8]}"
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(eos_job(topic, total, keys, rate=150))

        def completed(es: list[tuple[int, ev.Event]]) -> int:
            return sum(isinstance(e, ev.CheckpointCompleted) for _, e in es)

        await journal.wait_until(lambda es: completed(es) >= 2, seconds=120)
        sinks = [w for w in workers.values() if "eos/out[" in w.log()]
        await until(
            lambda: any("exactly-once sink: committed" in w.log() for w in sinks),
            "a sink commit",
            seconds=60,
        )
        sinks[0].signal(signal.SIGKILL)
        events = await journal.wait_until(
            lambda es: status_of(es, "eos") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=240,
        )
    assert status_of(events, "eos") == ev.JobStatus.FINISHED
    assert any(isinstance(e, ev.RestartScheduled) for _, e in events)
    logs = "".join(w.log() for w in workers.values())
    assert re.search(r"restored checkpoint \d+ from kafka:", logs), logs[-3000:]
    counts = committed_counts(await read_topic(cluster.stack.bootstrap, topic, [0, 1]))
    assert sorted(counts) == list(range(keys))
    for key, seen in counts.items():
        assert seen == list(range(1, total // keys + 1)), (key, seen[:20], len(seen))
