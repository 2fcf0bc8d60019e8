"""Savepoints through the real coordinator and a real worker (directory state store):
stop with savepoint writes a savepoint directory and ends the job FINISHED, a job
resubmitted from it restores its state, a missing savepoint is a rejection; the
README's savepoint commands run as written; the leader deletes discarded state."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of
from tests.integration.test_checkpoint_tasks import submitted, vertex

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


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


def dataclass_replace(job: ev.JobSubmitted, job_id: str, savepoint: str) -> ev.JobSubmitted:
    import dataclasses

    return dataclasses.replace(
        job, event_id=uuid.uuid4().hex, job_id=job_id, name=job_id, savepoint_path=savepoint
    )


def readme_savepoint_commands() -> list[list[str]]:
    """The README's savepoint commands (section "Savepoints"), as argv after `jm`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Savepoints") :]
    block = section[section.index("```sh") + 5 : section.index("```", section.index("```sh") + 5)]
    lines = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert all(line.startswith(".venv/bin/jm ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def jm(cluster: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=cluster.stack.bootstrap,
        REDIS_URL=cluster.stack.redis_url,
        JM_CLUSTER_ID=cluster.catalog.cluster_id,
    )
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False,
    )  # fmt: skip


JOB_FILE = """\
job_id: {job_id}
name: savepoint example
vertices:
  - {{id: numbers, operator: sequence, parallelism: 2, config: {{count: 40000, rate: 100}}}}
  - {{id: keyed, operator: map, parallelism: 2, config: {{function: mod_key, n: 5}}}}
  - {{id: count, operator: keyed_count, parallelism: 2, config: {{key_field: key}}}}
edges:
  - {{source: numbers, target: keyed, partitioning: FORWARD}}
  - {{source: keyed, target: count, partitioning: HASH, key_field: key}}
"""


async def test_readme_savepoint_commands_run_as_written(cluster: Cluster, tmp_path: Path) -> None:
    """`jm savepoint`, `jm stop --savepoint`, `jm submit --from-savepoint` as the README
    writes them (JOB, JOB_FILE, /tmp/savepoints and SAVEPOINT_PATH filled in)."""
    store = f"file://{tmp_path / 'state'}"
    await cluster.coordinator(
        "c1", "--allow-checkpointing", "--state-checkpoints-dir", store
    ).wait_for_line("role LEADER")
    worker = cluster.worker("tm-1", 6, "--state-checkpoints-dir", store)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(JOB_FILE.format(job_id="sp-cli"))
    targets = tmp_path / "savepoints"
    fill = {"JOB": "sp-cli", "JOB-2": "sp-cli-2", "JOB_FILE": str(job_file),
            "/tmp/savepoints": str(targets)}  # fmt: skip
    savepoint_cmd, stop_cmd, submit_cmd = readme_savepoint_commands()
    async with Journal(cluster.stack, cluster.catalog) as journal:
        await journal.wait_until(lambda es: joined(es, "tm-1"))
    done = await asyncio.to_thread(jm, cluster, "submit", str(job_file), "--wait", "RUNNING")
    assert done.returncode == 0, done.stderr

    done = await asyncio.to_thread(jm, cluster, *[fill.get(a, a) for a in savepoint_cmd])
    assert done.returncode == 0, done.stderr
    taken = Path(done.stdout.strip())
    assert taken.parent == targets and (taken / "_metadata").is_file()

    done = await asyncio.to_thread(jm, cluster, *[fill.get(a, a) for a in stop_cmd])
    assert done.returncode == 0, done.stderr
    path, status = done.stdout.split()
    assert status == "FINISHED" and (Path(path) / "_metadata").is_file() and path != str(taken)

    fill["SAVEPOINT_PATH"] = path
    done = await asyncio.to_thread(jm, cluster, *[fill.get(a, a) for a in submit_cmd],
                                   "--wait", "RUNNING")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "RUNNING"
    # Every subtask of the resumed job restored its state from the savepoint's files.
    restored = r"sp-cli-2/(\w+)\[(\d)\]#0.*restored checkpoint 0 from savepoint:" + re.escape(path)
    deadline = asyncio.get_running_loop().time() + 60
    while len(set(re.findall(restored, worker.log()))) < 6:
        assert asyncio.get_running_loop().time() < deadline, worker.log()[-3000:]
        await asyncio.sleep(0.5)
    done = await asyncio.to_thread(jm, cluster, "cancel", "sp-cli-2", "--wait")
    assert done.returncode == 0, done.stderr

    fill["SAVEPOINT_PATH"] = str(tmp_path / "no-such-savepoint")
    fill["JOB-2"] = "sp-cli-3"
    done = await asyncio.to_thread(jm, cluster, *[fill.get(a, a) for a in submit_cmd])
    assert done.returncode == 1
    assert "cannot restore from savepoint" in done.stderr and "does not exist" in done.stderr

    done = await asyncio.to_thread(jm, cluster, "savepoint", "sp-cli")  # FINISHED: refused
    assert done.returncode == 1 and "not RUNNING" in done.stderr, done.stderr


async def test_the_leader_deletes_discarded_checkpoint_state(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Subsumed checkpoints' files leave the directory store once their
    CheckpointStateDiscarded is committed."""
    root = tmp_path / "state"
    store = f"file://{root}"
    await cluster.coordinator(
        "c1", "--allow-checkpointing", "--state-checkpoints-dir", store
    ).wait_for_line("role LEADER")
    cluster.worker("tm-1", 2, "--state-checkpoints-dir", store)
    source = vertex("numbers", "sequence", count="0", rate="50")  # unbounded
    job = submitted("discard", (source,), (), attempts=0)
    base = root / cluster.catalog.cluster_id

    def file_of(handle: str) -> Path:
        assert handle.startswith("dir:"), handle
        return base / handle.removeprefix("dir:")

    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        await client.send(job)
        events = await journal.wait_until(
            lambda es: sum(isinstance(e, ev.CheckpointStateDiscarded) for _, e in es) >= 3,
            seconds=90,
        )
        discarded = [e for _, e in events if isinstance(e, ev.CheckpointStateDiscarded)]
        completed = [e for _, e in events if isinstance(e, ev.CheckpointCompleted)]
        gone = [file_of(h) for e in discarded for h in e.handles]
        assert gone and all(e.reason.startswith("subsumed") for e in discarded[:3])
        deadline = asyncio.get_running_loop().time() + 30
        while any(p.exists() for p in gone):
            assert asyncio.get_running_loop().time() < deadline, [p for p in gone if p.exists()]
            await asyncio.sleep(0.2)
        # Only what was discarded went: the first completed checkpoint was subsumed.
        assert completed[0].checkpoint_id in discarded[0].checkpoint_ids
        await client.send(
            ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=now_ms(),
                                  job_id="discard")
        )  # fmt: skip
        await journal.wait_until(
            lambda es: status_of(es, "discard") == ev.JobStatus.CANCELED, seconds=60
        )
