"""``jm submit`` and ``jm events`` against the real broker, and the same record seen by kcat."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.catalog import Catalog
from tests.conftest import Stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def jm(stack: Stack, catalog: Catalog, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap, REDIS_URL=stack.redis_url,
               JM_CLUSTER_ID=catalog.cluster_id)  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip


def test_invalid_job_is_refused_with_every_problem(stack: Stack, catalog: Catalog) -> None:
    done = jm(stack, catalog, "submit", "tests/fixtures/jobs/invalid.yaml")
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    text = "\n".join(problems)
    assert "vertices[0].parallelism" in text
    assert "vertices[1].id" in text  # duplicate id
    assert "edges[0].target" in text  # names no vertex
    assert "edges[1].key_field" in text  # HASH without a key
    assert "restart_strategy.attempts" in text
    assert len(problems) >= 5
    # Nothing was produced.
    dump = jm(stack, catalog, "events", "dump", "--topic", "submissions", "--json")
    assert dump.returncode == 0 and dump.stdout == ""


def test_valid_job_is_produced_decoded_and_labelled(stack: Stack, catalog: Catalog) -> None:
    done = jm(stack, catalog, "submit", "docs/examples/wordcount.yaml", "--job-id", "wc-test",
              "--no-wait")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wc-test"

    dump = jm(stack, catalog, "events", "dump", "--topic", "submissions", "--json")
    rows = [json.loads(line) for line in dump.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "JobSubmitted" and row["key"] == "wc-test"
    assert row["event"]["job_id"] == "wc-test"
    assert [v["id"] for v in row["event"]["job_graph"]["vertices"]] == [
        "source", "split", "count", "sink",
    ]  # fmt: skip
    assert row["headers"]["event-type"] == "JobSubmitted"

    human = jm(stack, catalog, "events", "dump", "--topic", "submissions", "--job", "wc-test")
    assert "JobSubmitted key=wc-test" in human.stdout

    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by `make deps` (Debian package kcat)"
    seen = subprocess.run(
        [kcat, "-b", stack.bootstrap, "-C", "-t", catalog.submissions.name, "-e", "-q",
         "-f", "%k|%h\n"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    key, headers = seen.strip().split("|")
    assert key == "wc-test"
    assert "event-type=JobSubmitted" in headers and "job-id=wc-test" in headers
