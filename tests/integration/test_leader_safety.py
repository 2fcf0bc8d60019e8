"""No input stalls the leader (issue 10): each known poison input against a real leader
process, followed by a valid job that must reach RUNNING, with the epoch unchanged."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from functools import partial

import pytest

from coordinator.commands.replica import read_replicas, replica_alerts
from coordinator.domain.planner import bounded_id
from coordinator.runtime.machine import leader_elected_id
from schemas import events as ev
from schemas import kafkaio
from schemas.codec import default_codec
from schemas.settings import ClusterSettings
from tests.integration.harness import (
    Cluster,
    CoordinatorProcess,
    Journal,
    Producer,
    joined,
    now_ms,
    status_of,
)

pytestmark = pytest.mark.integration

JOURNAL_LIMIT = 1_048_576


def graph_job(job_id: str, vertices: int, parallelism: int, id_len: int) -> ev.JobSubmitted:
    ids = [f"v{i:0{id_len - 1}d}" for i in range(vertices)]
    vs = tuple(
        ev.Vertex(id=v, name=v, operator="sequence", parallelism=parallelism,
                  max_parallelism=parallelism, config={"rate": "10"})
        for v in ids
    )  # fmt: skip
    edges = tuple(
        ev.Edge(source=a, target=b, partitioning=ev.Partitioning.FORWARD)
        for a, b in itertools.pairwise(ids)
    )
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vs, edges=edges),
    )  # fmt: skip


def endless(job_id: str) -> ev.JobSubmitted:
    vertex = ev.Vertex(id="src", name="src", operator="sequence", parallelism=1,
                       max_parallelism=8, config={"rate": "20"})  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id[:50],
        job_graph=ev.JobGraph(vertices=(vertex,)),
    )  # fmt: skip


def triggers() -> list[tuple[str, ev.Event]]:
    """The inputs that stopped the cluster (issue 10, item 1)."""
    return [
        ("10 vertices x 4096, 30-char ids", graph_job("x" * 30, 10, 4096, 30)),
        ("one vertex x 32768, 100-char ids", graph_job("y" * 100, 1, 32768, 100)),
        ("job id of 300,000 characters", endless("j" * 300_000)),
        ("cancel with a 450 kB event id (in value and header)", ev.JobCancelRequested(
            event_id="e" * 450_000, event_time=now_ms(), job_id="no-such-job")),
        ("worker with 2**62 slots", ev.TaskManagerRegistered(
            event_id=uuid.uuid4().hex, event_time=now_ms(), tm_id="tm-huge",
            incarnation="i1", host="h", slots=2**62, operators=("sequence",))),
    ]  # fmt: skip


def rejected(events: list[tuple[int, ev.Event]], event: ev.Event) -> str | None:
    """The journaled reason `event` was rejected, if it was."""
    wanted = bounded_id(event.event_id)
    for _, e in events:
        if isinstance(e, ev.JobRejected | ev.InputRejected) and e.input_event_id == wanted:
            return e.reason
    return None


def is_rejected(event: ev.Event, events: list[tuple[int, ev.Event]]) -> bool:
    return rejected(events, event) is not None


def canceled(job_id: str, events: list[tuple[int, ev.Event]]) -> bool:
    return status_of(events, job_id) == ev.JobStatus.CANCELED


def running(job_id: str, events: list[tuple[int, ev.Event]]) -> bool:
    return any(
        isinstance(e, ev.TaskStateRecorded) and e.task.job_id == job_id
        and e.state == ev.ExecutionState.RUNNING for _, e in events
    )  # fmt: skip


async def test_each_poison_input_is_rejected_and_the_leader_goes_on(cluster: Cluster) -> None:
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        for n, (what, poison) in enumerate(triggers()):
            await client.send(poison)
            events = await journal.wait_until(partial(is_rejected, poison))
            print(f"{what}: rejected: {rejected(events, poison)}")
            valid = endless(f"valid-{n}")
            await client.send(valid)
            await journal.wait_until(partial(running, valid.job_id))
            await client.send(ev.JobCancelRequested(
                event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=valid.job_id))  # fmt: skip
            events = await journal.wait_until(partial(canceled, valid.job_id))
        elections = [e for _, e in events if isinstance(e, ev.LeaderElected)]
        assert [e.epoch for e in elections] == [1], "the leader stepped down"
        assert elections[0].event_id == leader_elected_id(1, "c1")  # one id format
    assert leader.count("steps down") == 0
    assert leader.count(" rejected ") >= len(triggers())  # one INFO line each
    # Every journal record fits: nothing the leader derived from an input outgrew its topic.
    sizes = [len(r) for r in journal.raw_values]
    assert max(sizes) < JOURNAL_LIMIT


async def test_a_leader_whose_loop_is_blocked_loses_the_lease_to_a_standby(
    cluster: Cluster,
) -> None:
    """The lease is renewed only while the leader loop moves (issue 10, item 3)."""
    stuck = cluster.coordinator("stuck", hooks={"block_loop_ms": 8_000})
    await stuck.wait_for_line("leads with epoch 1")
    standby = cluster.coordinator("standby")
    await standby.wait_for_line("role STANDBY")
    await stuck.wait_for_line("blocking the leader loop")
    await standby.wait_for_line("leads with epoch 2", seconds=20)
    assert "not renewing the lease" in stuck.output()
    await stuck.wait_for_line("steps down", seconds=20)


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[int]:
    """A second real Redis that requires a password (the shared one has none)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by `make deps`"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "right",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:1/0", "Connection"),  # nothing listens there
        ("redis://:wrong@127.0.0.1:{port}/0", "password"),
        ("redis://127.0.0.1:{port}/0", "AuthenticationError"),
    ],
    ids=["unreachable", "wrong-password", "no-password"],
)
async def test_a_coordinator_that_cannot_use_redis_says_why(
    cluster: Cluster, redis_with_password: int, url: str, expected: str
) -> None:
    """Issue 10, item 6: the reason is logged and shown in `jm replicas`."""
    redis_url = url.format(port=redis_with_password)
    proc = CoordinatorProcess(cluster.stack, cluster.catalog, "no-redis", redis_url=redis_url)
    cluster.exits.callback(proc.stop)
    await proc.wait_for_line("cannot use Redis", seconds=30)
    assert expected.lower() in proc.output().lower()
    settings = ClusterSettings(
        bootstrap_servers=cluster.stack.bootstrap, cluster_id=cluster.catalog.cluster_id
    )
    deadline = time.monotonic() + 15
    while True:
        status = (await read_replicas(settings)).get("no-redis")
        if status is not None and status.problem:
            break
        assert time.monotonic() < deadline, f"no problem shown: {status}"
        await asyncio.sleep(0.3)
    assert "cannot use Redis" in status.problem
    assert any("PROBLEM" in line for line in replica_alerts(status))
    # It keeps retrying (with backoff), it does not give up or crash.
    assert proc.proc.poll() is None


