"""Inputs over the limits against a real leader: each known trigger of an oversized
derived record is rejected with a reason, a valid job after it still runs, and the
epoch never changes; a finished, archived job id is not run again."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from schemas import events as ev
from schemas import limits as lim
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.conftest import Stack
from tests.integration.harness import (
    CoordinatorProcess,
    Journal,
    Producer,
    ProtocolWorker,
    job_submitted,
    joined,
    now_ms,
    status_of,
)
from tests.oversized import deep_graph, wide_graph

pytestmark = pytest.mark.integration


async def _send_bare(client: Producer, catalog: Catalog, event: ev.Event) -> None:
    """Send without the informative id headers (a huge id would not fit them too)."""
    value, headers = default_codec().encode(event)
    bare = [(k, v) for k, v in headers if k not in ("event-id", "job-id", "tm-id")]
    spec, key = catalog.topic_for(type(event)), catalog.key_for(event)
    bare = client.keys.sign(spec.role, spec.name, key, value, bare)
    await client.producer.send_and_wait(spec.name, value, key=key, headers=bare)


def _rejections(events: list[tuple[int, ev.Event]]) -> list[ev.JobRejected | ev.InputRejected]:
    return [e for _, e in events if isinstance(e, (ev.JobRejected, ev.InputRejected))]


def _triggers() -> list[ev.Event]:
    def job(job_id: str, graph: ev.JobGraph) -> ev.JobSubmitted:
        return ev.JobSubmitted(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            job_id=job_id,
            name="big",
            job_graph=graph,
        )

    small = (ev.Vertex(id="src", name="v", operator="sequence"),)
    return [
        job("wide", wide_graph("sequence")),
        job("j" * 100, deep_graph("sequence")),
        job("a" * 300_000, ev.JobGraph(vertices=small)),
        ev.JobCancelRequested(event_id="e" * 600_000, event_time=now_ms(), job_id="ok-0"),
        ev.TaskManagerRegistered(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            tm_id="greedy",
            incarnation="x",
            host="h",
            slots=2**62,
        ),
    ]


async def test_each_trigger_is_rejected_and_the_next_job_runs_in_the_same_epoch(
    stack: Stack, catalog: Catalog
) -> None:
    leader = CoordinatorProcess(stack, catalog, "limits-1")
    try:
        await leader.wait_for_line("role LEADER")
        async with (
            ProtocolWorker(stack, catalog, "tm-1", slots=8) as _tm,
            Producer(stack, catalog) as client,
            Journal(stack, catalog) as journal,
        ):
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            await client.send(job_submitted("ok-0", parallelism=1))
            await journal.wait_until(lambda es: status_of(es, "ok-0") == ev.JobStatus.RUNNING)
            for n, trigger in enumerate(_triggers(), start=1):
                await _send_bare(client, catalog, trigger)
                await client.send(job_submitted(f"ok-{n}", parallelism=1))
                job_id = f"ok-{n}"

                def running(es: list[tuple[int, ev.Event]], job_id: str = job_id) -> bool:
                    return status_of(es, job_id) == ev.JobStatus.RUNNING

                await journal.wait_until(running)
                assert len(_rejections(journal.events)) == n, _rejections(journal.events)
            rejections = _rejections(journal.events)
            for rejected in rejections:
                assert lim.utf8_len(rejected.reason) <= lim.MAX_REJECTION_REASON_BYTES
            reasons = [r.reason for r in rejections]
            assert "40960 subtasks" in reasons[0] and "32768 subtasks" in reasons[1]
            assert "job_id: 300000 bytes" in reasons[2]
            assert "event_id: 600000 bytes" in reasons[3]
            assert "slots: must be between 0 and 256" in reasons[4]
            elected = [e for _, e in journal.events if isinstance(e, ev.LeaderElected)]
            assert [e.epoch for e in elected] == [1]
            assert leader.proc.poll() is None
    finally:
        leader.stop()


async def test_a_finished_archived_job_is_not_run_again(stack: Stack, catalog: Catalog) -> None:
    leader = CoordinatorProcess(stack, catalog, "ended-1", "--archive-after-ms", "300")
    try:
        await leader.wait_for_line("role LEADER")
        async with (
            ProtocolWorker(stack, catalog, "tm-1", slots=2, finish_after_s=0.2) as _tm,
            Producer(stack, catalog) as client,
            Journal(stack, catalog) as journal,
        ):
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            first = job_submitted("once", parallelism=1)
            await client.send(first)
            await journal.wait_until(
                lambda es: any(isinstance(e, ev.JobArchived) and e.job_id == "once" for _, e in es)
            )
            late = dataclasses.replace(first, event_id=uuid.uuid4().hex)
            await client.send(late)
            events = await journal.wait_until(
                lambda es: any(isinstance(e, ev.JobRejected) for _, e in es)
            )
            (rejected,) = [e for _, e in events if isinstance(e, ev.JobRejected)]
            assert rejected.input_event_id == late.event_id
            assert "already ran and ended: FINISHED" in rejected.reason
            accepted = [e for _, e in events if isinstance(e, ev.JobAccepted)]
            assert len(accepted) == 1
    finally:
        leader.stop()
