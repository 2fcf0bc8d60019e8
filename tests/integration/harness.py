"""Real processes and a protocol-speaking test worker for the coordinator's integration tests.

``CoordinatorProcess`` runs ``python -m coordinator coordinator`` as a separate
process (so tests can ``kill -9`` it). ``ProtocolWorker`` is a test
TaskManager that speaks the worker protocol over the real Kafka: it registers
its slots, acknowledges deployments by reporting DEPLOYING, INITIALIZING,
RUNNING, and finishes or cancels tasks when told. ``Journal`` reads the
journal like any replica does (read_committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.jsonview import summary
from schemas.signing import KeyRing
from tests.conftest import Stack, run_keys
from tests.worker.harness import WorkerProcess

REPO = Path(__file__).resolve().parents[2]


def now_ms() -> int:
    return int(time.time() * 1000)


class CoordinatorProcess:
    """One replica as a real OS process."""

    def __init__(self, stack: Stack, catalog: Catalog, replica_id: str, *extra: str,
                 redis_url: str | None = None, hooks: dict[str, object] | None = None,
                 ) -> None:  # fmt: skip
        """`hooks`: test-only switches (coordinator/runtime/hooks.py), via JM_TEST_HOOKS."""
        self.replica_id = replica_id
        self.log = Path(f"/tmp/jm-test-{catalog.cluster_id}-{replica_id}.log")
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
                   REDIS_URL=redis_url or stack.redis_url, JM_CLUSTER_ID=catalog.cluster_id,
                   PYTHONUNBUFFERED="1", JM_TEST_HOOKS=json.dumps(hooks or {}))  # fmt: skip
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator", "coordinator", "--id", replica_id,
             "--log-level", "INFO", "--rest-port", "0", *extra],
            stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for_line(self, text: str, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.replica_id} exited:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.replica_id}: no {text!r} in {seconds}s:\n{self.output()[-3000:]}"
        )

    def count(self, text: str) -> int:
        return self.output().count(text)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class Journal:
    """Reads the cluster's journal (read_committed unless told otherwise)."""

    def __init__(self, stack: Stack, catalog: Catalog, isolation: str = "read_committed") -> None:
        self.catalog = catalog
        self.consumer = kafkaio.consumer(stack.bootstrap, isolation_level=isolation)
        self.tp = TopicPartition(catalog.journal.name, 0)
        self.events: list[tuple[int, ev.Event]] = []
        self.raw_values: list[bytes] = []

    async def __aenter__(self) -> Journal:
        await self.consumer.start()
        self.consumer.assign([self.tp])
        await self.consumer.seek_to_beginning(self.tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def read(self, timeout_ms: int = 200) -> list[tuple[int, ev.Event]]:
        batch = await self.consumer.getmany(self.tp, timeout_ms=timeout_ms)
        self.raw_values.extend(r.value or b"" for r in batch.get(self.tp, []))
        new = [(r.offset, default_codec().decode(r.value or b"")) for r in batch.get(self.tp, [])]
        self.events.extend(new)
        return new

    async def wait_until(
        self, check: Callable[[list[tuple[int, ev.Event]]], bool], seconds: float = 30.0
    ) -> list[tuple[int, ev.Event]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.read()
            if check(self.events):
                return self.events
        recent = "\n  ".join(
            f"@{o} {type(e).__name__} {summary(e, 200)}" for o, e in self.events[-25:]
        )
        raise AssertionError(f"journal condition not met in {seconds}s; last events:\n  {recent}")


async def until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait for a condition outside the journal (what a test worker received, ...)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.05)


def joined(events: list[tuple[int, ev.Event]], *tm_ids: str) -> bool:
    """Every named worker has joined (jobs naming their operators are accepted from then)."""
    have = {e.tm_id for _, e in events if isinstance(e, ev.TaskManagerJoined)}
    return set(tm_ids) <= have


def status_of(events: list[tuple[int, ev.Event]], job_id: str) -> ev.JobStatus | None:
    status = None
    for _, e in events:
        if isinstance(e, ev.JobStatusChanged) and e.job_id == job_id:
            status = e.to_status
    return status


def job_submitted(job_id: str, parallelism: int = 2, operator: str = "sequence") -> ev.JobSubmitted:
    vertex = ev.Vertex(id="src", name="Source", operator=operator, parallelism=parallelism,
                       max_parallelism=max(parallelism, 8), config={"count": "10"})  # fmt: skip
    return ev.JobSubmitted(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, name=f"test {job_id}",
        job_graph=ev.JobGraph(vertices=(vertex,)),
        restart_strategy=ev.RestartStrategy(kind=ev.RestartStrategyKind.NONE),
    )  # fmt: skip


def signed_record(
    catalog: Catalog, event: ev.Event, keys: KeyRing | None = None
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) of `event` as its writer sends it: encoded and signed
    with the key of the role that writes its topic (default: the run's keys)."""
    value, headers = default_codec().encode(event)
    spec = catalog.topic_for(type(event))
    key = catalog.key_for(event)
    headers = (keys or run_keys()).sign(spec.role, spec.name, key, value, headers)
    return spec.name, key, value, headers


class Producer:
    """A plain idempotent producer of client commands and worker reports."""

    def __init__(self, stack: Stack, catalog: Catalog, keys: KeyRing | None = None) -> None:
        """`keys`: what to sign with (default: the run's keys, every role)."""
        self.catalog = catalog
        self.keys = keys or run_keys()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, enable_idempotence=True, acks="all", linger_ms=0
        )

    async def __aenter__(self) -> Producer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, *events: ev.Event) -> None:
        """Send `events` in order, each signed with the key of the role that writes its
        topic, all in flight at once; returns when every one is acknowledged."""
        sent = []
        for event in events:
            topic, key, value, headers = signed_record(self.catalog, event, self.keys)
            sent.append(await self.producer.send(topic, value, key=key, headers=headers))
        for future in sent:
            await future


