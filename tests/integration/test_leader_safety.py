"""No input stalls the leader (issue 10), against real coordinator processes: a blocked
loop loses the lease, Redis problems are said, foreign journal records are reported.
(The known poison inputs are in test_input_limits.py, containment in
test_leader_runtime.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from coordinator.commands.replica import read_replicas, replica_alerts
from schemas import events as ev
from schemas import kafkaio
from schemas.codec import default_codec
from schemas.settings import ClusterSettings
from tests.integration.harness import (
    Cluster,
    CoordinatorProcess,
    Producer,
    both_report_foreign_records,
    job_submitted,
)
from tests.own_redis import own_redis

pytestmark = pytest.mark.integration


async def test_a_leader_whose_loop_is_blocked_loses_the_lease_to_a_standby(
    cluster: Cluster,
) -> None:
    """The lease is renewed only while the leader loop moves (issue 10, item 3)."""
    # 20 s: long enough for the standby to start and take over while the leader is
    # still blocked, even when a loaded host takes 13 s to start a replica (a leader
    # that wakes first steps down and may win the lease again, in a term of its own).
    stuck = cluster.coordinator("stuck", hooks={"block_loop_ms": 20_000})
    await stuck.wait_for_line("leads with epoch 1")
    standby = cluster.coordinator("standby")
    await standby.wait_for_line("role STANDBY")
    await stuck.wait_for_line("blocking the leader loop")
    await standby.wait_for_line("leads with epoch 2", seconds=30)
    assert "not renewing the lease" in stuck.output()
    await stuck.wait_for_line("steps down", seconds=20)


async def test_a_leader_waiting_in_an_await_steps_down_when_its_lease_is_lost(
    cluster: Cluster,
) -> None:
    """A term that waits in an await (here: a transaction held open 60 s, the loop free)
    would see the lost lease only after it; the replica ends the term as soon as the
    lease is gone (found by `jm drill leader-freeze`: a leader resumed by SIGCONT stayed
    LEADER for a minute)."""
    held = cluster.coordinator(
        "held", "--lease-ttl-ms", "3000", hooks={"hold_transaction_ms": 60_000}
    )
    await held.wait_for_line("leads with epoch 1")
    standby = cluster.coordinator("standby", "--lease-ttl-ms", "3000")
    await standby.wait_for_line("role STANDBY")
    async with Producer(cluster.stack, cluster.catalog) as client:
        await client.send(job_submitted("held-open", parallelism=0))  # rejected: a decision
        await held.wait_for_line("holding an open transaction")
        began = time.monotonic()
        # The renewer withholds once the step outlasts the step timeout (12 s here),
        # the lease lapses, the standby takes over: well before the hold ends.
        try:
            await standby.wait_for_line("leads with epoch 2", seconds=45)
        except AssertionError as err:  # the held leader's side of the story too
            raise AssertionError(f"{err}\n--- held:\n{held.output()[-4000:]}") from None
        await held.wait_for_line("the term was waiting", seconds=45)
    assert time.monotonic() - began < 55, "it stepped down only when the 60 s hold ended"
    assert "steps down: StepDown: lease lost" in held.output()


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[int]:
    """A second real Redis that requires a password (the shared one has none)."""
    with own_redis("--requirepass", "right") as (_, port):
        yield port


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
        sub = job_submitted("after-garbage", operator="nobody")
        await client.send(sub)  # the leader's next journal write shows it the gap
        await leader.wait_for_line("was not written by this leader", seconds=20)
        standby = cluster.coordinator("c2")  # replays through the garbage
        await standby.wait_for_line("role STANDBY", seconds=30)
    c1, c2 = await both_report_foreign_records(cluster, "c1", "c2")
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
