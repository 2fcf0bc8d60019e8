"""The REST API's reads against real processes: two ``jm coordinator`` replicas (a leader
and a hot standby, each serving REST on a port of its own), a real ``jm worker`` and a
checkpointed job. Every read endpoint is asked of both replicas, at the root and under
``/v1``; errors come in Flink's ``{"errors": [...]}`` shape; every answer says the
journal offset it reflects."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, CoordinatorProcess, Producer, now_ms, until

pytestmark = pytest.mark.integration

JOB = "rest-job"
OFFSET = "X-JM-Journal-Offset"


def submitted(job_id: str) -> ev.JobSubmitted:
    def vertex(id: str, operator: str, **config: str) -> ev.Vertex:
        return ev.Vertex(id=id, name=id.title(), operator=operator, parallelism=2,
                         max_parallelism=8, config=config)  # fmt: skip

    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name="rest test job",
        job_graph=ev.JobGraph(
            vertices=(vertex("numbers", "sequence", rate="50"),
                      vertex("keyed", "map", function="mod_key", n="5")),
            edges=(ev.Edge(source="numbers", target="keyed"),),
            chaining=False,  # four tasks, sharing two of the worker's four slots
        ),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
        checkpoint_config=ev.CheckpointConfig(interval_ms=500, timeout_ms=10_000,
                                              tolerable_failures=1_000),
    )  # fmt: skip


def rest_url(coordinator: CoordinatorProcess) -> str:
    match = re.search(r"^rest (http://\S+)$", coordinator.output(), re.MULTILINE)
    assert match, coordinator.output()[-2000:]
    return match.group(1)


class Api:
    """GETs against one replica; every answer is checked for the offset header."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, status: int = 200) -> tuple[Any, int]:
        async with self.session.get(self.base + path) as r:
            body = await r.text()
            assert r.status == status, f"GET {path}: {r.status} {body[:500]}"
            offset = int(r.headers[OFFSET])
            if r.content_type == "application/json":
                import json

                return json.loads(body), offset
            return body, offset

    async def json(self, path: str) -> Any:
        return (await self.get(path))[0]

    async def error(self, path: str, status: int) -> list[str]:
        body, _ = await self.get(path, status)
        assert set(body) == {"errors"} and body["errors"], body
        assert all(isinstance(e, str) for e in body["errors"])
        errors: list[str] = body["errors"]
        return errors


