"""Every file in docs/examples runs on a real coordinator and real workers to the outcome
docs/examples/README.md documents (issue 11, item 5).

Files are found by glob: an example without an entry in OUTCOMES fails
``test_every_example_has_an_outcome``. Topic names in the files are shared by every
cluster on a broker, so each run prefixes them (``<unique>.<topic>``), creates the input
topics with the records README.md describes, and deletes every topic afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from coordinator import usercode
from schemas import events as ev
from schemas import kafkaio
from schemas.jobgraph import job_file_code, load_job_file
from tests.conftest import Stack, run_keys
from tests.integration.harness import Cluster, Journal, Producer, joined, now_ms, status_of

pytestmark = pytest.mark.integration

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.*") if p.suffix in (".yaml", ".yml", ".json"))
Records = list[dict[str, Any]]
#: (topic as the file names it, records in it) -> whether the outcome is reached.
Check = Callable[[Callable[[str], Records]], bool]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What README.md says an example needs and what it ends with."""

    status: ev.JobStatus  # FINISHED, or RUNNING for an unbounded job (then canceled)
    check: Check  # on the output topics, once FINISHED (or until true while RUNNING)
    inputs: dict[str, Records] = dataclasses.field(default_factory=dict)
    restarts: int = 0
    checkpointed: bool = False  # at least one checkpoint completes


def last_per_key(records: Records, key: str, value: str) -> dict[str, Any]:
    return {str(r[key]): r[value] for r in records}


WORDS = ["the cat sat", "on the mat", "the end"]
PAYMENTS = [{"amount": a} for a in range(1, 21)]
CLICKS = [{"user_id": f"u{i % 3}", "page": i} for i in range(10)]

OUTCOMES: dict[str, Outcome] = {
    "keyed-count.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            last_per_key(out("numbers.counts"), "key", "count")
            == {str(k): 10_000 for k in range(10)}
        ),
    ),
    "checkpointed-count.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            last_per_key(out("numbers.checkpointed"), "key", "count")
            == {str(k): 2_500 for k in range(8)}
        ),
        checkpointed=True,
    ),
    "fan-out.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: len(out("numbers.audit")) == 3_000 and len(out("numbers.spread")) == 1_000,
    ),
    "fault-restart.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            last_per_key(out("numbers.counts"), "key", "count") == {str(k): 100 for k in range(10)}
        ),
        restarts=1,
    ),
    "filter-map.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: sorted(r["n"] for r in out("numbers.even")) == list(range(0, 100, 2)),
        inputs={"numbers.raw": [{"n": str(i)} for i in range(100)]},
    ),
    "wordcount.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            last_per_key(out("words.counts"), "word", "count")
            == {"the": 3, "cat": 1, "sat": 1, "on": 1, "mat": 1, "end": 1}
        ),
        inputs={"words.in": [{"value": line} for line in WORDS]},
    ),
    "enrich-broadcast.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            sorted(json.dumps(r, sort_keys=True) for r in out("orders.enriched"))
            == sorted(
                [json.dumps({"order": i}) for i in range(20)]
                + 3 * [json.dumps({"rule": r}) for r in ("a", "b")]
            )
        ),
        inputs={
            "orders": [{"order": i} for i in range(20)],
            "pricing.rules": [{"rule": "a"}, {"rule": "b"}],
        },
    ),
    "clicks.json": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: (
            last_per_key(out("clicks.per-user"), "user_id", "count") == {"u0": 4, "u1": 3, "u2": 3}
        ),
        inputs={"clicks": CLICKS},
    ),
    "keyed-reduce.yaml": Outcome(
        ev.JobStatus.RUNNING,
        lambda out: (
            last_per_key(out("payments.sums"), "key", "amount")
            == {"0": 60, "1": 45, "2": 50, "3": 55}
        ),
        inputs={"payments": PAYMENTS},
    ),
    "user-code.yaml": Outcome(
        ev.JobStatus.FINISHED,
        lambda out: len(out("squares.totals")) == 20 and out("squares.totals")[-1]["total"] == 2470,
    ),
    "passthrough.yaml": Outcome(
        ev.JobStatus.RUNNING,
        lambda out: sorted(r["i"] for r in out("copied.events")) == list(range(5)),
        inputs={"raw.events": [{"i": i} for i in range(5)]},
    ),
}


def test_every_example_has_an_outcome() -> None:
    """A new example needs an entry here and a line in README.md."""
    names = {p.name for p in EXAMPLES}
    assert names == set(OUTCOMES)
    readme = (EXAMPLES_DIR / "README.md").read_text()
    assert [n for n in sorted(names) if f"`{n}`" not in readme] == []


def with_topics(job: ev.JobSubmitted, rename: Callable[[str], str]) -> ev.JobSubmitted:
    """The job with every Kafka source and sink topic renamed."""
    vertices = tuple(
        dataclasses.replace(v, config={**v.config, "topic": rename(v.config["topic"])})
        if "topic" in v.config and v.operator in ("kafka_source", "kafka_sink")
        else v
        for v in job.job_graph.vertices
    )
    return dataclasses.replace(job, job_graph=dataclasses.replace(job.job_graph, vertices=vertices))


