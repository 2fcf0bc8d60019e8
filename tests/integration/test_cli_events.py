"""``jm events`` shows what each topic holds, readably, and refuses bad flags without a traceback.

Real processes: a coordinator dead-letters what it cannot read, and ``jm`` runs as
its own process against the real broker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.conftest import Stack, TopicFactory
from tests.integration.harness import Cluster
from tests.integration.test_cli_submit import jm

pytestmark = pytest.mark.integration


def test_a_bad_since_is_a_usage_error_without_a_traceback(stack: Stack, catalog: Catalog) -> None:
    done = jm(stack, catalog, "events", "dump", "--topic", "journal", "--since", "garbage")
    assert done.returncode == 2
    assert done.stderr == (
        "jm: 'garbage' is not a time: use ISO 8601, epoch ms, or a duration like 15m\n"
    )
    assert done.stdout == ""


async def _dead_letter_rows(stack: Stack, catalog: Catalog, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 60
    while True:
        dump = await asyncio.to_thread(
            jm, stack, catalog, "events", "dump", "--topic", "deadletter", "--json"
        )
        assert dump.returncode == 0, dump.stderr
        rows = [json.loads(line) for line in dump.stdout.splitlines()]
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"not {count} dead letters in 60 s: {rows}"
        await asyncio.sleep(0.5)


async def test_dead_letters_show_text_as_text_and_bytes_as_base64(
    stack: Stack, catalog: Catalog, cluster: Cluster
) -> None:
    leader = cluster.coordinator("c1")
    await leader.wait_for_line("leads with epoch 1")
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(catalog.submissions.name, b"hello, not avro", key=b"my-job",
                                     partition=0, headers=[("source", b"curl")])  # fmt: skip
        await producer.send_and_wait(catalog.submissions.name, b"\xff\xfe", key=b"\xff\x00",
                                     partition=0, headers=[("blob", b"\x00\x01")])  # fmt: skip
    finally:
        await producer.stop()

    rows = await _dead_letter_rows(stack, catalog, 2)
    text, binary = (r["event"] for r in rows)
    assert isinstance(text, dict) and isinstance(binary, dict)
    assert text["original_key"] == "my-job"
    assert text["original_value"] == "hello, not avro"
    assert text["original_headers"] == [{"key": "source", "value": "curl"}]
    assert binary["original_key"] == "base64:/wA="
    assert binary["original_value"] == "base64://4="
    assert binary["original_headers"] == [{"key": "blob", "value": "base64:AAE="}]
    assert rows[0]["key"] == "my-job"  # the dead letter's own key: the original's

    human = jm(stack, catalog, "events", "dump", "--topic", "deadletter").stdout.splitlines()
    assert len(human) == 2
    source = f"from {catalog.submissions.name}[0]@"
    assert f"DeadLetter BadMagicError {source}" in human[0]
    assert "value starts with b'he', expected C3 01" in human[0]
    assert "key=my-job headers={source=curl}" in human[0]
    assert "value=15 bytes: hello, not avro" in human[0]
    assert "key=base64:/wA= headers={blob=base64:AAE=}" in human[1]
    assert "UNDECODABLE" not in "\n".join(human)


async def test_data_plane_topics_are_shown_as_data(
    stack: Stack, catalog: Catalog, new_topic: TopicFactory, unique: Callable[[str], str]
) -> None:
    sink = await new_topic("sink")
    edge = f"{catalog.prefix}.edge.{unique('job')}.a0.src.dst"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(edge, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        data_headers = [("jm-vertex", b"src"), ("jm-subtask", b"0"), ("jm-attempt", b"0")]
        await producer.send_and_wait(edge, b'{"word":"hello"}', key=b"hello",
                                     headers=[*data_headers, ("jm-kind", b"data")])  # fmt: skip
        await producer.send_and_wait(edge, b"", headers=[*data_headers, ("jm-kind", b"end")])
        await producer.send_and_wait(sink, b'{"key":"a","count":3}', key=b"a")

        shown = jm(stack, catalog, "events", "dump", "--topic", edge)
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0 and len(lines) == 2, shown.stdout + shown.stderr
        assert "DATA key=hello headers={jm-vertex=src, jm-subtask=0, jm-attempt=0, " in lines[0]
        assert lines[0].endswith('jm-kind=data} {"word":"hello"}')
        assert "jm-kind=end}" in lines[1]
        assert "is an edge topic of a job" in shown.stderr
        assert "UNDECODABLE" not in shown.stdout

        await producer.send_and_wait(catalog.state.name, b"\x00chunk", key=b"uid/0")
        state = jm(stack, catalog, "events", "dump", "--topic", "state")
        (line,) = state.stdout.splitlines()
        assert state.returncode == 0 and "DATA key=uid/0" in line, state.stdout + state.stderr
        assert "holds checkpoint state chunks" in state.stderr

        sunk = jm(stack, catalog, "events", "dump", "--topic", sink, "--json")
        (row,) = [json.loads(line) for line in sunk.stdout.splitlines()]
        assert row["data"] == '{"key":"a","count":3}' and row["key"] == "a"
    finally:
        await producer.stop()
        await admin.delete_topics([edge])
        await admin.close()


async def test_each_topic_is_read_with_its_own_size_limit(stack: Stack, catalog: Catalog) -> None:
    # A dead letter keeps the original record whole: over the 1 MiB of most topics,
    # within the dead-letter topic's 2 MiB.
    big = b"x" * 1_500_000
    dead = ev.DeadLetter(
        event_id="deadletter:big", event_time=1, source_topic=catalog.submissions.name,
        partition=0, offset=7, original_key=b"k", original_value=big, reason="too odd",
        error_kind="BadMagicError",
    )  # fmt: skip
    value, headers = default_codec().encode(dead)
    assert len(value) > 1_048_576
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        await producer.send_and_wait(catalog.deadletter.name, value, key=b"k", headers=headers)
    finally:
        await producer.stop()
    shown = jm(stack, catalog, "events", "dump", "--topic", "deadletter")
    assert shown.returncode == 0, shown.stderr
    assert "DeadLetter BadMagicError" in shown.stdout and "value=1500000 bytes" in shown.stdout
    assert "UNDECODABLE" not in shown.stdout
