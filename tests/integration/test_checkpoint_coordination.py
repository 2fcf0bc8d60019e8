"""The real leader completes checkpoints of several subtasks: it records the
acknowledgements itself (issue 12, item 1), journals the subsumed state to
discard, notifies the tasks, and `jm status` shows the statistics (item 7).

The worker is a test process speaking the protocol over the real broker
(ProtocolWorker): it acknowledges every TriggerCheckpoint for each task of
the job it runs, as a worker whose barriers reached them would.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from schemas import events as ev
from schemas.catalog import Catalog
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
    until,
)
from tests.integration.test_cli_outcomes import jm

pytestmark = pytest.mark.integration


def completed(events: list[tuple[int, ev.Event]], job_id: str) -> list[ev.CheckpointCompleted]:
    return [e for _, e in events if isinstance(e, ev.CheckpointCompleted) and e.job_id == job_id]


async def test_the_leader_records_acks_and_completes_checkpoints_of_every_subtask(
    stack: Stack, catalog: Catalog
) -> None:
    leader = CoordinatorProcess(stack, catalog, "c1", "--allow-checkpointing")
    try:
        await leader.wait_for_line("role LEADER")
        async with (
            ProtocolWorker(stack, catalog, "tm-1", slots=3, acknowledge_checkpoints=True) as tm,
            Producer(stack, catalog) as client,
            Journal(stack, catalog) as journal,
        ):
            await journal.wait_until(lambda es: joined(es, "tm-1"))
            submitted = job_submitted("ckpt", parallelism=3)
            config = ev.CheckpointConfig(interval_ms=200, min_pause_ms=100)
            await client.send(ev.JobSubmitted(**{
                **{f: getattr(submitted, f) for f in submitted.__dataclass_fields__},
                "checkpoint_config": config,
            }))  # fmt: skip
            await journal.wait_until(lambda es: status_of(es, "ckpt") == ev.JobStatus.RUNNING)
            events = await journal.wait_until(
                lambda es: len(completed(es, "ckpt")) >= 3, seconds=60
            )
            done = completed(events, "ckpt")
            assert all(len(c.task_states) == 3 for c in done)
            assert {h.state_size for h in done[0].task_states} == {100, 101, 102}
            assert all(h.duration_ms == 2 and h.alignment_ms == 1 for h in done[0].task_states)
            # Retained 1: each completion subsumes the one before; its state is discarded.
            first = done[0]
            assert done[1].subsumed == (first.checkpoint_id,)
            discarded = [
                e for _, e in events
                if isinstance(e, ev.CheckpointStateDiscarded)
                and e.checkpoint_ids == (first.checkpoint_id,)
            ]  # fmt: skip
            assert len(discarded) == 1
            assert set(discarded[0].handles) == {h.state_handle for h in first.task_states}
            await until(
                lambda: any(isinstance(n, ev.NotifyCheckpointComplete) for n in tm.notified),
                "NotifyCheckpointComplete reaches the worker",
            )
            await client.send(ev.JobCancelRequested(
                event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="ckpt",
            ))  # fmt: skip
            events = await journal.wait_until(
                lambda es: status_of(es, "ckpt") == ev.JobStatus.CANCELED
            )
        # Retained on cancellation (the default): the latest completed checkpoint stays.
        last = completed(events, "ckpt")[-1].checkpoint_id
        assert not any(
            isinstance(e, ev.CheckpointStateDiscarded) and last in e.checkpoint_ids
            for _, e in events
        )
        out = await asyncio.to_thread(jm, stack, catalog, "status", "ckpt", "--json")
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout)["checkpoints"]
        assert stats["counts"]["completed"] == len(completed(events, "ckpt"))
        assert stats["counts"]["in_progress"] == 0
        assert stats["latest"]["completed"]["id"] == last
        assert stats["latest"]["completed"]["num_acknowledged_subtasks"] == 3
        assert stats["latest"]["completed"]["state_size"] == 303
        text = (await asyncio.to_thread(jm, stack, catalog, "status", "ckpt")).stdout
        assert f"latest completed #{last} COMPLETED" in text
    finally:
        leader.stop()
