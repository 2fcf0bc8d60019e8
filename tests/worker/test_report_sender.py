"""The TaskManager's report sender keeps going when a send fails, and sends a starting
task's reports together with its RUNNING (no processes, no Kafka: a port that fails on
purpose; the real adapter's refusals are tested against the broker in
test_kafka_reports.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka.errors import KafkaConnectionError

from schemas import events as ev
from worker import taskmanager
from worker.operators.registry import OperatorRegistry
from worker.settings import WorkerSettings
from worker.taskmanager import TaskManager

ES = ev.ExecutionState


class NoCommands:
    async def poll(self, timeout_ms: int) -> list[ev.WorkerCommand]:
        await asyncio.sleep(timeout_ms / 1000)
        return []


class FlakyReports:
    """Fails the first `failures` sends with a retriable Kafka error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[ev.WorkerReport] = []
        self.batches: list[list[str]] = []  # event ids, one list per send
        self.changed = asyncio.Event()

    async def send(self, events: Sequence[ev.WorkerReport]) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker gone for a moment")
        self.sent.extend(events)
        self.batches.append([e.event_id for e in events])
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


@contextlib.asynccontextmanager
async def sending(
    reports: FlakyReports,
) -> AsyncIterator[tuple[TaskManager, asyncio.Task[None]]]:
    """A TaskManager whose report sender runs (and is stopped afterwards), and that sender."""
    manager = TaskManager(
        WorkerSettings(tm_id="tm", slots=1), OperatorRegistry.builtin(), NoCommands(), reports
    )
    sender = asyncio.create_task(manager._send_reports())
    try:
        yield manager, sender
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def test_a_failed_send_is_retried_in_order_and_the_sender_lives_on() -> None:
    reports = FlakyReports(failures=2)
    async with sending(reports) as (manager, sender):
        for event in (deregistered(1), heartbeat(1), deregistered(2)):
            manager._report(event)
        await reports.wait_for(2)
        manager._report(deregistered(3))
        await reports.wait_for(3)
        # Reports again in their order; the heartbeat was not worth resending.
        assert [e.event_id for e in reports.sent] == ["r1", "r2", "r3"]
        assert manager.send_failures == 2
        assert not sender.done()


def state(n: int, task: ev.TaskRef, to: ev.ExecutionState) -> ev.TaskStateChanged:
    return ev.TaskStateChanged(
        event_id=f"s{n}", event_time=0, tm_id="tm", incarnation="i", task=task, state=to
    )


TASK = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=0, attempt=0)


async def test_a_starting_tasks_reports_wait_for_its_running_and_go_in_one_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(taskmanager, "REPORT_HOLD_STARTING_S", 10.0)  # never the limit here
    reports = FlakyReports(failures=0)
    async with sending(reports) as (manager, _):
        manager._report(state(1, TASK, ES.DEPLOYING))
        await asyncio.sleep(0.05)  # well past the 2 ms gathering
        manager._report(state(2, TASK, ES.INITIALIZING))
        await asyncio.sleep(0.05)
        assert reports.batches == []
        manager._report(state(3, TASK, ES.RUNNING))
        await reports.wait_for(3)
    assert reports.batches == [["s1", "s2", "s3"]]


async def test_a_task_that_stays_initializing_has_its_reports_sent_after_the_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(taskmanager, "REPORT_HOLD_STARTING_S", 0.05)
    reports = FlakyReports(failures=0)
    async with sending(reports) as (manager, _):
        manager._report(state(1, TASK, ES.DEPLOYING))
        manager._report(state(2, TASK, ES.INITIALIZING))
        await reports.wait_for(2)  # within 5 s, with no RUNNING
        manager._report(state(3, TASK, ES.RUNNING))
        await reports.wait_for(3)
    assert reports.batches == [["s1", "s2"], ["s3"]]
