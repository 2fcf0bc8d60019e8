"""The README's Kafka tool commands run as written (issue 11, item 8): the console
consumer of "Inspecting the log" reads the journal with read_committed, so a record
of an aborted transaction never shows. Real broker, Kafka's own tool (compose/local/bin)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import time
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


@pytest.mark.timeout(600)  # three Kafka nodes start: a minute or more on a loaded machine
async def test_readme_make_up_brokers_3_starts_three_kafka_brokers(tmp_path: Path) -> None:
    """`make up BROKERS=3` as the README has it, as an instance of its own (JM_PORTS=auto,
    JM_LOCAL_HOME, JM_LOCAL_NAME): three brokers answer, `make env` gives all three and
    the catalog's replication factor. `-o deps`: the suite's environment is installed."""
    from aiokafka.admin import AIOKafkaAdminClient

    argv = readme_command("make up BROKERS=3")
    argv = argv[: next((i for i, a in enumerate(argv) if a.startswith("#")), None)]
    assert argv == ["make", "up", "BROKERS=3"]
    name = f"readme-{os.getpid()}"
    env = dict(os.environ, JM_PORTS="auto", JM_LOCAL_HOME=str(tmp_path), JM_LOCAL_NAME=name,
               PYTHON=sys.executable)  # fmt: skip
    try:
        up = await asyncio.to_thread(subprocess.run, [argv[0], "-o", "deps", *argv[1:]],
                                     cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        done = await asyncio.to_thread(subprocess.run, ["make", "-s", "env"], cwd=REPO, env=env,
                                       capture_output=True, text=True, check=True)  # fmt: skip
        out = done.stdout
        exported = dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))
        assert exported["JM_REPLICATION_FACTOR"] == "3"
        bootstrap = exported["KAFKA_BOOTSTRAP_SERVERS"]
        assert len(bootstrap.split(",")) == 3
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:  # ready means reachable: the last broker may still be registering
            deadline = time.monotonic() + 60
            cluster = await admin.describe_cluster()
            while len(cluster["brokers"]) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        print(f"make up BROKERS=3: {bootstrap}, brokers {cluster['brokers']}")
        assert len(cluster["brokers"]) == 3
    finally:
        launcher = str(REPO / "compose" / "local" / "launcher.py")
        await asyncio.to_thread(subprocess.run, [sys.executable, launcher, "--name", name,
                                "--home", str(tmp_path), "down", "--purge"],
                                capture_output=True, check=False)  # fmt: skip
