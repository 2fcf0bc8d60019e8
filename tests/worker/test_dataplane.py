"""Multi-vertex jobs on real workers and a real broker: edges, markers, operators.

Each test deploys every subtask of a job itself, as the coordinator would
(``tests.worker.dataplane.Job``), waits for every task to report FINISHED and
checks what reached the sink topics and the edge topics.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import edges, kafkaio
from schemas.catalog import Catalog
from tests.conftest import Stack, TopicFactory
from tests.worker.conftest import StartCluster
from tests.worker.dataplane import Job, P, V, edge, read_topic
from tests.worker.harness import ES

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def delete_edge_topics(stack: Stack, catalog: Catalog) -> AsyncIterator[None]:
    """Delete the test's edge topics by prefix afterwards, as the coordinator will."""
    yield
    prefix = f"{catalog.prefix}.edge."  # every job's: edge_topic_prefix(catalog, job) is below
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            with contextlib.suppress(Exception):
                await admin.delete_topics(doomed)
    finally:
        await admin.close()


@pytest.mark.parametrize("count_parallelism", [2, 4])
async def test_keyed_count_across_two_workers(
    start_cluster: StartCluster,
    new_topic: TopicFactory,
    stack: Stack,
    catalog: Catalog,
    count_parallelism: int,
) -> None:
    n, keys = 2000, 7
    sink = await new_topic("counts", partitions=3)
    job = Job(
        vertices=[
            V("numbers", "sequence", 1, {"count": str(n)}),
            V("keyed", "map", 1, {"function": "mod_key", "n": str(keys)}),
            V("count", "keyed_count", count_parallelism),
            V("out", "kafka_sink", count_parallelism, {"topic": sink, "key_field": "key"}),
        ],
        edges=[
            edge("numbers", "keyed"),
            edge("keyed", "count", P.HASH, "key"),
            edge("count", "out"),
        ],
    )
    slots = 1 + count_parallelism  # 2 + 2 * parallelism tasks over two workers
    clusters = [await start_cluster(slots=slots), await start_cluster(slots=slots)]
    await job.deploy(clusters)
    await job.finished(within=60)
    assert {id(c) for c in job.placed.values()} == {id(c) for c in clusters}  # both ran tasks

    updates: dict[int, list[int]] = defaultdict(list)
    for records in (await read_topic(stack.bootstrap, sink, range(3))).values():
        for key, value, _ in records:
            assert key == str(value["key"]).encode()
            updates[value["key"]].append(value["count"])
    expected = Counter(v % keys for v in range(n))
    assert {k: counts[-1] for k, counts in updates.items()} == expected
    # Every update of a key, in order, exactly once: nothing lost or repeated.
    assert all(counts == list(range(1, expected[k] + 1)) for k, counts in updates.items())

    # The HASH edge: each key in the partition its hash picks, markers from the map.
    topic = edges.edge_topic(catalog, job.job_id, 0, "keyed", "count")
    by_partition = await read_topic(stack.bootstrap, topic, range(count_parallelism))
    for partition, records in by_partition.items():
        *data, end = records
        assert end[1] == b"" and edges.parse_edge_headers(end[2]).end
        for key, value, headers in data:
            assert edges.hash_partition(value["key"], count_parallelism) == partition
            assert key is None  # a batch's records have many keys: their partition says it
            origin = edges.parse_edge_headers(headers)
            assert (origin.vertex, origin.subtask, origin.attempt, origin.end, origin.batch) == (
                "keyed", 0, 0, False, True,
            )  # fmt: skip


async def test_broadcast_and_rebalance_fan_out(
    start_cluster: StartCluster, new_topic: TopicFactory, stack: Stack, catalog: Catalog
) -> None:
    n, width = 300, 3
    everywhere = await new_topic("broadcast", partitions=1)
    spread = await new_topic("rebalance", partitions=1)
    job = Job(
        vertices=[
            V("numbers", "sequence", 2, {"count": str(n)}),
            V("all", "kafka_sink", width, {"topic": everywhere}),
            V("some", "kafka_sink", width, {"topic": spread}),
        ],
        edges=[edge("numbers", "all", P.BROADCAST), edge("numbers", "some", P.REBALANCE)],
    )
    cluster = await start_cluster(slots=8)
    await job.deploy([cluster])
    await job.finished(within=60)

    # BROADCAST: each of the 3 sink subtasks received every record.
    (copies,) = (await read_topic(stack.bootstrap, everywhere, [0])).values()
    assert Counter(value["value"] for _, value, _ in copies) == {v: width for v in range(n)}
    topic = edges.edge_topic(catalog, job.job_id, 0, "numbers", "all")
    for records in (await read_topic(stack.bootstrap, topic, range(width))).values():
        data = [value["value"] for _, value, h in records if not edges.parse_edge_headers(h).end]
        assert sorted(data) == list(range(n))
        ends = sorted(edges.parse_edge_headers(h).subtask for _, _, h in records if _is_end(h))
        assert ends == [0, 1]  # one marker from each upstream subtask

    # REBALANCE: every record once, spread over every downstream subtask.
    (once,) = (await read_topic(stack.bootstrap, spread, [0])).values()
    assert sorted(value["value"] for _, value, _ in once) == list(range(n))
    topic = edges.edge_topic(catalog, job.job_id, 0, "numbers", "some")
    sizes = [
        sum(1 for _, _, h in records if not _is_end(h))
        for records in (await read_topic(stack.bootstrap, topic, range(width))).values()
    ]
    assert sum(sizes) == n
    assert min(sizes) >= n // width - 2  # round robin: as even as it gets


def _is_end(headers: list[tuple[str, bytes]]) -> bool:
    return edges.parse_edge_headers(headers).end


