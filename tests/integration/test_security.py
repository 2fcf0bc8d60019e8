"""Jobs kept out of the cluster's topics, workers kept to an allow-list: a real
coordinator, real workers and ``jm`` over the real broker (docs/security.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schemas import events as ev
from schemas.catalog import Catalog
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def to_topic(job_id: str, topic: str) -> ev.JobSubmitted:
    """Ten numbers written to `topic`."""
    vertices = (
        ev.Vertex(id="numbers", name="numbers", operator="sequence", parallelism=1,
                  config={"count": "10"}),
        ev.Vertex(id="out", name="out", operator="kafka_sink", parallelism=1,
                  config={"topic": topic}),
    )  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=vertices, edges=(ev.Edge(source="numbers", target="out"),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


def rejection(events: list[tuple[int, ev.Event]], job_id: str) -> ev.JobRejected | None:
    found = [e for _, e in events if isinstance(e, ev.JobRejected) and e.job_id == job_id]
    return found[0] if found else None


async def test_a_job_naming_a_protected_topic_is_rejected_with_the_reason(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    journal_topic = cluster.catalog.journal.name
    own = await new_topic("own")
    await cluster.coordinator("c1", "--protected-topic-prefix", "billing.").wait_for_line(
        "role LEADER"
    )
    cluster.worker("tm-1", 2)
    # An older jm (or any producer) sends what today's `jm submit` refuses locally.
    rogue, billing, fine = (
        to_topic("rogue", journal_topic),
        to_topic("billing", "billing.invoices"),
        to_topic("fine", own),
    )
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        for job in (rogue, billing, fine):
            await client.send(job)
        events = await journal.wait_until(
            lambda es: (
                rejection(es, "rogue") is not None
                and rejection(es, "billing") is not None
                and status_of(es, "fine") == ev.JobStatus.FINISHED
            )
        )
    rogue_no, billing_no = rejection(events, "rogue"), rejection(events, "billing")
    assert rogue_no is not None and billing_no is not None
    assert rogue_no.input_event_id == rogue.event_id
    assert f"vertices[1].config.topic: topic {journal_topic!r}" in rogue_no.reason
    assert f"protected prefix {cluster.catalog.prefix + '.'!r}" in rogue_no.reason
    assert "topic 'billing.invoices' is under the protected prefix 'billing.'" in billing_no.reason
    assigned = {e.task.job_id for _, e in events if isinstance(e, ev.TaskAssigned)}
    assert assigned == {"fine"}
    accepted = {e.submission.job_id for _, e in events if isinstance(e, ev.JobAccepted)}
    assert accepted == {"fine"}


def jm_submit(
    stack: Stack, catalog: Catalog, path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        REDIS_URL=stack.redis_url,
        JM_CLUSTER_ID=catalog.cluster_id,
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "coordinator", "submit", str(path), "--dry-run"],
        capture_output=True, text=True, env=environment, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip


def job_file(tmp_path: Path, topic: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: to a topic\n"
        "vertices:\n"
        "  - {id: numbers, operator: sequence, config: {count: 10}}\n"
        f"  - {{id: out, operator: kafka_sink, config: {{topic: {topic}}}}}\n"
        "edges:\n"
        "  - {source: numbers, target: out}\n"
    )
    return path


def test_jm_submit_dry_run_says_so_locally(stack: Stack, catalog: Catalog, tmp_path: Path) -> None:
    journal = jm_submit(stack, catalog, job_file(tmp_path, catalog.journal.name))
    assert journal.returncode == 1 and journal.stdout == ""
    assert f"names topics no job on {catalog.cluster_id} may use" in journal.stderr
    assert f"vertices[1].config.topic: topic {catalog.journal.name!r}" in journal.stderr
    path = job_file(tmp_path, "billing.invoices")
    assert jm_submit(stack, catalog, path).returncode == 0
    billing = jm_submit(stack, catalog, path, JM_PROTECTED_TOPIC_PREFIXES="audit.,billing.")
    assert billing.returncode == 1
    assert "under the protected prefix 'billing.'" in billing.stderr


async def test_a_worker_off_the_allow_list_is_rejected_and_never_deployed_to(
    cluster: Cluster,
) -> None:
    leader = cluster.coordinator("c1", "--allowed-workers", "tm-ok,tm-other")
    await leader.wait_for_line("role LEADER")
    # The rogue offers the most free slots: the scheduler would prefer it.
    rogue = cluster.worker("tm-rogue", 8)
    cluster.worker("tm-ok", 2)

    def refused(es: list[tuple[int, ev.Event]]) -> list[ev.InputRejected]:
        return [e for _, e in es if isinstance(e, ev.InputRejected) and e.tm_id == "tm-rogue"]

    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-ok") and bool(refused(es)))
        submitted = ev.JobSubmitted(
            event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="counted", name="counted",
            job_graph=ev.JobGraph(vertices=(ev.Vertex(
                id="src", name="src", operator="sequence", parallelism=2, config={"count": "10"}
            ),)),
            restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
        )  # fmt: skip
        await client.send(submitted)
        events = await journal.wait_until(
            lambda es: status_of(es, "counted") == ev.JobStatus.FINISHED
        )
    first = refused(events)[0]
    assert first.input_event_type == "TaskManagerRegistered"
    assert "'tm-rogue' is not on this coordinator's list of allowed workers" in first.reason
    assert not joined(events, "tm-rogue")
    placed = {e.incarnation for _, e in events if isinstance(e, ev.TaskAssigned)}
    ok = [e for _, e in events if isinstance(e, ev.TaskManagerJoined) and e.tm_id == "tm-ok"]
    assert placed == {ok[-1].incarnation}
    assert "deploying" not in rogue.log()
    assert "workers allowed to register: tm-ok, tm-other" in leader.output()
