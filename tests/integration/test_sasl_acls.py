"""SASL and Kafka ACLs per role, on a broker of its own (issue 14, items 1-2).

The test starts a local broker with ``launcher.py up --secure`` (a SASL_PLAINTEXT
listener, PLAIN and SCRAM-SHA-256, the KRaft StandardAuthorizer; ``admin`` is the
super user), applies ``jm acls --apply`` as admin, then checks each role's limits
and runs a whole cluster (coordinator, worker with its slot processes, ``jm submit``)
under those ACLs. If the broker cannot start, the test fails: it never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from schemas.catalog import Catalog
from tests.conftest import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "compose" / "local" / "launcher.py"
JOB = """name: secured
vertices:
  - {{id: numbers, operator: sequence, parallelism: 1, config: {{count: 300}}}}
  - {{id: keyed, operator: map, parallelism: 1, config: {{function: mod_key, n: 10}}}}
  - {{id: sink, operator: kafka_sink, parallelism: 1, config: {{topic: {topic}, key_field: key}}}}
edges:
  - {{source: numbers, target: keyed, partitioning: FORWARD}}
  - {{source: keyed, target: sink, partitioning: FORWARD}}
restart_strategy: {{kind: NONE}}
"""


@pytest.fixture(scope="module")
def secure(stack: Stack) -> Iterator[dict[str, Any]]:
    """A broker with SASL and ACLs; its addresses and the users' passwords."""
    name = f"sasl-{uuid.uuid4().hex[:8]}"
    base = [sys.executable, str(LAUNCHER), "--name", name]
    up = subprocess.run([*base, "up", "--ports", "auto", "--secure", "--no-redis", "--json"],
                        capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    try:
        assert up.returncode == 0, f"the secure broker did not start:\n{up.stdout}{up.stderr}"
        info: dict[str, Any] = json.loads(up.stdout.strip().splitlines()[-1])
        info["users"] = json.loads(Path(info["users_file"]).read_text())
        info["redis_url"] = stack.redis_url  # the suite's Redis (the broker runs without one)
        yield info
    finally:
        subprocess.run([*base, "down", "--purge"], capture_output=True, timeout=120, check=False)


def env_of(
    secure: dict[str, Any], user: str, cluster: str, mechanism: str = "PLAIN"
) -> dict[str, str]:
    """The environment of a process of `cluster` that connects as `user`."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=secure["sasl_bootstrap"],
               REDIS_URL=secure["redis_url"],
               JM_CLUSTER_ID=cluster, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               JM_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", JM_KAFKA_SASL_MECHANISM=mechanism,
               JM_KAFKA_SASL_USERNAME=user,
               JM_KAFKA_SASL_PASSWORD=secure["users"][user])  # fmt: skip
    return env


def start(log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A ``jm`` process (coordinator, worker) writing to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "coordinator", *args], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def jm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=180, check=False)  # fmt: skip


async def write(secure: dict[str, Any], user: str, topic: str, mechanism: str = "PLAIN") -> str:
    """'ok' if `user` may write a record to `topic`, else the error's class name."""
    producer = AIOKafkaProducer(
        bootstrap_servers=secure["sasl_bootstrap"], security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism, sasl_plain_username=user,
        sasl_plain_password=secure["users"][user], request_timeout_ms=15000,
    )  # fmt: skip
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"not a real event", key=b"x")
        return "ok"
    except KafkaError as err:
        return type(err).__name__
    finally:
        await producer.stop()


async def test_roles_are_limited_and_a_cluster_runs_under_its_acls(
    secure: dict[str, Any], tmp_path: Path
) -> None:
    cluster = f"acl-{uuid.uuid4().hex[:8]}"
    catalog = Catalog(cluster)
    admin = env_of(secure, "admin", cluster)
    sink_topic = f"{cluster}-out"
    assert jm(admin, "topics", "create").returncode == 0
    made = jm(admin, "acls", cluster, "--client", "client", "--worker", "worker",
              "--coordinator", "coordinator", "--reader", "reader", "--job-topic", sink_topic,
              "--apply")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "ACL entries created" in made.stderr
    # The sink topic exists before the job (kafka_sink never creates it); made as admin.
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    plain = AIOKafkaAdminClient(bootstrap_servers=secure["bootstrap"])
    await plain.start()
    try:
        await plain.create_topics([NewTopic(sink_topic, 1, 1)])
    finally:
        await plain.close()

    # A client submits, and cannot write the journal or the commands topic.
    assert await write(secure, "client", catalog.submissions.name) == "ok"
    for topic in (catalog.journal.name, catalog.commands.name):
        assert await write(secure, "client", topic) == TopicAuthorizationFailedError.__name__
    # A worker (SCRAM-SHA-256 here) writes its reports, never the journal.
    assert await write(secure, "worker", catalog.reports.name, "SCRAM-SHA-256") == "ok"
    denied = await write(secure, "worker", catalog.journal.name, "SCRAM-SHA-256")
    assert denied == TopicAuthorizationFailedError.__name__
    # A reader writes nothing.
    denied = await write(secure, "reader", catalog.submissions.name)
    assert denied == TopicAuthorizationFailedError.__name__
    # Wrong password: not authenticated at all.
    wrong = dict(secure, users={**secure["users"], "client": "wrong"})
    assert await write(wrong, "client", catalog.submissions.name) != "ok"

    # The whole cluster under those ACLs: coordinator, worker (slot processes), jm submit.
    coordinator = start(tmp_path / "coordinator.log", env_of(secure, "coordinator", cluster),
                        "coordinator", "--id", "c1", "--rest-port", "0",
                        "--lease-ttl-ms", "1500")  # fmt: skip
    worker = start(tmp_path / "worker.log", env_of(secure, "worker", cluster, "SCRAM-SHA-256"),
                   "worker", "--id", "w1", "--slots", "4")  # fmt: skip
    try:
        job = tmp_path / "job.yaml"
        job.write_text(JOB.format(topic=sink_topic))
        done = await asyncio.to_thread(
            jm, env_of(secure, "client", cluster), "submit", str(job), "--job-id", "secured-1",
            "--wait", "FINISHED", "--timeout", "120",
        )  # fmt: skip
        output = {n: (tmp_path / f"{n}.log").read_text() for n in ("coordinator", "worker")}
        assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{output}"
        status = jm(env_of(secure, "reader", cluster), "status", "secured-1")
        assert status.returncode == 0 and "FINISHED" in status.stdout, status.stderr
        for text in output.values():  # no password in any log
            assert not any(p in text for p in secure["users"].values())
        assert "sasl-password=***" in output["coordinator"]
    finally:
        for proc in (worker, coordinator):
            proc.terminate()
        for proc in (worker, coordinator):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