async def eventually(check: Any, what: str, seconds: float = 60.0) -> Any:
    """Poll the async `check` until it returns something true."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what} (last: {last!r})")


async def test_every_read_on_leader_and_standby(cluster: Cluster, tmp_path: Path) -> None:
    token = f"secret-{uuid.uuid4().hex}"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    c1 = cluster.coordinator("c1", "--rest-token-file", str(token_file))
    await c1.wait_for_line("role LEADER")
    c2 = cluster.coordinator("c2")
    await c2.wait_for_line("role STANDBY")
    await c2.wait_for_line("rest http://")
    cluster.worker("tm-1", 4)
    async with aiohttp.ClientSession() as session, \
            Producer(cluster.stack, cluster.catalog) as client:  # fmt: skip
        leader, standby = Api(session, rest_url(c1)), Api(session, rest_url(c2))

        async def worker_joined() -> bool:
            return bool((await leader.json("/taskmanagers"))["taskmanagers"])

        await eventually(worker_joined, "tm-1 to register")
        submitted_at = now_ms()
        await client.send(submitted(JOB))

        async def completed_checkpoint() -> Any:
            async with session.get(f"{leader.base}/jobs/{JOB}/checkpoints") as r:
                info = await r.json()  # 404 until the job is accepted
            return r.status == 200 and info["counts"]["completed"] >= 1

        await eventually(completed_checkpoint, "a completed checkpoint")
        # The standby answers from its replayed state: once it has read as far as the
        # leader had, it says the same.
        _, leader_offset = await leader.get("/overview")
        await eventually(
            lambda: _reached(standby, leader_offset), f"the standby at offset {leader_offset}"
        )
        # c1 leads, c2 stands by; on a loaded machine the lease may move (a stalled
        # leader steps down), so each replica's role is asked, not assumed.
        roles = {api: (await api.json("/healthz"))["role"] for api in (leader, standby)}
        assert sorted(roles.values()) == ["LEADER", "STANDBY"]
        for api, role in roles.items():
            for prefix in ("", "/v1"):
                await _check_reads(api, prefix, role, submitted_at)
            await _check_errors(api)
            await _check_history(api, submitted_at)
        # The token is never shown: not in the configuration, not in the log.
        for api in (leader, standby):
            config, _ = await api.get("/jobmanager/config")
            assert token not in str(config)
            log, _ = await api.get("/jobmanager/log")
            assert token not in log
        assert {"key": "rest.token-configured", "value": "true"} in (
            await leader.json("/jobmanager/config")
        )


async def _reached(api: Api, offset: int) -> bool:
    _, at = await api.get("/overview")
    return at >= offset


async def _check_reads(api: Api, p: str, role: str, submitted_at: int) -> None:
    health = await api.json(p + "/healthz")
    assert health["status"] == "ok" and health["role"] == role

    async def ready() -> Any:
        async with api.session.get(api.base + p + "/readyz") as r:
            return r.status == 200 and (await r.json())["ready"]

    await eventually(ready, f"{role} ready")
    config = await api.json(p + "/config")
    assert config["refresh-interval"] > 0 and "features" in config

    overview, header = await api.get(p + "/overview")
    assert overview["jm-journal-offset"] == header >= 0
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == 4
    assert overview["slots-available"] == 2 and overview["jobs-running"] == 1

    assert {"id": JOB, "status": "RUNNING"} in (await api.json(p + "/jobs"))["jobs"]
    [row] = [j for j in (await api.json(p + "/jobs/overview"))["jobs"] if j["jid"] == JOB]
    assert row["state"] == "RUNNING" and row["name"] == "rest test job"
    assert row["tasks"]["total"] == 4 and row["tasks"]["running"] == 4
    assert row["start-time"] >= submitted_at - 60_000 and row["end-time"] == -1

    job, header = await api.get(p + f"/jobs/{JOB}")
    assert job["jid"] == JOB and job["state"] == "RUNNING" and job["jm-journal-offset"] == header
    assert [v["id"] for v in job["vertices"]] == ["numbers", "keyed"]
    for v in job["vertices"]:
        assert v["status"] == "RUNNING" and v["parallelism"] == 2
        assert v["tasks"]["RUNNING"] == 2 and sum(v["tasks"].values()) == 2
        assert set(v["metrics"]) >= {
            "read-records", "write-records", "read-bytes", "write-bytes",
            "accumulated-busy-time", "accumulated-idle-time", "accumulated-backpressured-time",
        }  # fmt: skip
        assert all(v["metrics"][k] >= 0 for k in ("read-records", "write-records"))
    assert job["status-counts"]["RUNNING"] == 4
    assert [n["id"] for n in job["plan"]["nodes"]] == ["numbers", "keyed"]

    assert (await api.json(p + f"/jobs/{JOB}/status"))["status"] == "RUNNING"
    config = await api.json(p + f"/jobs/{JOB}/config")
    assert config["jid"] == JOB and config["execution-config"]["job-parallelism"] == 2
    plan = (await api.json(p + f"/jobs/{JOB}/plan"))["plan"]
    [keyed] = [n for n in plan["nodes"] if n["id"] == "keyed"]
    assert (
        keyed["inputs"][0]["id"] == "numbers" and keyed["inputs"][0]["ship_strategy"] == "FORWARD"
    )
    exceptions = await api.json(p + f"/jobs/{JOB}/exceptions?maxExceptions=5")
    assert exceptions["exceptionHistory"] == {"entries": [], "truncated": False}

    checkpoints = await api.json(p + f"/jobs/{JOB}/checkpoints")
    assert checkpoints["counts"]["completed"] >= 1
    assert checkpoints["latest"]["completed"]["status"] == "COMPLETED"
    assert checkpoints["history"][0]["id"] >= checkpoints["history"][-1]["id"]
    cp_config = await api.json(p + f"/jobs/{JOB}/checkpoints/config")
    assert cp_config["interval"] == 500 and cp_config["mode"] == "exactly_once"

    vertex = await api.json(p + f"/jobs/{JOB}/vertices/numbers")
    assert vertex["id"] == "numbers" and [s["subtask"] for s in vertex["subtasks"]] == [0, 1]
    assert all(s["status"] == "RUNNING" and s["taskmanager-id"] == "tm-1"
               for s in vertex["subtasks"])  # fmt: skip
    names = "busyTimeMsPerSecond,backPressuredTimeMsPerSecond,numRecordsInPerSecond"
    metrics = await api.json(p + f"/jobs/{JOB}/vertices/numbers/subtasks/metrics?get={names}")
    assert [x["id"] for x in metrics] == names.split(",")
    assert all(set(x) == {"id", "min", "max", "avg", "sum"} for x in metrics)
    available = await api.json(p + f"/jobs/{JOB}/vertices/numbers/subtasks/metrics")
    assert {"id": "busyTimeMsPerSecond"} in available
    assert await api.json(p + f"/jobs/{JOB}/vertices/keyed/watermarks") == []

    [tm] = (await api.json(p + "/taskmanagers"))["taskmanagers"]
    assert tm["id"] == "tm-1" and tm["slotsNumber"] == 4 and tm["freeSlots"] == 2
    detail = await api.json(p + "/taskmanagers/tm-1")
    # Slot sharing: a row per subtask of a shared slot (subtask i of each vertex), an
    # empty row per free slot.
    rows = sorted((s["index"], s["jobId"] or "", s["jm-vertex-id"] or "", s["jm-subtask"])
                  for s in detail["allocatedSlots"])  # fmt: skip
    assert rows == [
        (0, JOB, "keyed", 0), (0, JOB, "numbers", 0), (1, JOB, "keyed", 1),
        (1, JOB, "numbers", 1), (2, "", "", None), (3, "", "", None),
    ]  # fmt: skip
    tm_metrics = await api.json(p + "/taskmanagers/tm-1/metrics?get=jm.slots.total")
    assert tm_metrics == [{"id": "jm.slots.total", "value": "4"}]

    jm_config = await api.json(p + "/jobmanager/config")
    assert all(set(e) == {"key", "value"} for e in jm_config)
    assert any(e["key"] == "cluster.id" for e in jm_config)  # the settings model's keys
    environment = await api.json(p + "/jobmanager/environment")
    assert environment["jvm"]["version"].startswith("Python")
    listed = await api.json(p + "/jobmanager/metrics")
    assert {"id": "numRunningJobs"} in listed
    assert await api.json(p + "/jobmanager/metrics?get=numRunningJobs") == [
        {"id": "numRunningJobs", "value": "1"}
    ]
    log, _ = await api.get(p + "/jobmanager/log")
    assert "REST API on http://" in log

    async def both_replicas() -> Any:
        leader = await api.json(p + "/cluster/leader")
        return leader if {r["id"] for r in leader["replicas"]} >= {"c1", "c2"} else None

    leader = await eventually(both_replicas, "both replicas in /cluster/leader")
    assert leader["leader-id"] in ("c1", "c2") and leader["epoch"] >= 1
    assert leader["answered-by-role"] == role
    roles = {r["id"]: r["role"] for r in leader["replicas"]}
    assert sorted(roles.values()) == ["LEADER", "STANDBY"]
    assert roles[leader["leader-id"]] == "LEADER"
    assert all(r["applied-offset"] >= 0 and r["lag"] >= 0 for r in leader["replicas"])

    document = await api.json(p + "/openapi.json")
    assert "/jobs/{job_id}" in document["paths"] and "/cluster/leader" in document["paths"]
    assert "read-records" in document["components"]["schemas"]["IOMetrics"]["properties"]


async def _check_history(api: Api, submitted_at: int) -> None:
    page = await api.json(f"/jobs/{JOB}/events?limit=2")
    assert [e["type"] for e in page["events"]][:1] == ["JobAccepted"]
    assert len(page["events"]) == 2 and page["next-offset"] == page["events"][-1]["offset"] + 1
    rest = await api.json(f"/jobs/{JOB}/events?from={page['next-offset']}&limit=50")
    offsets = [e["offset"] for e in page["events"] + rest["events"]]
    assert offsets == sorted(set(offsets)) and rest["end-offset"] >= offsets[-1]
    assert any(e["type"] == "JobStatusChanged" for e in rest["events"])

    now = await api.json(f"/jobs/{JOB}/state?until={now_ms()}")
    assert now["found"] and now["job"]["state"] == "RUNNING"
    before = await api.json(f"/jobs/{JOB}/state?until={submitted_at - 60_000}")
    assert before["found"] is False and before["job"] is None
    at_accept = await api.json(f"/jobs/{JOB}/state?offset={page['events'][0]['offset']}")
    assert (
        at_accept["job"]["state"] == "INITIALIZING"
        and at_accept["offset"] == page["events"][0]["offset"]
    )


async def _check_errors(api: Api) -> None:
    assert "Job nope not found" in (await api.error("/jobs/nope", 404))[0]
    await api.error("/v1/jobs/nope/checkpoints", 404)
    await api.error(f"/jobs/{JOB}/vertices/nope", 404)
    await api.error("/taskmanagers/nope", 404)
    await api.error("/no/such/path", 404)
    [reason] = await api.error(f"/jobs/{JOB}/exceptions?maxExceptions=many", 400)
    assert reason.startswith("maxExceptions:")
    [reason] = await api.error(f"/jobs/{JOB}/events?limit=0", 400)
    assert reason.startswith("limit:")
    [reason] = await api.error(f"/jobs/{JOB}/state", 400)
    assert reason.startswith("until:")
    [reason] = await api.error(f"/jobs/{JOB}/state?until=yesterday-ish", 400)
    assert reason.startswith("until:")
    reasons = await api.error("/jobmanager/metrics?get=numRunningJobs,bogus,other", 400)
    assert reasons == ["get: unknown metric 'bogus'", "get: unknown metric 'other'"]


async def test_a_taken_port_stops_the_replica_at_start(cluster: Cluster) -> None:
    c1 = cluster.coordinator("c1")
    await c1.wait_for_line("rest http://")
    port = rest_url(c1).rsplit(":", 1)[1]
    c2 = cluster.coordinator("c2", "--rest-port", port)
    await until(lambda: c2.proc.poll() is not None, "c2 to exit", 60)
    assert c2.proc.returncode == 1
    assert f"REST API not started on 127.0.0.1:{port}" in c2.output()
    assert "role" not in c2.output()  # it never joined the cluster


async def test_a_finished_job_then_archived(cluster: Cluster) -> None:
    c1 = cluster.coordinator("c1", "--archive-after-ms", "3000")
    await c1.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    job = ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="bounded", name="bounded",
        job_graph=ev.JobGraph(vertices=(ev.Vertex(
            id="src", name="Source", operator="sequence", parallelism=2, max_parallelism=8,
            config={"count": "20"}),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip
    async with aiohttp.ClientSession() as session, \
            Producer(cluster.stack, cluster.catalog) as client:  # fmt: skip
        api = Api(session, rest_url(c1))

        async def joined() -> bool:
            return bool((await api.json("/taskmanagers"))["taskmanagers"])

        await eventually(joined, "tm-1 to register")
        await client.send(job)

        async def status() -> Any:
            async with session.get(f"{api.base}/jobs/bounded/status") as r:
                return r.status == 200 and (await r.json())["status"] == "FINISHED"

        await eventually(status, "the job to finish")
        # Not checkpointed: Flink's 404 for its checkpoint config.
        [reason] = await api.error("/jobs/bounded/checkpoints/config", 404)
        assert "Checkpointing is not enabled" in reason

        async def archived() -> Any:
            async with session.get(f"{api.base}/jobs/bounded") as r:
                return r.status == 404

        await eventually(archived, "the job to be archived")
        [reason] = await api.error("/jobs/bounded", 404)
        assert "ended FINISHED and was archived" in reason
        assert (await api.json("/jobs/bounded/status"))["status"] == "FINISHED"
        assert {"id": "bounded", "status": "FINISHED"} in (await api.json("/jobs"))["jobs"]
        assert all(j["jid"] != "bounded" for j in (await api.json("/jobs/overview"))["jobs"])
        overview = await api.json("/overview")
        assert overview["jobs-finished"] == 1 and overview["jobs-running"] == 0
        events = (await api.json("/jobs/bounded/events?limit=1000"))["events"]
        assert events[0]["type"] == "JobAccepted" and events[-1]["type"] == "JobArchived"
