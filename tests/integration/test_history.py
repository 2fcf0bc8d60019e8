"""The job history server (``jm history``, a faust-streaming app) against real processes:
a ``jm coordinator`` leader, a real ``jm worker``, three jobs that end (a checkpointed
one CANCELED, one FINISHED, one FAILED after a restart). Each ended job is read from the
coordinator while it still holds it; the coordinator then archives it (it leaves its
memory) and the history server serves the same details. The history server is killed
with SIGKILL and restarted: its tables recover from their changelog topics and it
answers the same. A second history server under another name starts empty, replays
the journal from the start, and ends with the same tables."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator.history.archive import TABLES
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from tests.bench.journal import end_offset
from tests.bench.workload import JournalGenerator
from tests.conftest import Stack, run_keys
from tests.integration.harness import REPO, Cluster, Producer, now_ms
from tests.integration.test_rest_reads import Api, eventually, rest_url

pytestmark = pytest.mark.integration

#: What differs by nature between a running coordinator's answer and the archive's:
#: the clock, the offset the replica had read, and live metrics (the archive has none).
VOLATILE = ("now", "jm-journal-offset")


class HistoryProcess:
    """``python -m coordinator.history`` (``jm history``) as a real OS process."""

    def __init__(self, stack: Stack, catalog: Catalog, name: str = "history") -> None:
        self.log = Path(f"/tmp/jm-test-{catalog.cluster_id}-{name}-{uuid.uuid4().hex[:6]}.log")
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
                   JM_CLUSTER_ID=catalog.cluster_id, PYTHONUNBUFFERED="1")  # fmt: skip
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.history", "--name", name, "--port", "0",
             "--log-level", "WARNING"],
            stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"history (http://[\w.:]+)", self.output())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"jm history exited:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"jm history printed no url:\n{self.output()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _vertex(id: str, operator: str, parallelism: int, **config: str) -> ev.Vertex:
    return ev.Vertex(id=id, name=id.title(), operator=operator, parallelism=parallelism,
                     max_parallelism=8, config=config)  # fmt: skip


def checkpointed(job_id: str) -> ev.JobSubmitted:
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name="archived canceled",
        job_graph=ev.JobGraph(
            vertices=(_vertex("numbers", "sequence", 2, rate="40"),
                      _vertex("keyed", "map", 2, function="mod_key", n="3")),
            edges=(ev.Edge(source="numbers", target="keyed"),),
        ),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
        checkpoint_config=ev.CheckpointConfig(interval_ms=300, timeout_ms=10_000,
                                              tolerable_failures=1_000),
    )  # fmt: skip


def finishing(job_id: str) -> ev.JobSubmitted:
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex,
        event_time=now_ms(),
        job_id=job_id,
        name="archived ok",
        job_graph=ev.JobGraph(vertices=(_vertex("src", "sequence", 2, count="20"),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )


def failing(job_id: str) -> ev.JobSubmitted:
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name="archived failed",
        job_graph=ev.JobGraph(vertices=(_vertex("boom", "fault", 1, fail_after="3"),)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.FIXED_DELAY,
                                            attempts=1, delay_ms=100),
    )  # fmt: skip


def comparable(answer: Any) -> Any:
    """An answer without what differs by nature (VOLATILE; live vertex metrics)."""
    if isinstance(answer, dict):
        return {k: comparable(v) for k, v in answer.items() if k not in VOLATILE and k != "metrics"}
    if isinstance(answer, list):
        return [comparable(v) for v in answer]
    return answer


async def archive_of(api: Api, job_ids: list[str]) -> dict[str, Any]:
    """Every answer the history server gives about `job_ids`."""
    found: dict[str, Any] = {"overview": await api.json("/jobs/overview")}
    for job_id in job_ids:
        for path in ("", "/exceptions", "/checkpoints", "/journal"):
            found[job_id + path] = await api.json(f"/jobs/{job_id}{path}")
    return found


@pytest.mark.timeout(300)  # three faust workers start (one after a SIGKILL)
async def test_history_server_archives_recovers_and_replays(cluster: Cluster) -> None:
    leader = cluster.coordinator("c1", "--archive-after-ms", "4000")
    await leader.wait_for_line("role LEADER")
    cluster.worker("tm-1", 4)
    history = HistoryProcess(cluster.stack, cluster.catalog)
    cluster.exits.callback(history.stop)
    jobs = {
        "cp-job": checkpointed("cp-job"),
        "ok-job": finishing("ok-job"),
        "failed-job": failing("failed-job"),
    }
    async with aiohttp.ClientSession() as session, \
            Producer(cluster.stack, cluster.catalog) as client:  # fmt: skip
        coordinator = Api(session, rest_url(leader))

        async def joined() -> bool:
            return bool((await coordinator.json("/taskmanagers"))["taskmanagers"])

        await eventually(joined, "tm-1 to register")
        for job in jobs.values():
            await client.send(job)

        async def checkpoint_completed() -> bool:
            async with session.get(f"{coordinator.base}/jobs/cp-job/checkpoints") as r:
                return r.status == 200 and (await r.json())["counts"]["completed"] >= 1

        await eventually(checkpoint_completed, "a completed checkpoint of cp-job", 90)
        await client.send(
            ev.JobCancelRequested(event_id=uuid.uuid4().hex, event_time=now_ms(), job_id="cp-job")
        )

        # What the coordinator served once each job ended, before it archives them.
        served: dict[str, dict[str, Any]] = {}

        async def ended() -> bool:
            for job_id in jobs:
                if job_id in served:
                    continue
                async with session.get(f"{coordinator.base}/jobs/{job_id}") as r:
                    state = (await r.json()).get("state") if r.status == 200 else None
                if state not in ("FINISHED", "FAILED", "CANCELED"):
                    continue
                rows = (await coordinator.json("/jobs/overview"))["jobs"]
                served[job_id] = {
                    "": await coordinator.json(f"/jobs/{job_id}"),
                    "/exceptions": await coordinator.json(f"/jobs/{job_id}/exceptions"),
                    "/checkpoints": await coordinator.json(f"/jobs/{job_id}/checkpoints"),
                    "row": next(row for row in rows if row["jid"] == job_id),
                }
            return len(served) == len(jobs)

        await eventually(ended, "both jobs to end", 120)
        assert served["ok-job"][""]["state"] == "FINISHED"
        assert served["cp-job"][""]["state"] == "CANCELED"
        assert served["cp-job"]["/checkpoints"]["counts"]["completed"] >= 1
        assert served["failed-job"][""]["state"] == "FAILED"
        assert len(served["failed-job"]["/exceptions"]["exceptionHistory"]["entries"]) >= 2

        async def left_memory() -> bool:
            for job_id in jobs:
                async with session.get(f"{coordinator.base}/jobs/{job_id}") as r:
                    if r.status != 404:
                        return False
            return True

        await eventually(left_memory, "the coordinator to archive both jobs", 60)
        # The journal's end now, past the JobArchived records (less the last commit marker,
        # which no reader is handed).
        journal_read = await end_offset(cluster.stack.bootstrap, cluster.catalog) - 1

        async def folded() -> bool:
            """The history server folded the journal as far as the coordinator had read it
            (its overview lists a job as soon as it ended, before its last records)."""
            async with session.get(archive.base + "/jobs/overview") as r:
                return int(r.headers.get("X-JM-Journal-Offset", -1)) >= journal_read

        archive = Api(session, await history.url())

        async def archived() -> bool:
            async with session.get(archive.base + "/jobs/overview") as r:
                rows = (await r.json())["jobs"] if r.status == 200 else []
            return {row["jid"] for row in rows} == set(jobs)

        await eventually(archived, "the history server to archive both jobs", 90)
        await eventually(folded, "the history server to fold the journal", 90)
        overview = (await archive.json("/jobs/overview"))["jobs"]
        assert [row["jid"] for row in overview] == list(jobs)  # acceptance order
        for job_id, answers in served.items():
            assert comparable(await archive.json(f"/jobs/{job_id}")) == comparable(answers[""])
            for path in ("/exceptions", "/checkpoints"):
                assert comparable(await archive.json(f"/jobs/{job_id}{path}")) == comparable(
                    answers[path]
                ), path
            assert next(row for row in overview if row["jid"] == job_id) == answers["row"]
        journal = await archive.json("/jobs/cp-job/journal")
        assert 0 <= journal["first"] < journal["last"] and journal["events"] > 2
        assert (await archive.json("/config"))["features"]["web-history"] is True
        [reason] = await archive.error("/jobs/no-such-job", 404)
        assert "no-such-job" in reason
        before = await archive_of(archive, list(jobs))

        # kill -9, restart: the tables come back from their changelog topics.
        history.stop(signal.SIGKILL)
        history = HistoryProcess(cluster.stack, cluster.catalog)
        cluster.exits.callback(history.stop)
        archive = Api(session, await history.url())

        async def recovered() -> bool:
            async with session.get(archive.base + "/readyz") as r:
                return r.status == 200

        await eventually(recovered, "the restarted history server to recover", 90)
        await eventually(folded, "the restarted history server to fold the journal", 90)
        assert await archive_of(archive, list(jobs)) == before
        # Its first fold found every row in the recovered tables: none written again.
        assert (await archive.json("/readyz"))["jm-rows-written-at-start"] == 0

        # Another name: empty tables, a replay of the journal from the start.
        replay = HistoryProcess(cluster.stack, cluster.catalog, name="history-replay")
        cluster.exits.callback(replay.stop)
        replayed = Api(session, await replay.url())
        archive = replayed
        await eventually(archived, "the replaying history server to archive both jobs", 90)
        await eventually(folded, "the replaying history server to fold the journal", 90)
        assert await archive_of(replayed, list(jobs)) == before
        # Empty tables: its first fold wrote each ended job's row of every table.
        ready = await archive.json("/readyz")
        assert ready["jm-rows-written-at-start"] == len(jobs) * len(TABLES)


def test_history_server_says_why_it_cannot_fold_the_journal() -> None:
    """No broker at the address: ``jm history`` exits 1 saying so (its first fold runs
    before the faust worker starts)."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", JM_CLUSTER_ID="no-broker")
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.history", "--port", "0", "--log-level", "WARNING"],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "jm history: cannot fold the journal" in done.stderr, done.stderr[-3000:]
    assert "Unable to bootstrap from [('127.0.0.1', 1" in done.stderr