async def test_bounded_kafka_source_reads_every_record_once(
    start_cluster: StartCluster, new_topic: TopicFactory, stack: Stack
) -> None:
    source = await new_topic("input", partitions=3)
    sink = await new_topic("copy", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(600):
            await producer.send(source, f'{{"n": {i}}}'.encode(), partition=i % 3)
        await producer.send(source, b"not json", partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    job = Job(
        vertices=[
            V("read", "kafka_source", 2, {"topic": source, "bounded": "true"}),
            V("write", "kafka_sink", 2, {"topic": sink}),
        ],
        edges=[edge("read", "write")],
    )
    cluster = await start_cluster(slots=4)
    await job.deploy([cluster])
    await job.finished(within=60)
    values = [v for rs in (await read_topic(stack.bootstrap, sink, [0, 1])).values() for v in rs]
    numbers = sorted(value["n"] for _, value, _ in values if "n" in value)
    assert numbers == list(range(600))
    assert [value for _, value, _ in values if "n" not in value] == [{"value": "not json"}]


async def test_a_restart_reads_fresh_edges_and_ends_with_the_right_counts(
    start_cluster: StartCluster, new_topic: TopicFactory, stack: Stack, catalog: Catalog
) -> None:
    n, keys = 500, 5
    sink = await new_topic("counts", partitions=2)
    vertices = [
        V("numbers", "fault", 1, {"count": str(n), "fail_after": "300", "fail_attempts": "1"}),
        V("keyed", "map", 1, {"function": "mod_key", "n": str(keys)}),
        V("count", "keyed_count", 2),
        V("out", "kafka_sink", 2, {"topic": sink, "key_field": "key"}),
    ]
    edges_ = [
        edge("numbers", "keyed"),
        edge("keyed", "count", P.HASH, "key"),
        edge("count", "out"),
    ]
    cluster = await start_cluster(slots=6)
    first = Job(vertices, edges_)
    await first.deploy([cluster])
    (source,) = first.tasks("numbers")
    failed = await cluster.reports.state(source, ES.FAILED, within=30)
    assert failed.error_name == "InjectedFault"
    # The coordinator's full restart: cancel what still runs, redeploy all with attempt + 1.
    alive = [t for t in first.tasks() if t != source]
    await cluster.leader.send(*(cluster.leader.cancel(t) for t in alive))
    for task in alive:
        await cluster.reports.state(task, ES.CANCELED)
    second = Job(vertices, edges_, job_id=first.job_id, attempt=1)
    await second.deploy([cluster])
    await second.finished(within=60)

    last: dict[int, int] = {}
    for records in (await read_topic(stack.bootstrap, sink, range(2))).values():
        for _, value, _ in records:
            last[value["key"]] = value["count"]
    assert last == Counter(v % keys for v in range(n))
    old = edges.edge_topic(catalog, first.job_id, 0, "keyed", "count")
    new = edges.edge_topic(catalog, first.job_id, 1, "keyed", "count")
    assert old != new and new.startswith(edges.edge_topic_prefix(catalog, first.job_id))
    for records in (await read_topic(stack.bootstrap, new, range(2))).values():
        assert {edges.parse_edge_headers(h).attempt for _, _, h in records} == {1}
        assert sum(1 for _, _, h in records if _is_end(h)) == 1
    # The failed source never wrote an end-of-stream: nobody took its partial output for all.
    old = edges.edge_topic(catalog, first.job_id, 0, "numbers", "keyed")
    (partial,) = (await read_topic(stack.bootstrap, old, [0])).values()
    assert len(partial) <= 300
    assert not [h for _, _, h in partial if _is_end(h)]


async def test_a_million_records_keyed_counts_are_exact(
    start_cluster: StartCluster, new_topic: TopicFactory, stack: Stack
) -> None:
    """The issue's job at 1,000,000 records over two workers, edges in batches: the sink
    holds exactly one update per record, and every key's last update is its exact count.
    Over 60 s: 180 s in a run at load average 9-17 on the shared 2 cores (not a
    quiet-machine figure); the slowest test of this file."""
    n, keys, p = 1_000_000, 10, 2
    sink = await new_topic("million", partitions=p)
    job = Job(
        vertices=[
            V("numbers", "sequence", p, {"count": str(n)}),
            V("keyed", "map", p, {"function": "mod_key", "n": str(keys)}),
            V("count", "keyed_count", p),
            V("out", "kafka_sink", p, {"topic": sink, "key_field": "key"}),
        ],
        edges=[
            edge("numbers", "keyed"),
            edge("keyed", "count", P.HASH, "key"),
            edge("count", "out"),
        ],
    )
    clusters = [await start_cluster(slots=4), await start_cluster(slots=4)]
    await job.deploy(clusters)
    await job.finished(within=900)

    consumer = kafkaio.consumer(stack.bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(sink, i) for i in range(p)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        assert sum(ends.values()) == n  # one update per record: none lost, none repeated
        last: dict[int, int] = {}
        for tp in tps:  # a key's last update is its count: read back from the end
            wanted = {k for k in range(keys) if edges.hash_partition(k, p) == tp.partition}
            stop = ends[tp]
            while wanted - last.keys() and stop > 0:
                begin = max(0, stop - 20_000)
                consumer.seek(tp, begin)
                found: dict[int, int] = {}
                while await consumer.position(tp) < stop:
                    for r in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                        if r.offset < stop:
                            value = json.loads(r.value or b"{}")
                            found[value["key"]] = value["count"]  # in order: the last wins
                last |= {k: c for k, c in found.items() if k not in last}
                stop = begin
    finally:
        await consumer.stop()
    assert last == {k: n // keys for k in range(keys)}
