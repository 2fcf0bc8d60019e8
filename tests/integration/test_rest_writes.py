"""The REST API's writes against real processes: two ``jm coordinator`` replicas
(leader and standby, REST on free ports) and a real ``jm worker``, on the real
Kafka. Submit (accepted, rejected, invalid), cancel, savepoint and stop with
their trigger ids, the token, writes through the standby, a replica that
cannot lead, and ``jm list/status/cancel --url`` with their fallback to Kafka.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas import events as ev
from tests.integration.harness import Cluster, CoordinatorProcess, Journal, joined, status_of

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-the-rest-test"


async def rest_url(proc: CoordinatorProcess, seconds: float = 30.0) -> str:
    """The URL a coordinator printed (``rest http://host:port``, --rest-port 0)."""
    await proc.wait_for_line("rest http://", seconds)
    found = re.search(r"^rest (http://\S+)$", proc.output(), re.MULTILINE)
    assert found, proc.output()[-2000:]
    return found.group(1)


def job_body(job_id: str, rate: str = "100", **extra: Any) -> dict[str, Any]:
    """A job file's JSON: one long-running, checkpointed source."""
    return {
        "job_id": job_id,
        "name": f"rest {job_id}",
        "vertices": [{"id": "numbers", "operator": "sequence", "parallelism": 1,
                      "max_parallelism": 8, "config": {"count": "1000000", "rate": rate}}],
        "restart_strategy": {"kind": "FIXED_DELAY", "attempts": 0},
        "checkpoint_config": {"interval_ms": 500, "timeout_ms": 5000, "tolerable_failures": 100},
        **extra,
    }  # fmt: skip


class Http:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None) -> None:
        self.session, self.base, self.token = session, base, token

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = "default",
        raw: bytes | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {}
        given = self.token if token == "default" else token
        if given is not None:
            headers["Authorization"] = f"Bearer {given}"
        data: io.BytesIO | bytes | None = None if body is None else json.dumps(body).encode()
        if raw is not None:
            data = io.BytesIO(raw)
        async with self.session.request(method, self.base + path, data=data,
                                        headers=headers) as r:  # fmt: skip
            text = await r.text()
            return r.status, (json.loads(text) if text.strip() else None)

    async def operation(self, job_id: str, trigger: str, seconds: float = 90) -> dict[str, Any]:
        """Poll ``GET /jobs/{id}/savepoints/{trigger}`` until COMPLETED."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, body = await self.call("GET", f"/jobs/{job_id}/savepoints/{trigger}")
            assert status == 200, body
            if body["status"]["id"] == "COMPLETED":
                return dict(body)
            assert body["status"]["id"] == "IN_PROGRESS", body
            await asyncio.sleep(0.2)
        raise AssertionError(f"savepoint {trigger} of {job_id} not COMPLETED in {seconds}s")


async def test_writes_on_leader_and_standby(cluster: Cluster, tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'state'}"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    flags = ("--allow-checkpointing", "--state-checkpoints-dir", store,
             "--rest-token-file", str(token_file))  # fmt: skip
    leader = cluster.coordinator("c1", *flags)
    await leader.wait_for_line("role LEADER")
    standby = cluster.coordinator("c2", *flags)
    await standby.wait_for_line("role STANDBY")
    cluster.worker("tm-1", 4, "--state-checkpoints-dir", store)
    async with aiohttp.ClientSession() as session, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        on_leader = Http(session, await rest_url(leader), TOKEN)
        on_standby = Http(session, await rest_url(standby), TOKEN)
        await journal.wait_until(lambda es: joined(es, "tm-1"))

        # The token: every write needs it; reads do not.
        status, body = await on_leader.call("POST", "/jobs", job_body("a"), token=None)
        assert status == 401 and "Authorization: Bearer" in body["errors"][0], body
        status, body = await on_standby.call("PATCH", "/jobs/a?mode=cancel", token="wrong")
        assert status == 401, body
        status, _ = await on_standby.call("POST", "/v1/jobs/a/savepoints", {}, token="wrong")
        assert status == 401
        status, body = await on_leader.call("GET", "/overview", token=None)
        assert status == 200, body

        # Invalid bodies: 400, a reason per field, nothing produced.
        bad = job_body("bad")
        bad["vertices"][0]["parallelism"] = 0
        bad["edges"] = [{"source": "numbers", "target": "nowhere"}]
        status, body = await on_standby.call("POST", "/jobs", bad)
        assert status == 400, body
        fields = {e.split(": ", 1)[0] for e in body["errors"]}
        assert {"vertices[0].parallelism", "edges[0].target"} <= fields, body
        status, body = await on_leader.call("POST", "/jobs", raw=b"{not json")
        assert status == 400 and "not valid JSON" in body["errors"][0], body
        status, body = await on_leader.call("POST", "/jobs", {"jobGraphFileName": "g.bin"})
        assert status == 400 and "jobGraphFileName" in body["errors"][0], body
        status, body = await on_leader.call("POST", "/jobs", raw=b" " * (1_048_576 + 1))
        assert status == 413, body

        # Rejected by the leader: 422 with its reasons (a savepoint that is not there).
        missing = job_body("rejected", savepoint_path=str(tmp_path / "no-such-savepoint"))
        status, body = await on_leader.call("POST", "/jobs", missing)
        assert status == 422, body
        assert any("does not exist" in e for e in body["errors"]), body

        # Accepted, through the standby: the answer names the job once the leader decided.
        status, body = await on_standby.call("POST", "/v1/jobs", job_body("a"))
        assert status == 202, body
        assert body["jid"] == "a" and body["jobUrl"] == "/jobs/a" and body["status"] == "accepted"
        accepted_at = body["jm-journal-offset"]
        events = await journal.wait_until(lambda es: len(es) > accepted_at)
        assert isinstance(dict(events)[accepted_at], ev.JobAccepted)
        status, body = await on_leader.call("POST", "/jobs", job_body("b"))
        assert status == 202, body
        await journal.wait_until(
            lambda es: sum(isinstance(e, ev.CheckpointCompleted) and e.job_id == "a"
                           for _, e in es) >= 1, seconds=60,
        )  # fmt: skip

        # Savepoint through the leader: a trigger id, then Flink's status shape.
        target = tmp_path / "savepoints"
        status, body = await on_leader.call(
            "POST", "/jobs/a/savepoints", {"target-directory": str(target), "cancel-job": False}
        )
        assert status == 202, body
        trigger = body["request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trigger)
        done = await on_leader.operation("a", trigger)
        assert "location" in done["operation"], done
        location = Path(done["operation"]["location"])
        assert location.parent == target and (location / "_metadata").is_file(), done
        assert "failure-cause" not in done["operation"]
        status, body = await on_leader.call("GET", f"/jobs/a/savepoints/{'0' * 32}")
        assert status == 404, body

        # A savepoint the leader refuses ends COMPLETED with a failure cause.
        status, body = await on_leader.call("POST", "/jobs/a/savepoints",
                                            {"target-directory": "relative/dir"})  # fmt: skip
        assert status == 400 and body["errors"][0].startswith("target-directory:"), body

        # Stop with savepoint through the standby: its trigger is followed there; FINISHED.
        status, body = await on_standby.call(
            "POST", "/jobs/a/stop", {"targetDirectory": f"file://{target}", "drain": False}
        )
        assert status == 202, body
        done = await on_standby.operation("a", body["request-id"])
        stopped = Path(done["operation"]["location"])
        assert stopped.parent == target and (stopped / "_metadata").is_file(), done
        events = await journal.wait_until(lambda es: status_of(es, "a") == ev.JobStatus.FINISHED)
        (completed,) = [e for _, e in events if isinstance(e, ev.SavepointCompleted)
                        and e.request_event_id == body["request-id"]]  # fmt: skip
        assert completed.savepoint_path == str(stopped)
        status, body = await on_standby.call("POST", "/jobs/a/stop", {"drain": True})
        assert status == 400 and body["errors"][0].startswith("drain:"), body

        # Cancel: 202, then CANCELED; unknown 404; ended 409. The dashboard's GET form.
        status, body = await on_standby.call("PATCH", "/jobs/b?mode=cancel")
        assert status == 202, body
        await journal.wait_until(lambda es: status_of(es, "b") == ev.JobStatus.CANCELED)
        status, body = await on_leader.call("PATCH", "/jobs/nope?mode=cancel")
        assert status == 404, body
        status, body = await on_leader.call("PATCH", "/jobs/b?mode=cancel")
        assert status == 409 and "CANCELED" in body["errors"][0], body
        status, body = await on_leader.call("PATCH", "/jobs/b?mode=stop")
        assert status == 400 and body["errors"][0].startswith("mode:"), body
        # Through the standby the moment the leader accepted it: the standby catches up
        # with the journal before it would say 404.
        status, body = await on_leader.call("POST", "/jobs", job_body("c"))
        assert status == 202, body
        status, body = await on_standby.call("GET", "/jobs/c/yarn-cancel")
        assert status == 202, body
        await journal.wait_until(lambda es: status_of(es, "c") == ev.JobStatus.CANCELED)

        for api in (on_leader, on_standby):  # nor shown by the configuration
            status, body = await api.call("GET", "/jobmanager/config", token=None)
            assert status == 200 and TOKEN not in json.dumps(body), body
    for proc in (leader, standby):  # the token is never logged
        assert TOKEN not in proc.output()


async def test_a_replica_that_cannot_lead_answers_with_a_timeout(cluster: Cluster) -> None:
    alone = CoordinatorProcess(cluster.stack, cluster.catalog, "no-redis",
                               redis_url="redis://127.0.0.1:1/0")  # fmt: skip
    cluster.exits.callback(alone.stop)
    async with aiohttp.ClientSession() as session:
        http = Http(session, await rest_url(alone), None)
        status, body = await http.call("POST", "/jobs?timeout=2", job_body("queued"))
    assert status == 504, body
    assert "no leader answered within 2s" in body["errors"][0], body


def jm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True,
                          text=True, env=full, cwd=REPO, timeout=120, check=False)  # fmt: skip


async def test_cli_uses_the_api_and_falls_back_to_kafka(cluster: Cluster) -> None:
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    conn = ["--bootstrap-servers", cluster.stack.bootstrap, "--cluster-id",
            cluster.catalog.cluster_id]  # fmt: skip
    async with aiohttp.ClientSession() as session, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        url = await rest_url(leader)
        await journal.wait_until(lambda es: joined(es, "tm-1"))
        status, body = await Http(session, url, None).call("POST", "/jobs", job_body("cli"))
        assert status == 202, body
        await journal.wait_until(lambda es: status_of(es, "cli") == ev.JobStatus.RUNNING)

        listed = await asyncio.to_thread(jm, "list", *conn, "--url", url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["job_id"] for r in json.loads(listed.stdout)["jobs"]] == ["cli"]
        assert "reading Kafka" not in listed.stderr

        shown = await asyncio.to_thread(jm, "status", *conn, "cli", env={"JM_REST_URL": url})
        assert shown.returncode == 0, shown.stderr
        assert "RUNNING" in shown.stdout and f"REST API at {url}" in shown.stderr

        # Nothing listens there: said on stderr, and Kafka answers the same.
        dead = "http://127.0.0.1:9"
        fallback = await asyncio.to_thread(jm, "list", *conn, "--url", dead, "--json")
        assert fallback.returncode == 0, fallback.stderr
        assert f"no REST API answers at {dead}" in fallback.stderr
        assert "reading Kafka instead" in fallback.stderr
        assert [r["job_id"] for r in json.loads(fallback.stdout)["jobs"]] == ["cli"]

        cancelled = await asyncio.to_thread(jm, "cancel", *conn, "cli", "--url", url, "--wait")
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == "CANCELED"
        assert f"REST API at {url}" in cancelled.stderr
        again = await asyncio.to_thread(jm, "cancel", *conn, "cli", "--url", url)
        assert again.returncode == 1 and "CANCELED" in again.stderr, again.stderr