async def test_history_server_folds_on_across_an_aborted_transaction(
    stack: Stack, catalog: Catalog
) -> None:
    """A live journal with an aborted transaction in it (a fenced leader's records, which
    a read_committed stream never hands over: the gap after them is wider than a commit
    marker, so the agent reads it with the follower): the history server started before
    it folds on across it, archives every job, and answers as a server replaying the
    whole journal under another name does."""
    keys, topic = run_keys(), catalog.journal.name
    gen = JournalGenerator(catalog, max_jobs=12)
    batches = gen.batches(1 << 62)
    producer = kafkaio.producer(
        bootstrap_servers=stack.bootstrap, transactional_id=f"{catalog.cluster_id}.t"
    )

    async def write(records: list[Any], commit: bool = True) -> None:
        await producer.begin_transaction()
        for key, value, headers in records:
            signed = keys.sign("journal", topic, key, value, headers)
            await producer.send(topic, value, key=key, headers=signed, partition=0)
        await (producer.commit_transaction() if commit else producer.abort_transaction())

    def until(done: Callable[[], bool]) -> list[Any]:
        records: list[Any] = []
        while not done():
            records.extend(next(batches))
        return records

    await producer.start()
    history = replay = None
    try:
        early = until(lambda: gen.jobs_submitted >= 4)
        await write(early)
        history = HistoryProcess(stack, catalog)
        async with aiohttp.ClientSession() as session:
            archive = Api(session, await history.url())
            await write(early[:40], commit=False)  # never folded: aborted
            await write(until(lambda: gen.jobs_submitted >= 12 and not gen.state.jobs))
            end = await end_offset(stack.bootstrap, catalog) - 1  # less the commit marker

            async def folded() -> bool:
                async with session.get(archive.base + "/jobs/overview") as r:
                    return int(r.headers.get("X-JM-Journal-Offset", -1)) >= end

            await eventually(folded, "the history server to fold past the aborted records", 90)
            jobs = [row["jid"] for row in (await archive.json("/jobs/overview"))["jobs"]]
            assert len(jobs) == 12
            replay = HistoryProcess(stack, catalog, name="replay")
            replayed = Api(session, await replay.url())
            archive = replayed
            await eventually(folded, "the replaying history server to fold the journal", 90)
            assert await archive_of(replayed, jobs) == await archive_of(
                Api(session, (await history.url())), jobs
            )
    finally:
        await producer.stop()
        for server in (history, replay):
            if server is not None:
                server.stop()
