"""Savepoints through the real coordinator and a real worker (directory state store):
stop with savepoint writes a savepoint directory and ends the job FINISHED, a job
resubmitted from it restores its state, a missing savepoint is a rejection."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of
from tests.integration.test_checkpoint_tasks import submitted, vertex

pytestmark = pytest.mark.integration


async def test_stop_with_savepoint_then_resume_from_it(cluster: Cluster, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'state'}"
    await cluster.coordinator(
        "c1", "--allow-checkpointing", "--state-checkpoints-dir", store
    ).wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 2, "--state-checkpoints-dir", store)
    total = 3_000
    source = vertex("numbers", "sequence", count=str(total), rate="200")
    first = submitted("sp-first", (source,), (), attempts=0)
    target = tmp_path / "savepoints"
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(first)
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.CheckpointCompleted) for _, e in es), seconds=60
        )
        stop = ev.StopWithSavepointRequested(
            event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="sp-first",
            target_directory=str(target),
        )  # fmt: skip
        await client.send(stop)
        events = await journal.wait_until(
            lambda es: status_of(es, "sp-first") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=60,
        )
        assert status_of(events, "sp-first") == ev.JobStatus.FINISHED
        (done,) = [e for _, e in events if isinstance(e, ev.SavepointCompleted)]
        assert done.request_event_id == stop.event_id
        path = Path(done.savepoint_path)
        assert path.parent == target and (path / "_metadata").is_file()

        missing = dataclass_replace(first, "sp-missing", str(tmp_path / "nope"))
        await client.send(missing)
        resumed = dataclass_replace(first, "sp-resumed", str(path))
        await client.send(resumed)
        events = await journal.wait_until(
            lambda es: status_of(es, "sp-resumed") in {ev.JobStatus.FINISHED, ev.JobStatus.FAILED},
            seconds=90,
        )
    assert status_of(events, "sp-resumed") == ev.JobStatus.FINISHED
    (rejected,) = [e for _, e in events if isinstance(e, ev.JobRejected)
                   and e.job_id == "sp-missing"]  # fmt: skip
    assert "savepoint" in rejected.reason and "does not exist" in rejected.reason
    log = worker.log()
    assert re.search(r"restored checkpoint 0 from savepoint:", log), log[-3000:]
    finished = re.findall(r"sp-resumed/numbers\[0\]#0.*finished: (\d+) records", log)
    assert finished, log[-3000:]
    assert 0 < int(finished[0]) < total  # continued from the saved position
    # Discarded (subsumed) checkpoint state is gone from the store: at most the
    # retained checkpoint of each job is left.
    chk_dirs = list((tmp_path / "state").glob("*/sp-first/chk-*"))
    assert len(chk_dirs) <= 2, chk_dirs


def dataclass_replace(job: ev.JobSubmitted, job_id: str, savepoint: str) -> ev.JobSubmitted:
    import dataclasses

    return dataclasses.replace(
        job, event_id=uuid.uuid4().hex, job_id=job_id, name=job_id, savepoint_path=savepoint
    )