async def test_a_journal_record_no_leader_wrote_is_reported_not_fatal(cluster: Cluster) -> None:
    """Issue 10, item 11: garbage in the journal is skipped by every replica, counted,
    dead-lettered by the leader and shown in `jm replicas`; replay goes on."""
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("leads with epoch 1")
    garbage = b"\x00not an event at all\xff"
    async with Producer(cluster.stack, cluster.catalog) as client:
        await client.producer.send_and_wait(cluster.catalog.journal.name, garbage, partition=0)
        sub = endless("after-garbage")
        await client.send(sub)  # the leader's next journal write shows it the gap
        await leader.wait_for_line("was not written by this leader", seconds=20)
        standby = cluster.coordinator("c2")  # replays through the garbage
        await standby.wait_for_line("role STANDBY", seconds=30)
    settings = ClusterSettings(
        bootstrap_servers=cluster.stack.bootstrap, cluster_id=cluster.catalog.cluster_id
    )
    deadline = time.monotonic() + 20
    while True:
        statuses = await read_replicas(settings)
        c1, c2 = statuses.get("c1"), statuses.get("c2")
        if (c1 and c2 and c1.foreign_records and c2.foreign_records
                and c1.applied_offset == c2.applied_offset):  # fmt: skip
            break
        assert time.monotonic() < deadline, f"not reported: {statuses}"
        await asyncio.sleep(0.3)
    assert c1.digest == c2.digest
    assert any("ALERT" in line for line in replica_alerts(c2))
    letters = [
        default_codec().decode(r.value or b"")
        for r in await kafkaio.read_partition(cluster.stack.bootstrap,
                                              cluster.catalog.deadletter.name)
    ]  # fmt: skip
    foreign = [d for d in letters if isinstance(d, ev.DeadLetter)
               and d.error_kind == "ForeignJournalRecord"]  # fmt: skip
    assert [d.original_value for d in foreign] == [garbage]