class Topics:
    """The example's topics under a unique prefix: inputs produced, outputs read."""

    def __init__(self, stack: Stack, prefix: str) -> None:
        self.stack = stack
        self.prefix = prefix
        self.read: dict[str, Records] = {}

    def name(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    async def produce(self, inputs: dict[str, Records]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        try:
            new = [NewTopic(self.name(t), 2, 1) for t in inputs]
            if new:
                await admin.create_topics(new)
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=self.stack.bootstrap, acks="all")
        await producer.start()
        try:
            for topic, records in inputs.items():
                for record in records:
                    await producer.send_and_wait(self.name(topic), json.dumps(record).encode())
        finally:
            await producer.stop()

    async def refresh(self, topics: list[str]) -> None:
        """Read every record of `topics` (as the file names them) into self.read."""
        names = [self.name(t) for t in topics]
        described = await kafkaio.describe_topics(self.stack.bootstrap, names)
        for topic in topics:
            self.read[topic] = []
        existing = [t for t in topics if self.name(t) in described]
        if not existing:  # (a consumer stopped before any assign raises CancelledError)
            return
        consumer = kafkaio.consumer(self.stack.bootstrap)
        await consumer.start()
        try:
            for topic in existing:
                state = described[self.name(topic)]
                tps = [TopicPartition(self.name(topic), p) for p in range(state.partitions)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                records: Records = []
                while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                    for batch in (await consumer.getmany(*tps, timeout_ms=500)).values():
                        records.extend(json.loads(r.value or b"{}") for r in batch)
                self.read[topic] = records
        finally:
            await consumer.stop()

    async def delete(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(f"{self.prefix}.")]
            with contextlib.suppress(Exception):
                await admin.delete_topics(mine)
        finally:
            await admin.close()


@pytest.fixture
async def topics(stack: Stack, unique: Callable[[str], str]) -> AsyncIterator[Topics]:
    t = Topics(stack, unique("ex"))
    try:
        yield t
    finally:
        await t.delete()


def output_topics(job: ev.JobSubmitted) -> list[str]:
    return [v.config["topic"] for v in job.job_graph.vertices if v.operator == "kafka_sink"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_runs_to_its_documented_outcome(
    path: Path, cluster: Cluster, topics: Topics
) -> None:
    outcome = OUTCOMES[path.name]
    job = load_job_file(path, event_time=now_ms())
    outputs = output_topics(job)
    job = with_topics(job, topics.name)
    await topics.produce(outcome.inputs)
    await cluster.coordinator("c1").wait_for_line("role LEADER")
    cluster.worker("tm-1", 6)
    cluster.worker("tm-2", 6)

    def out(topic: str) -> Records:
        return topics.read[topic]

    async with Producer(cluster.stack, cluster.catalog) as client, \
            Journal(cluster.stack, cluster.catalog) as journal:  # fmt: skip
        await journal.wait_until(lambda es: joined(es, "tm-1", "tm-2"))
        code = job_file_code(path)
        if code is not None:  # the job's own package, stored as `jm submit` stores it
            ref = await usercode.upload(*usercode.package(code), store_url="kafka",
                                        catalog=cluster.catalog, bootstrap=cluster.stack.bootstrap,
                                        keys=run_keys())  # fmt: skip
            job = usercode.with_artifact(job, ref)
        await client.send(job)
        ended = {ev.JobStatus.FINISHED, ev.JobStatus.FAILED, ev.JobStatus.CANCELED}
        if outcome.status is ev.JobStatus.RUNNING:
            await journal.wait_until(lambda es: status_of(es, job.job_id) is ev.JobStatus.RUNNING)
            deadline = time.monotonic() + 60
            while True:  # unbounded: the outputs arrive while it runs
                await topics.refresh(outputs)
                if outcome.check(out):
                    break
                await journal.read()
                assert status_of(journal.events, job.job_id) not in ended
                assert time.monotonic() < deadline, {t: out(t)[-10:] for t in outputs}
                await asyncio.sleep(0.5)
            cancel = ev.JobCancelRequested(
                event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job.job_id
            )
            await client.send(cancel)
            events = await journal.wait_until(lambda es: status_of(es, job.job_id) in ended)
            assert status_of(events, job.job_id) is ev.JobStatus.CANCELED
        else:
            events = await journal.wait_until(
                lambda es: status_of(es, job.job_id) in ended, seconds=120
            )
            assert status_of(events, job.job_id) is outcome.status
            await topics.refresh(outputs)
            assert outcome.check(out), {t: out(t)[-10:] for t in outputs}
    restarts = sum(isinstance(e, ev.RestartScheduled) for _, e in events)
    assert restarts == outcome.restarts
    completed = any(isinstance(e, ev.CheckpointCompleted) for _, e in events)
    assert completed or not outcome.checkpointed
