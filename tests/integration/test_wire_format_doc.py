"""docs/wire-format.md is enough for an outside client (issue 11, item 8): a job made by
the doc's producer snippet (fastavro only), sent by a plain Kafka producer, runs to
FINISHED on a real coordinator and worker, and the doc's reader snippet follows it in
the journal with read_committed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.avrogen import AVRO_DIR
from schemas.signing import ENV_FILE
from tests.conftest import TopicFactory
from tests.integration.harness import Cluster
from tests.schemas.test_schemas_docs import doc_snippet, latest_avsc

pytestmark = pytest.mark.integration


def signing_key(role: str) -> dict[str, str]:
    """The role's signing key in the run's key file, as an outside client reads it."""
    key: dict[str, str] = json.loads(Path(os.environ[ENV_FILE]).read_text())[role][0]
    return key


async def test_the_docs_snippets_submit_a_job_and_follow_it(
    cluster: Cluster, new_topic: TopicFactory
) -> None:
    make = doc_snippet("job_submitted_record")["job_submitted_record"]
    sign = doc_snippet("jm_signature")["jm_signature"]  # the doc's, not schemas.signing
    reader = doc_snippet("decode_value")
    readers = reader["load_readers"](str(AVRO_DIR))
    source, sink = await new_topic("in"), await new_topic("out")
    bootstrap = cluster.stack.bootstrap
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)  # fmt: skip
    await producer.start()
    await consumer.start()
    journal = TopicPartition(cluster.catalog.journal.name, 0)
    consumer.assign([journal])
    await consumer.seek_to_beginning(journal)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def until(what: str, check: Any) -> None:
        deadline = time.monotonic() + 90
        while not any(check(name, fields) for name, fields in seen):
            assert time.monotonic() < deadline, f"no {what} in the journal: {seen[-10:]}"
            for record in (await consumer.getmany(journal, timeout_ms=500)).get(journal, []):
                seen.append(reader["decode_value"](readers, record.value))

    try:
        for n in range(3):
            await producer.send_and_wait(source, json.dumps({"n": n}).encode())
        await until("worker", lambda name, f: name == "TaskManagerJoined")
        key, value, headers = make(str(latest_avsc("JobSubmitted")), "doc-job", source, sink)
        topic = cluster.catalog.submissions.name
        client_key = signing_key("client")
        headers.append(sign(client_key["id"], client_key["secret"], topic, key, value))
        await producer.send_and_wait(topic, value, key=key, headers=headers)
        await until(
            "end of doc-job",
            lambda name, f: name == "JobStatusChanged" and f["job_id"] == "doc-job"
            and f["to_status"] in {"FINISHED", "FAILED"},
        )  # fmt: skip
        accepted = [f for name, f in seen if name == "JobAccepted"]
        assert [a["submission"]["job_id"] for a in accepted] == ["doc-job"]
        assert accepted[0]["submission"]["restart_strategy"]["kind"] == "FIXED_DELAY"
        final = [f["to_status"] for name, f in seen if name == "JobStatusChanged"]
        assert final[-1] == "FINISHED"
        out = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                               isolation_level="read_committed")  # fmt: skip
        await out.start()
        try:
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while len(got) < 3 and time.monotonic() < deadline:
                for records in (await out.getmany(timeout_ms=1_000)).values():
                    got.extend(json.loads(r.value or b"{}") for r in records)
        finally:
            await out.stop()
        assert sorted(g["n"] for g in got) == [0, 1, 2]
    finally:
        await consumer.stop()
        await producer.stop()
