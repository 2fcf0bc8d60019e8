"""The TaskManager's report sender keeps going when a send fails (no processes, no Kafka:
a port that fails on purpose; the real adapter's refusals are tested against the broker
in test_kafka_reports.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError

from schemas import events as ev
from worker.operators.registry import OperatorRegistry
from worker.settings import WorkerSettings
from worker.taskmanager import TaskManager


class NoCommands:
    async def poll(self, timeout_ms: int) -> list[ev.WorkerCommand]:
        await asyncio.sleep(timeout_ms / 1000)
        return []


class FlakyReports:
    """Fails the first `failures` sends with a retriable Kafka error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[ev.WorkerReport] = []
        self.changed = asyncio.Event()

    async def send(self, events: Sequence[ev.WorkerReport]) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker gone for a moment")
        self.sent.extend(events)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()


def deregistered(n: int) -> ev.TaskManagerDeregistered:
    return ev.TaskManagerDeregistered(event_id=f"r{n}", event_time=0, tm_id="tm", incarnation="i")


def heartbeat(n: int) -> ev.TaskManagerHeartbeat:
    return ev.TaskManagerHeartbeat(
        event_id=f"h{n}", event_time=0, tm_id="tm", incarnation="i", sequence=n,
        slots_free=1, running_tasks=0, last_seen_epoch=0,
    )  # fmt: skip


async def test_a_failed_send_is_retried_in_order_and_the_sender_lives_on() -> None:
    reports = FlakyReports(failures=2)
    manager = TaskManager(
        WorkerSettings(tm_id="tm", slots=1), OperatorRegistry.builtin(), NoCommands(), reports
    )
    sender = asyncio.create_task(manager._send_reports())
    try:
        for event in (deregistered(1), heartbeat(1), deregistered(2)):
            manager._report(event)
        await reports.wait_for(2)
        manager._report(deregistered(3))
        await reports.wait_for(3)
        # Reports again in their order; the heartbeat was not worth resending.
        assert [e.event_id for e in reports.sent] == ["r1", "r2", "r3"]
        assert manager.send_failures == 2
        assert not sender.done()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
