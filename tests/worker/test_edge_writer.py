"""worker.edges.EdgeWriter's partition choice on a HASH edge (its producer connects to
the real broker; nothing is sent: the batches stay pending)."""

from __future__ import annotations

from schemas import edges
from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack
from worker.edges import EdgeWriter
from worker.operators.api import KafkaEnv, TaskSpec


async def test_a_key_goes_to_its_own_partition_also_after_an_equal_one(stack: Stack) -> None:
    """True == 1 == 1.0 as dict keys, but their key strings ("true", "1", "1.0") hash
    apart: the writer's memory of partitions must not send one where the other went."""
    keys = [1, True, 1.0, "1"]
    n = next(n for n in range(2, 20) if len({edges.hash_partition(k, n) for k in keys[:3]}) > 1)
    task = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=0, attempt=0)
    edge = ev.Edge(source="v", target="d", partitioning=ev.Partitioning.HASH, key_field="k")
    spec = TaskSpec(task=task, operator="map", vertex_name="v", parallelism=1,
                    max_parallelism=8, outputs=(edge,), vertex_parallelism={"d": n})  # fmt: skip
    writer = EdgeWriter(KafkaEnv(stack.bootstrap, Catalog("edgetest")), spec,
                        batch_records=10**6, linger_ms=600_000)  # fmt: skip
    await writer.start()
    try:
        await writer.emit_batch([{"k": k, "i": i} for i, k in enumerate(keys * 2)])
        pending = writer._channels[0].pending
        placed = {p: [r["i"] for r in queue] for p, queue in enumerate(pending) if queue}
    finally:
        await writer.close()
    expected: dict[int, list[int]] = {}
    for i, k in enumerate(keys * 2):
        expected.setdefault(edges.hash_partition(k, n), []).append(i)
    assert placed == expected
