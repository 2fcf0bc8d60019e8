"""The README's Kafka tool commands run as written (issue 11, item 8): the console
consumer of "Inspecting the log" reads the journal with read_committed, so a record
of an aborted transaction never shows. Real broker, Kafka's own tool (compose/local/bin)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.catalog import Catalog
from tests.conftest import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def readme_command(tool: str) -> list[str]:
    """The README's first command line of `tool`, continuation lines joined, as argv."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^({re.escape(tool)} (?:.*\\\n)*.*)$", text, re.M)
    assert match is not None, f"README has no {tool} command"
    return shlex.split(match.group(1).replace("\\\n", " "))


async def _journal_with_an_aborted_transaction(stack: Stack, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap,
                                transactional_id=f"{topic}.readme-test")  # fmt: skip
    await producer.start()
    try:
        for value, commit in ((b"committed-1", True), (b"aborted", False), (b"committed-2", True)):
            await producer.begin_transaction()
            await producer.send_and_wait(topic, value, key=b"job-1", partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def test_readme_console_consumer_reads_the_journal_read_committed(
    stack: Stack, catalog: Catalog
) -> None:
    argv = readme_command("compose/local/bin/kafka-console-consumer")
    assert "--isolation-level" in argv and "read_committed" in argv
    assert "jm.journal" in argv
    await _journal_with_an_aborted_transaction(stack, catalog.journal.name)
    argv = [catalog.journal.name if a == "jm.journal" else a for a in argv]
    argv[0] = str(REPO / argv[0])
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap)
    done = await asyncio.to_thread(
        subprocess.run, [*argv, "--max-messages", "2", "--timeout-ms", "60000"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.rsplit("\t", 1)[-1] for line in lines] == ["committed-1", "committed-2"]
    assert all("job-1" in line for line in lines)
    assert "aborted" not in done.stdout