STARTING = (ev.ExecutionState.DEPLOYING, ev.ExecutionState.INITIALIZING, ev.ExecutionState.RUNNING)


class ProtocolWorker:
    """A test TaskManager speaking the protocol over real Kafka (no task code runs)."""

    #: check each command's signature, as a real worker does (the benchmarks' fleet)
    verify_commands: bool = False

    def __init__(self, stack: Stack, catalog: Catalog, tm_id: str, slots: int,
                 operators: tuple[str, ...] = ("sequence",), finish_after_s: float | None = None,
                 acknowledge_checkpoints: bool = False,
                 ) -> None:  # fmt: skip
        """`acknowledge_checkpoints`: on a TriggerCheckpoint, acknowledge it for every
        task of the job this worker runs (as if barriers had reached them)."""
        self.stack = stack
        self.catalog = catalog
        self.tm_id = tm_id
        self.slots = slots
        self.operators = operators
        self.finish_after_s = finish_after_s
        self.acknowledge_checkpoints = acknowledge_checkpoints
        self.notified: list[ev.NotifyCheckpointComplete | ev.NotifyCheckpointAborted] = []
        self.incarnation = uuid.uuid4().hex[:12]
        self.running: dict[tuple[str, str, int], ev.TaskRef] = {}
        self.deployed: list[ev.DeployTask] = []
        self.epoch = 0
        self.keepalives = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._producer = Producer(stack, catalog)
        self._seq = 0

    async def __aenter__(self) -> ProtocolWorker:
        # The real worker's consumer settings (worker/kafka.py, KafkaCommands).
        self._consumer = kafkaio.consumer(
            self.stack.bootstrap, fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS
        )
        try:
            await self._producer.__aenter__()
            await self._consumer.start()
            tp = TopicPartition(
                self.catalog.commands.name, self.catalog.commands_partition(self.tm_id)
            )
            self._consumer.assign([tp])
            await self._consumer.seek_to_end(tp)
            await self._consumer.position(tp)  # resolve "end" now, before registering
            await self.register()
        except BaseException:
            await self._close_clients()
            raise
        self._tasks = [asyncio.create_task(self._commands()), asyncio.create_task(self._beat())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        # A task that ended with an error raises it here; the clients close all the same
        # (left open, they are collected later, in whichever test is running then).
        try:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        finally:
            await self._close_clients()

    async def _close_clients(self) -> None:
        try:
            await self._consumer.stop()
        finally:
            await self._producer.__aexit__()

    def _id(self) -> str:
        self._seq += 1
        return f"{self.tm_id}:{self.incarnation}:{self._seq}"

    async def register(self) -> None:
        await self._producer.send(ev.TaskManagerRegistered(
            event_id=self._id(), event_time=now_ms(), tm_id=self.tm_id,
            incarnation=self.incarnation, host="test", slots=self.slots,
            operators=self.operators, version="test",
            running_tasks=tuple(
                ev.RunningTask(task=t, slot_index=i, state=ev.ExecutionState.RUNNING)
                for i, t in enumerate(self.running.values())
            ),
        ))  # fmt: skip

    def _state(self, task: ev.TaskRef, state: ev.ExecutionState) -> ev.TaskStateChanged:
        return ev.TaskStateChanged(
            event_id=self._id(), event_time=now_ms(), tm_id=self.tm_id,
            incarnation=self.incarnation, task=task, state=state,
        )  # fmt: skip

    async def report(self, task: ev.TaskRef, state: ev.ExecutionState) -> None:
        await self._producer.send(self._state(task, state))

    async def finish_all(self) -> None:
        for key, task in list(self.running.items()):
            del self.running[key]
            await self.report(task, ev.ExecutionState.FINISHED)

    async def _beat(self) -> None:
        while True:
            await self._producer.send(ev.TaskManagerHeartbeat(
                event_id=self._id(), event_time=now_ms(), tm_id=self.tm_id,
                incarnation=self.incarnation, sequence=self._seq,
                slots_free=self.slots - len(self.running), running_tasks=len(self.running),
                last_seen_epoch=self.epoch,
            ))  # fmt: skip
            await asyncio.sleep(0.5)

    async def _commands(self) -> None:
        codec = default_codec()
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    command = codec.decode(record.value or b"")
                    # As a real worker does (worker/kafka.py): a command without the
                    # leader's valid signature is ignored.
                    if self.verify_commands and run_keys().problem(
                        "commands", record.topic, record.key, record.value, record.headers
                    ):
                        continue
                    await self._handle(command)

    async def _handle(self, command: ev.Event) -> None:
        if isinstance(command, ev.LeaderKeepalive):
            self.keepalives += 1
            if command.epoch > self.epoch:
                first = self.epoch == 0
                self.epoch = command.epoch
                if not first:
                    await self.register()  # a new leader: tell it what still runs
            return
        if getattr(command, "tm_id", None) != self.tm_id:
            return
        if getattr(command, "incarnation", None) != self.incarnation:
            return
        if isinstance(command, ev.DeployTask):
            self.deployed.append(command)
            # A chain's subtasks run (and report) with its head, as a real worker's do;
            # their DEPLOYING, INITIALIZING and RUNNING go out in one batch, as a real
            # worker's report sender sends a starting task's (worker/taskmanager.py).
            tasks = (command.task, *(c.task for c in command.chained))
            for task in tasks:
                self.running[(task.job_id, task.vertex_id, task.subtask_index)] = task
            await self._producer.send(*(self._state(t, s) for t in tasks for s in STARTING))
            for task in tasks:
                if self.finish_after_s is not None:
                    key = (task.job_id, task.vertex_id, task.subtask_index)
                    self._tasks.append(asyncio.create_task(self._finish_later(key, task)))
        elif isinstance(command, ev.TriggerCheckpoint) and self.acknowledge_checkpoints:
            await self._acknowledge(command)
        elif isinstance(command, ev.NotifyCheckpointComplete | ev.NotifyCheckpointAborted):
            self.notified.append(command)
        elif isinstance(command, ev.CancelTask):
            key = (command.task.job_id, command.task.vertex_id, command.task.subtask_index)
            if self.running.pop(key, None) is not None:
                await self.report(command.task, ev.ExecutionState.CANCELED)

    async def _acknowledge(self, trigger: ev.TriggerCheckpoint) -> None:
        for task in list(self.running.values()):
            if task.job_id == trigger.task.job_id:
                await self._producer.send(ev.CheckpointAcknowledged(
                    event_id=self._id(), event_time=now_ms(), tm_id=self.tm_id,
                    incarnation=self.incarnation, checkpoint_id=trigger.checkpoint_id, task=task,
                    state_handle=f"test://{task.job_id}/{trigger.checkpoint_id}/"
                    f"{task.vertex_id}-{task.subtask_index}",
                    state_size=100 + task.subtask_index, duration_ms=2, alignment_ms=1,
                ))  # fmt: skip

    async def _finish_later(self, key: tuple[str, str, int], task: ev.TaskRef) -> None:
        await asyncio.sleep(self.finish_after_s or 0)
        if self.running.get(key) == task:
            del self.running[key]
            await self.report(task, ev.ExecutionState.FINISHED)


# Timing rules the tests follow (docs/ha.md, schemas/timing.py): a worker keeps its tasks
# through a leader failover (worker timeout 3 s > lease ttl 1.5 s + takeover) and has
# stopped them before the coordinator can declare it lost (worker timeout 3 s + cancel
# timeout 1 s + heartbeat interval 1 s < coordinator timeout 6 s).
COORDINATOR_FLAGS = ("--heartbeat-timeout-ms", "6000", "--lease-ttl-ms", "1500")


class Cluster:
    """Coordinator and worker processes of one test, stopped with its exit stack."""

    def __init__(self, stack: Stack, catalog: Catalog, exits: AsyncExitStack) -> None:
        self.stack = stack
        self.catalog = catalog
        self.exits = exits
        self.coordinators: list[CoordinatorProcess] = []
        self.workers: dict[str, WorkerProcess] = {}

    def coordinator(
        self, replica_id: str, *flags: str, hooks: dict[str, object] | None = None
    ) -> CoordinatorProcess:
        proc = CoordinatorProcess(
            self.stack, self.catalog, replica_id, *COORDINATOR_FLAGS, *flags, hooks=hooks
        )
        self.coordinators.append(proc)
        self.exits.callback(proc.stop)
        return proc

    def worker(
        self, tm_id: str, slots: int, *flags: str, hooks: dict[str, object] | None = None
    ) -> WorkerProcess:
        timing = ("--heartbeat-timeout", "3", "--cancel-timeout", "1")
        proc = WorkerProcess(
            self.stack.bootstrap,
            self.catalog,
            tm_id,
            "--slots",
            str(slots),
            *timing,
            *flags,
            hooks=hooks,
        )
        self.workers[tm_id] = proc
        self.exits.push_async_callback(proc.close)
        return proc


async def both_report_foreign_records(
    cluster: Cluster, first: str, second: str
) -> tuple[ev.ReplicaStatus, ev.ReplicaStatus]:
    """The two replicas' statuses once both count skipped foreign journal records and
    have applied the journal to the same offset (generous bound: it happens)."""
    from coordinator.commands.replica import read_replicas
    from schemas.settings import ClusterSettings

    settings = ClusterSettings(
        bootstrap_servers=cluster.stack.bootstrap, cluster_id=cluster.catalog.cluster_id
    )
    deadline = time.monotonic() + 30
    while True:
        statuses = await read_replicas(settings)
        a, b = statuses.get(first), statuses.get(second)
        if (a and b and a.foreign_records and b.foreign_records
                and a.applied_offset == b.applied_offset):  # fmt: skip
            return a, b
        assert time.monotonic() < deadline, f"not reported: {statuses}"
        await asyncio.sleep(0.3)
