"""Signed records (issue 14, item 3), against real coordinator and worker processes:
the forgeries an outsider on an open broker could write are refused, and keys rotate.

Every process of the test run signs with the run's key file (tests/conftest.py); a
forger here is a test producer holding no key, or the wrong one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import pytest

from coordinator.commands.replica import replica_alerts
from coordinator.drill import decided
from coordinator.runtime import machine
from schemas import events as ev
from schemas import kafkaio, signing
from schemas.codec import default_codec
from schemas.signing import KeyRing
from tests.integration.harness import (
    REPO,
    Cluster,
    Journal,
    Producer,
    both_report_foreign_records,
    job_submitted,
    joined,
    now_ms,
    status_of,
)
from tests.integration.test_jobs import all_running, attempts, job, running_on

pytestmark = pytest.mark.integration


def all_decided(ids: set[str], events: list[tuple[int, ev.Event]]) -> bool:
    return ids <= set(decided(events))


def jm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    stack, cluster_id = cluster.stack, cluster.catalog.cluster_id
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap, REDIS_URL=stack.redis_url,
               JM_CLUSTER_ID=cluster_id)  # fmt: skip
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120, check=False)  # fmt: skip


async def dead_letters(cluster: Cluster, *, kind: str, count: int = 1) -> list[ev.DeadLetter]:
    """The dead letters of `kind` once there are `count` (generous bound: it happens)."""
    deadline = time.monotonic() + 30
    while True:
        records = await kafkaio.read_partition(
            cluster.stack.bootstrap, cluster.catalog.deadletter.name
        )
        letters = [default_codec().decode(r.value or b"") for r in records]
        found = [d for d in letters if isinstance(d, ev.DeadLetter) and d.error_kind == kind]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{count} {kind} dead letter(s) not written: {letters}"
        await asyncio.sleep(0.3)


async def test_a_forged_leader_elected_is_never_applied_and_the_cluster_goes_on(
    cluster: Cluster,
) -> None:
    """Issue 14: a LeaderElected of a higher epoch, written to the journal by someone
    without the journal key (here: a client's key), is skipped by every replica: the
    digests stay equal, a job submitted after it runs and stays known, also after the
    leader stops, and `jm replicas` alerts."""
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("leads with epoch 1")
    standby = cluster.coordinator("c2")
    await standby.wait_for_line("role STANDBY")
    cluster.worker("tm-1", 2)
    forged = ev.LeaderElected(event_id=machine.leader_elected_id(99, "mallory"),
                              event_time=now_ms(), epoch=99, replica_id="mallory",
                              previous_offset=0)  # fmt: skip
    client_only = KeyRing.load(os.environ[signing.ENV_FILE], ["client"])
    value, headers = default_codec().encode(forged)
    topic = cluster.catalog.journal.name
    key = cluster.catalog.key_for(forged)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        signed_as_client = client_only.sign("submissions", topic, key, value, headers)
        await client.producer.send_and_wait(
            topic, value, key=key, headers=signed_as_client, partition=0
        )
        await client.send(job("after-forgery", 2, {"rate": "20"}))
        await journal.wait_until(lambda es: all_running(es, "after-forgery", 2, 0), seconds=60)
    letter = (await dead_letters(cluster, kind="ForeignJournalRecord"))[0]
    assert letter.original_value == value
    assert "SignatureError" in letter.reason and "bad signature" in letter.reason
    assert "skipped: no leader wrote it" in standby.output()  # logged as an error
    c1, c2 = await both_report_foreign_records(cluster, "c1", "c2")
    assert c1.digest == c2.digest and c1.epoch == c2.epoch == 1
    assert any("ALERT" in line for line in replica_alerts(c2))
    shown = jm(cluster, "replicas")
    assert "ALERT" in shown.stdout, shown.stdout + shown.stderr
    status = jm(cluster, "status", "after-forgery", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "RUNNING"
    # The standby takes over at epoch 2 (not 100) and still knows the job.
    leader.stop()
    await standby.wait_for_line("leads with epoch 2", seconds=30)
    status = jm(cluster, "status", "after-forgery", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "RUNNING"


async def test_a_forged_failure_report_is_dead_lettered_and_the_job_keeps_running(
    cluster: Cluster,
) -> None:
    """Issue 14: a TaskStateChanged FAILED under a real worker id and incarnation
    (both readable in the journal), signed with a key that is not the cluster's:
    dead-lettered with the reason; the job is not restarted. The same report signed
    with a valid worker key but from another worker is refused by the domain: a report
    counts only from the worker incarnation the task was deployed to."""
    await cluster.coordinator("c1").wait_for_line("leads with epoch 1")
    cluster.worker("tm-1", 1)
    cluster.worker("tm-2", 1)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        events = await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        await client.send(job("victim", 1, {"rate": "20"}))
        events = await journal.wait_until(lambda es: all_running(es, "victim", 1, 0))
        placed = running_on(events, "victim")[("src", 0)]
        other = "tm-2" if placed == "tm-1" else "tm-1"
        incarnation = {e.tm_id: e.incarnation for _, e in events
                       if isinstance(e, ev.TaskManagerJoined)}  # fmt: skip
        task = next(e.task for _, e in events
                    if isinstance(e, ev.TaskAssigned) and e.task.job_id == "victim")  # fmt: skip

        def failed(tm_id: str) -> ev.TaskStateChanged:
            return ev.TaskStateChanged(
                event_id=uuid.uuid4().hex, event_time=now_ms(), tm_id=tm_id,
                incarnation=incarnation[tm_id], task=task, state=ev.ExecutionState.FAILED,
                error_name="Forged", error_stack="forged",
            )  # fmt: skip

        wrong_keys = KeyRing.from_mapping(signing.generate())  # same key ids, other secrets
        async with Producer(cluster.stack, cluster.catalog, keys=wrong_keys) as forger:
            await forger.send(failed(placed))
        letter = (await dead_letters(cluster, kind="SignatureError"))[0]
        assert letter.source_topic == cluster.catalog.reports.name
        assert "bad signature" in letter.reason and "worker key 'k1'" in letter.reason

        impostor = failed(other)  # validly signed: the run's worker key
        await client.send(impostor)
        events = await journal.wait_until(lambda es: any(
            isinstance(e, ev.InputRejected) and e.input_event_id == impostor.event_id
            for _, e in es))  # fmt: skip
        rejected = next(e for _, e in events if isinstance(e, ev.InputRejected)
                        and e.input_event_id == impostor.event_id)  # fmt: skip
        assert f"not deployed on {other}/" in rejected.reason
    assert attempts(events, "victim") == {0}
    assert status_of(events, "victim") == ev.JobStatus.RUNNING
    assert not any(isinstance(e, ev.TaskStateRecorded) and e.task == task
                   and e.state == ev.ExecutionState.FAILED for _, e in events)  # fmt: skip


async def test_an_unsigned_submission_is_dead_lettered_with_the_reason(cluster: Cluster) -> None:
    await cluster.coordinator("c1").wait_for_line("leads with epoch 1")
    sub = job_submitted("unsigned", operator="nobody")
    value, headers = default_codec().encode(sub)
    async with Producer(cluster.stack, cluster.catalog) as client:
        await client.producer.send_and_wait(cluster.catalog.submissions.name, value,
                                            key=b"unsigned", headers=headers)  # fmt: skip
    letter = (await dead_letters(cluster, kind="SignatureError"))[0]
    assert letter.original_value == value
    assert letter.reason.startswith("unsigned record: no jm-sig header")
    async with Journal(cluster.stack, cluster.catalog) as journal:
        await journal.read(timeout_ms=1000)
        while await journal.read(timeout_ms=500):
            pass
    assert sub.event_id not in decided(journal.events)


async def test_keys_rotate_with_two_valid_during_the_switch(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A client key is rotated: old only, then new and old (new signs), then new only.
    Coordinators restart with each file; records signed with a key the running
    coordinator lists are accepted, and the old key's are refused once it is gone."""
    base = signing.generate()
    old, new = base["client"][0], signing.new_key("k2")

    def key_file(name: str, client: list[dict[str, str]]) -> str:
        path = tmp_path / name
        signing.write_key_file(path, {**base, "client": client})
        return str(path)

    phases = [key_file("1.json", [old]), key_file("2.json", [new, old]),
              key_file("3.json", [new])]  # fmt: skip
    by_old = KeyRing.from_mapping({"client": [old]}, ["client"])
    by_new = KeyRing.from_mapping({"client": [new]}, ["client"])
    sent: dict[str, ev.JobSubmitted] = {}
    async with Journal(cluster.stack, cluster.catalog) as journal:
        previous = None
        for n, path in enumerate(phases, start=1):
            if previous is not None:
                previous.stop()
            previous = cluster.coordinator(f"c{n}", "--signing-keys", path)
            await previous.wait_for_line(f"leads with epoch {n}", seconds=30)
            for name, keys in (("old", by_old), ("new", by_new)):
                if n == 1 and name == "new":
                    continue  # nobody holds the new key before the switch
                sub = job_submitted(f"phase{n}-{name}", operator="nobody")
                sent[sub.job_id] = sub
                async with Producer(cluster.stack, cluster.catalog, keys=keys) as client:
                    await client.send(sub)
            ids = {s.event_id for job_id, s in sent.items() if job_id != "phase3-old"}
            await journal.wait_until(partial(all_decided, ids))
        refused = (await dead_letters(cluster, kind="SignatureError"))[0]
        while await journal.read(timeout_ms=500):
            pass
    assert refused.original_key == b"phase3-old"
    assert refused.reason == "signed with key 'k1', not a valid client key here"
    decisions = decided(journal.events)
    accepted = {job_id for job_id, s in sent.items() if s.event_id in decisions}
    assert accepted == {"phase1-old", "phase2-old", "phase2-new", "phase3-new"}
