"""The worker's report sender against the real broker: a refused report never stops it."""

from __future__ import annotations

import pytest

from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack, run_keys
from tests.worker.harness import Reports, now_ms
from worker.kafka import KafkaReports

pytestmark = pytest.mark.integration


def registered(tm_id: str, host: str) -> ev.TaskManagerRegistered:
    return ev.TaskManagerRegistered(
        event_id=f"reg-{len(host)}", event_time=now_ms(), tm_id=tm_id, incarnation="i",
        host=host, slots=1,
    )  # fmt: skip


async def test_a_report_kafka_refuses_is_dropped_and_counted_the_rest_go_out(
    stack: Stack, catalog: Catalog
) -> None:
    sender = KafkaReports(stack.bootstrap, catalog, run_keys())
    reader = Reports(stack.bootstrap, catalog, "tm-big")
    await sender.start()
    await reader.start()
    try:
        # Over the producer's 1 MiB: MessageSizeTooLargeError, which no retry mends.
        await sender.send([registered("tm-big", "h" * 2_000_000), registered("tm-big", "ok")])
        assert sender.dropped == 1
        sent = await reader.registration(host="ok")
        assert sent.event_id == "reg-2"
        await sender.send([registered("tm-big", "again")])  # and it goes on
        await reader.registration(host="again")
    finally:
        await reader.close()
        await sender.stop()
