"""OpenTelemetry on real processes (docs/observability.md): a coordinator and a worker
write their spans and metrics as JSON lines (``--otel-file``, the SDK's console
exporters into a file); the test reads them back and checks the trace of one job
from its JobAccepted to its tasks running on the worker, a checkpoint's trace
linked to the job, a failover span from the next leader, and that the next leader
traced nothing it only replayed."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from schemas import events as ev
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, until
from tests.integration.test_jobs import all_running

pytestmark = pytest.mark.integration

Span = dict[str, Any]

COORDINATOR_METRICS = {
    "jm.journal.events_applied", "jm.transaction.duration", "jm.replica.journal_lag",
    "jm.leader.epoch", "jm.jobs", "jm.tasks", "jm.worker.heartbeat_age",
    "jm.process.memory", "jm.state.size", "jm.dead_letters", "jm.inputs.rejected",
}  # fmt: skip


def read_lines(path: Path) -> tuple[list[Span], set[str]]:
    """(spans, metric names) in a JSON-lines telemetry file."""
    spans: list[Span] = []
    metrics: set[str] = set()
    for line in path.read_text().splitlines() if path.exists() else ():
        item = json.loads(line)
        if "resource_metrics" in item:
            for rm in item["resource_metrics"]:
                for sm in rm["scope_metrics"]:
                    metrics.update(m["name"] for m in sm["metrics"] if m["data"]["data_points"])
        else:
            spans.append(item)
    return spans, metrics


def traced_job(job_id: str) -> ev.JobSubmitted:
    source = ev.Vertex(id="src", name="Source", operator="sequence", parallelism=2,
                       max_parallelism=8, config={"rate": "50"})  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=job_id,
        job_graph=ev.JobGraph(vertices=(source,)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
        checkpoint_config=ev.CheckpointConfig(interval_ms=500, timeout_ms=5_000,
                                              tolerable_failures=1_000),
    )  # fmt: skip


def elected_c2(event: ev.Event) -> bool:
    return isinstance(event, ev.LeaderElected) and event.replica_id == "c2"


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s["name"] == name]


async def test_one_trace_from_submission_to_tasks_on_the_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    files = {name: tmp_path / f"{name}.jsonl" for name in ("c1", "c2", "tm-1")}
    otel = ("--otel-metrics-interval-ms", "1000", "--otel-file")
    c1 = cluster.coordinator("c1", "--allow-checkpointing", *otel, str(files["c1"]))
    await c1.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2, *otel, str(files["tm-1"]))
    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1"), seconds=60)
        await client.send(traced_job("traced"))
        await journal.wait_until(lambda es: all_running(es, "traced", 2, 0), seconds=90)
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.CheckpointCompleted) for _, e in es), seconds=60
        )
        # Bad input: a record that is no event (a dead letter), a cancel of no job.
        raw = AIOKafkaProducer(bootstrap_servers=cluster.stack.bootstrap)
        await raw.start()
        try:
            await raw.send_and_wait(cluster.catalog.submissions.name, b"not avro", key=b"bad")
        finally:
            await raw.stop()
        await client.send(ev.JobCancelRequested(event_id="cancel-nothing", event_time=now_ms(),
                                                job_id="no-such-job"))  # fmt: skip
        await journal.wait_until(
            lambda es: any(isinstance(e, ev.InputRejected | ev.JobRejected) for _, e in es)
        )
        # Exported every second: each metric shows up while c1 leads.
        await until(lambda: read_lines(files["c1"])[1] >= COORDINATOR_METRICS,
                    "every coordinator metric in c1's file", seconds=60)  # fmt: skip
        # A second replica takes over; it replayed the job and must trace none of it.
        c2 = cluster.coordinator("c2", "--allow-checkpointing", *otel, str(files["c2"]))
        await c2.wait_for_line("role STANDBY", seconds=60)
        c1.stop()  # SIGTERM: releases the lease, flushes its telemetry
        await c2.wait_for_line("role LEADER", seconds=60)
        await journal.wait_until(lambda es: any(elected_c2(e) for _, e in es))
        # Its takeover span ends after LeaderElected commits, just before this line: a
        # stop in between (the gauges below can be in the file already) left no span.
        await c2.wait_for_line("leads with epoch 2", seconds=60)
        # Exported every second while it leads (nothing while it starts or stops).
        gauges = {"jm.leader.epoch", "jm.replica.journal_lag"}
        await until(lambda: gauges <= read_lines(files["c2"])[1], "c2's gauges", seconds=60)
    c2.stop()
    for worker in cluster.workers.values():
        await worker.close()

    leader, c1_metrics = read_lines(files["c1"])
    on_tm, _ = read_lines(files["tm-1"])
    successor, c2_metrics = read_lines(files["c2"])

    # The job's root span, in the trace every process derives from its id.
    [job] = named(leader, "job.submit")
    trace = job["context"]["trace_id"]
    assert job["parent_id"] is None
    assert job["attributes"]["jm.job.id"] == "traced"
    assert job["attributes"]["jm.job.outcome"] == "RUNNING"
    # One deployment per subtask, children of the job span, ended by RUNNING.
    deploys = named(leader, "task.deploy")
    assert len(deploys) == 2
    assert {d["context"]["trace_id"] for d in deploys} == {trace}
    assert {d["parent_id"] for d in deploys} == {job["context"]["span_id"]}
    assert all(d["events"][-1]["name"] == "TaskStateRecorded RUNNING" for d in deploys)
    assert job["end_time"] >= max(d["end_time"] for d in deploys)
    # On the worker: each task's span is the child of its deployment's (W3C header).
    on_worker = named(on_tm, "worker.deploy")
    assert len(on_worker) == 2
    assert {w["context"]["trace_id"] for w in on_worker} == {trace}
    assert {w["parent_id"] for w in on_worker} == {d["context"]["span_id"] for d in deploys}
    assert {w["resource"]["attributes"]["service.name"] for w in on_worker} == {"jm-worker"}

    # Checkpoints: a trace each, linked to the job span; the workers' spans are children.
    completed = [c for c in named(leader, "checkpoint")
                 if c["attributes"].get("jm.checkpoint.outcome") == "COMPLETED"]  # fmt: skip
    assert completed
    first = completed[0]
    assert first["context"]["trace_id"] != trace
    assert [(link["context"]["trace_id"], link["context"]["span_id"]) for link in first["links"]] \
        == [(trace, job["context"]["span_id"])]  # fmt: skip
    acks = [w for w in named(on_tm, "worker.checkpoint")
            if w["parent_id"] == first["context"]["span_id"]]  # fmt: skip
    assert len(acks) == 2
    assert {a["context"]["trace_id"] for a in acks} == {first["context"]["trace_id"]}

    # The first leader took over a fresh cluster; the second failed over from it and
    # traced nothing of the job it replayed.
    assert named(leader, "leader.takeover")
    [failover] = named(successor, "leader.failover")
    assert failover["attributes"]["jm.previous_leader"] == "c1"
    assert failover["attributes"]["jm.previous_epoch"] + 1 == failover["attributes"]["jm.epoch"]
    assert [e["name"] for e in failover["events"]] == [
        "lease won", "fenced", "journal read", "LeaderElected committed",
    ]  # fmt: skip
    assert not named(successor, "job.submit") and not named(successor, "task.deploy")

    assert c1_metrics >= COORDINATOR_METRICS, COORDINATOR_METRICS - c1_metrics
    assert {"jm.leader.epoch", "jm.replica.journal_lag"} <= c2_metrics


async def test_prometheus_scrapes_the_coordinator_and_the_worker(cluster: Cluster) -> None:
    """``--otel-prometheus-port 0``: each process serves /metrics on a free port and says
    where (``prometheus http://host:port/metrics`` on stdout)."""
    c1 = cluster.coordinator("c1", "--otel-prometheus-port", "0")
    await c1.wait_for_line("role LEADER", seconds=60)
    await c1.wait_for_line("prometheus http://")
    worker = cluster.worker("tm-1", 1, "--otel-prometheus-port", "0")
    async with Journal(cluster.stack, cluster.catalog) as journal:
        await journal.wait_until(lambda es: joined(es, "tm-1"))
    coordinator_url = re.findall(r"prometheus (http://\S+)", c1.output())[0]
    await until(lambda: "prometheus http://" in worker.log(), "the worker's endpoint")
    worker_url = re.findall(r"prometheus (http://\S+)", worker.log())[0]
    async with aiohttp.ClientSession() as session:

        async def scrape(url: str) -> str:
            async with session.get(url) as response:
                assert response.status == 200
                return await response.text()

        text = ""
        for _ in range(100):  # the heartbeat gauge appears once the replica has read one
            text = await scrape(coordinator_url)
            if "jm_worker_heartbeat_age_milliseconds{" in text:
                break
            await asyncio.sleep(0.1)
        assert re.search(r'jm_leader_epoch\{.*jm_replica="c1".*\} 1\.0', text), text
        assert "jm_worker_heartbeat_age_milliseconds{" in text and 'worker="tm-1"' in text
        assert "jm_process_memory_bytes{" in text
        assert "jm_process_memory_bytes{" in await scrape(worker_url)


async def test_otlp_reaches_a_collector(cluster: Cluster) -> None:
    """``--otel-otlp-endpoint``: spans and metrics arrive as OTLP/HTTP protobuf requests
    at a collector (here an HTTP server of the test that decodes what it receives)."""
    from aiohttp import web
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    spans: list[str] = []
    metrics: set[str] = set()

    async def traces(request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest.FromString(await request.read())
        spans.extend(s.name for rs in body.resource_spans for ss in rs.scope_spans
                     for s in ss.spans)  # fmt: skip
        return web.Response(status=200)

    async def metric_points(request: web.Request) -> web.Response:
        body = ExportMetricsServiceRequest.FromString(await request.read())
        metrics.update(m.name for rm in body.resource_metrics for sm in rm.scope_metrics
                       for m in sm.metrics)  # fmt: skip
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/metrics", metric_points)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        c1 = cluster.coordinator("c1", "--otel-otlp-endpoint", f"http://127.0.0.1:{port}",
                                 "--otel-metrics-interval-ms", "1000")  # fmt: skip
        await c1.wait_for_line("role LEADER", seconds=60)
        await until(lambda: "leader.takeover" in spans, "the takeover span", seconds=60)
        await until(lambda: "jm.leader.epoch" in metrics, "the epoch gauge", seconds=60)
    finally:
        await runner.cleanup()
