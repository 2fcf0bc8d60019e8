"""`jm` tells the outcome: real `jm` processes against a real coordinator and worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import MAGIC
from tests.conftest import Stack
from tests.integration.harness import (
    Cluster,
    CoordinatorProcess,
    Journal,
    Producer,
    job_submitted,
    joined,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

SEQUENCE = """name: {name}
vertices:
  - {{id: numbers, operator: sequence, parallelism: 1, config: {{count: {count}}}}}
restart_strategy: {{kind: NONE}}
"""
NO_SUCH_FUNCTION = """name: typo
vertices:
  - {id: numbers, operator: sequence, parallelism: 1, config: {count: 10}}
  - {id: double, operator: map, parallelism: 1, config: {function: no_such_function}}
edges:
  - {source: numbers, target: double}
restart_strategy: {kind: NONE}
"""


def jm(stack: Stack, catalog: Catalog, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap, REDIS_URL=stack.redis_url,
               JM_CLUSTER_ID=catalog.cluster_id)  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def job_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"job-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return str(path)


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


async def test_submit_cancel_and_status_say_what_the_coordinator_decided(
    stack: Stack, catalog: Catalog, cluster: Cluster, tmp_path: Path
) -> None:
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    async with Journal(stack, catalog) as journal:
        await journal.wait_until(lambda es: joined(es, "tm-1"), seconds=60)
    short = job_file(tmp_path, SEQUENCE.format(name="ten", count=10))

    # Accepted, then followed to its end.
    done = jm(stack, catalog, "submit", short, "--job-id", "ok-1", "--wait", "FINISHED")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok-1", "FINISHED"]
    assert "accepted ok-1" in done.stderr

    # The same id again: the coordinator refuses it, and jm says why (exit 1).
    again = jm(stack, catalog, "submit", short, "--job-id", "ok-1")
    assert again.returncode == 1, again.stderr
    assert "ok-1 already ran and ended: FINISHED" in again.stderr
    assert "a job id is never run twice" in again.stderr
    no_traceback(again)

    # Cancelling an ended job: answered at once (1, not the timeout's 3), saying its state.
    ended = jm(stack, catalog, "cancel", "ok-1", "--wait")
    assert ended.returncode == 1, ended.stderr
    assert "ok-1 already ended: FINISHED" in ended.stderr
    assert "nothing was done" in ended.stderr
    unknown = jm(stack, catalog, "cancel", "never-was")
    assert unknown.returncode == 1, unknown.stderr
    assert "no job never-was: none was accepted under this id" in unknown.stderr

    # A running job is cancelled: the answer first, then CANCELED with --wait.
    forever = job_file(tmp_path, SEQUENCE.format(name="forever", count=0))
    running = jm(stack, catalog, "submit", forever, "--job-id", "run-1", "--wait", "RUNNING")
    assert running.returncode == 0, running.stderr
    # Sent again as is: the leader consumes it and journals nothing; jm says so.
    twice = jm(stack, catalog, "submit", forever, "--job-id", "run-1", "--wait", "RUNNING")
    assert twice.returncode == 0, twice.stderr
    assert "already submitted with the same content" in twice.stderr
    assert twice.stdout.split() == ["run-1", "RUNNING"]
    cancel = jm(stack, catalog, "cancel", "run-1", "--wait")
    assert cancel.returncode == 0, cancel.stderr
    assert "cancelling run-1" in cancel.stderr
    assert cancel.stdout.strip() == "CANCELED"

    # A failed task's own message in jm status, not a cut traceback.
    typo = job_file(tmp_path, NO_SUCH_FUNCTION)
    failed = jm(stack, catalog, "submit", typo, "--job-id", "typo-1", "--wait", "FAILED")
    assert failed.returncode == 0, failed.stderr
    status = jm(stack, catalog, "status", "typo-1")
    assert status.returncode == 0, status.stderr
    # numbers -> double is one chained task: its failure is reported for both subtasks.
    [line] = [x for x in status.stdout.splitlines() if "no_such_function" in x and "double[0]" in x]
    assert "no function named 'no_such_function' on this worker (it offers " in line
    assert "Traceback" not in status.stdout

    # A rejected job (sent by an outside client, so jm could not check it first).
    bad = job_submitted("bad-1", parallelism=0)
    async with Producer(stack, catalog) as client, Journal(stack, catalog) as journal:
        await client.send(bad)
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.JobRejected) and e.job_id == "bad-1" for _, e in es)
        )
    rejected = jm(stack, catalog, "status", "bad-1")
    assert rejected.returncode == 0, rejected.stderr
    assert "status   REJECTED" in rejected.stdout
    assert "    - vertices[0].parallelism" in rejected.stdout
    assert jm(stack, catalog, "status", "never-was").returncode == 1


async def test_no_leader_is_said_plainly(stack: Stack, catalog: Catalog, tmp_path: Path) -> None:
    short = job_file(tmp_path, SEQUENCE.format(name="ten", count=10))
    done = jm(stack, catalog, "submit", short, "--job-id", "lonely", "--timeout", "2")
    assert done.returncode == 3, done.stderr
    assert "no leader answered within 2s" in done.stderr
    assert f"cluster {catalog.cluster_id!r}" in done.stderr
    no_traceback(done)
    sent = jm(stack, catalog, "submit", short, "--job-id", "lonely-2", "--no-wait")
    assert sent.returncode == 0 and sent.stdout.strip() == "lonely-2", sent.stderr


@pytest.mark.parametrize("command", [["list"], ["replay", "--until", "15m"], ["state", "digest"]])
def test_a_cluster_id_without_a_journal_is_said_at_once(
    stack: Stack, catalog: Catalog, command: list[str]
) -> None:
    """Offset lookups of a missing topic wait out the 40 s request timeout and failed as
    a Kafka timeout (exit 4); the follower now looks for the topic first."""
    wrong = Catalog(f"no-such-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    done = jm(stack, wrong, *command, "--insecure-unsigned")
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"jm: Kafka has no journal topic {wrong.journal.name!r}: is the cluster id "
        f"{wrong.cluster_id!r} right (--cluster-id, $JM_CLUSTER_ID), and were its topics "
        "created (jm topics create)?"
    ]


@pytest.mark.parametrize("command", [["list"], ["submit", "JOB"], ["cancel", "x"]])
def test_unreachable_kafka_is_one_line_and_exit_4(
    stack: Stack, catalog: Catalog, tmp_path: Path, command: list[str]
) -> None:
    job = job_file(tmp_path, SEQUENCE.format(name="ten", count=10))
    args = [job if a == "JOB" else a for a in command]
    done = jm(stack, catalog, *args, "--bootstrap-servers", "127.0.0.1:1")
    assert done.returncode == 4
    assert done.stderr.splitlines() == [
        "jm: cannot reach Kafka at 127.0.0.1:1 (is it running? check --bootstrap-servers "
        "or $KAFKA_BOOTSTRAP_SERVERS)"
    ]


def test_a_job_file_that_is_not_utf8_is_refused(
    stack: Stack, catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    done = jm(stack, catalog, "submit", str(path))
    assert done.returncode == 1
    assert f"{path}:1:10: not UTF-8 text (byte 0xe9)" in done.stderr
    no_traceback(done)


async def test_a_replica_stops_with_one_line_at_a_record_it_cannot_follow(
    stack: Stack, catalog: Catalog
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:  # the single-object encoding with a fingerprint of no version known here
        await producer.send_and_wait(catalog.journal.name, MAGIC + b"\x01" * 8 + b"\x00")
    finally:
        await producer.stop()
    replica = CoordinatorProcess(stack, catalog, "c-stuck")
    try:
        assert replica.proc.wait(timeout=60) == 1
        out = replica.output()
    finally:
        replica.stop()
    assert "jm: coordinator c-stuck stopped: journal record at offset 0 has a schema version" in out
    assert "Traceback" not in out
