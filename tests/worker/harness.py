"""A real worker process, a minimal leader and a reports reader, for worker tests.

The leader writes commands the way the coordinator does: in a Kafka
transaction, to the explicit partition ``catalog.commands_partition(tm_id)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.conftest import run_keys

ES = ev.ExecutionState
REPO = Path(__file__).resolve().parents[2]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def task_ref(job: str = "job", vertex: str = "v", subtask: int = 0, attempt: int = 0) -> ev.TaskRef:
    return ev.TaskRef(job_id=job, vertex_id=vertex, subtask_index=subtask, attempt=attempt)


class WorkerProcess:
    """``python -m worker`` as a subprocess; its log goes to a temporary file."""

    def __init__(
        self, bootstrap: str, catalog: Catalog, tm_id: str, *flags: str,
        hooks: dict[str, object] | None = None,
    ) -> None:  # fmt: skip
        """`hooks`: test-only switches (worker/hooks.py), via JM_TEST_HOOKS."""
        self.tm_id = tm_id
        self.log_file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in close()
        self._final_log = ""
        argv = [sys.executable, "-m", "worker", "--id", tm_id, "--bootstrap-servers", bootstrap,
                "--cluster-id", catalog.cluster_id, *flags]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "JM_TEST_HOOKS": json.dumps(hooks or {})}
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)  # fmt: skip

    def log(self) -> str:
        if self.log_file.closed:
            return self._final_log
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait(self, within: float) -> int:
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker still running after {within} s:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    async def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait(8)
            except TimeoutError:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        if not self.log_file.closed:
            self._final_log = self.log()
            self.log_file.close()


class Leader:
    """Writes commands to one worker's partition, transactionally, with an epoch."""

    def __init__(self, bootstrap: str, catalog: Catalog, tm_id: str, epoch: int = 1) -> None:
        self.catalog = catalog
        self.tm_id = tm_id
        self.epoch = epoch
        self.incarnation = ""  # the worker's, learnt from its registration
        self.keys = run_keys()
        self.partition = catalog.commands_partition(tm_id)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{catalog.cluster_id}.test-leader-{uuid.uuid4().hex[:8]}",
            enable_idempotence=True,
            linger_ms=1,
        )
        self._lock = asyncio.Lock()  # one transaction at a time on one producer
        self._pump: asyncio.Task[None] | None = None
        self.last_sent = 0.0  # time.monotonic() when the last transaction committed
        # ... and when it began: no worker can have read it before (a worker may read it
        # before this process runs again after the commit, so ``last_sent`` can be late).
        self.last_begun = 0.0

    async def start(self) -> None:
        await self._producer.start()

    async def close(self) -> None:
        try:
            await self.stop_keepalives()
        finally:
            await self._producer.stop()

    async def send(self, *commands: ev.WorkerCommand) -> None:
        async with self._lock:
            begun = time.monotonic()
            async with self._producer.transaction():
                for command in commands:
                    value, headers = default_codec().encode(command)
                    topic, key = self.catalog.commands.name, self.catalog.key_for(command)
                    headers = self.keys.sign("commands", topic, key, value, headers)
                    await self._producer.send(
                        topic, value, key=key, partition=self.partition, headers=headers
                    )
            self.last_begun, self.last_sent = begun, time.monotonic()

    def keepalive(self, epoch: int | None = None) -> ev.LeaderKeepalive:
        return ev.LeaderKeepalive(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            epoch=self.epoch if epoch is None else epoch,
            leader_replica_id="test-leader",
        )

    def deploy(self, task: ev.TaskRef, operator: str, slot: int = 0,
               epoch: int | None = None, **config: str) -> ev.DeployTask:  # fmt: skip
        return ev.DeployTask(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            epoch=self.epoch if epoch is None else epoch,
            tm_id=self.tm_id,
            incarnation=self.incarnation,
            task=task,
            slot_index=slot,
            operator=operator,
            vertex_name=task.vertex_id,
            parallelism=1,
            max_parallelism=128,
            config=config,
        )

    def cancel(self, task: ev.TaskRef, epoch: int | None = None) -> ev.CancelTask:
        return ev.CancelTask(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            epoch=self.epoch if epoch is None else epoch,
            tm_id=self.tm_id,
            incarnation=self.incarnation,
            task=task,
        )

    def disconnect(self, reason: str) -> ev.DisconnectTaskManager:
        return ev.DisconnectTaskManager(
            event_id=uuid.uuid4().hex,
            event_time=now_ms(),
            epoch=self.epoch,
            tm_id=self.tm_id,
            incarnation=self.incarnation,
            reason=reason,
        )

    def keep_alive_every(self, seconds: float) -> None:
        async def pump() -> None:
            while True:
                await self.send(self.keepalive())
                await asyncio.sleep(seconds)

        self._pump = asyncio.create_task(pump())

    async def stop_keepalives(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None


class Reports:
    """Everything one worker wrote to jm.reports and jm.heartbeats (read_committed,
    from the beginning)."""

    def __init__(self, bootstrap: str, catalog: Catalog, tm_id: str) -> None:
        self.catalog = catalog
        self.tm_id = tm_id
        self._consumer = kafkaio.consumer(bootstrap)
        self.seen: list[ev.Event] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(
            [
                TopicPartition(spec.name, p)
                for spec in (self.catalog.reports, self.catalog.heartbeats)
                for p in range(spec.partitions)
            ]
        )
        await self._consumer.seek_to_beginning()

    async def close(self) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, predicate: Callable[[ev.Event], bool], within: float = 10.0, what: str = ""
    ) -> Any:
        """The first event (old or new) matching `predicate`."""
        checked = 0
        deadline = time.monotonic() + within
        while True:
            for event in self.seen[checked:]:
                if predicate(event):
                    return event
            checked = len(self.seen)
            if time.monotonic() > deadline:
                break
            # Keep every record of a batch, even past the one a caller waits for.
            fetched = await self._consumer.getmany(timeout_ms=100)
            for records in fetched.values():
                for record in records:
                    assert record.value is not None
                    event = default_codec().decode(record.value)
                    if getattr(event, "tm_id", None) == self.tm_id:
                        self.seen.append(event)
        reports = [e for e in self.seen if not isinstance(e, ev.TaskManagerHeartbeat)]
        raise TimeoutError(f"no {what or 'matching report'} within {within} s; saw {reports}")

    async def registration(self, within: float = 15.0, **match: Any) -> ev.TaskManagerRegistered:
        def ok(e: ev.Event) -> bool:
            return isinstance(e, ev.TaskManagerRegistered) and all(
                getattr(e, k) == v for k, v in match.items()
            )

        event: ev.TaskManagerRegistered = await self.wait_for(ok, within, "registration")
        return event

    async def registrations(self) -> list[ev.TaskManagerRegistered]:
        return [e for e in self.seen if isinstance(e, ev.TaskManagerRegistered)]

    async def state(self, task: ev.TaskRef, state: ES, within: float = 10.0) -> ev.TaskStateChanged:
        def ok(e: ev.Event) -> bool:
            return isinstance(e, ev.TaskStateChanged) and e.task == task and e.state is state

        event: ev.TaskStateChanged = await self.wait_for(ok, within, f"{state} of {task}")
        return event

    def states(self, task: ev.TaskRef) -> list[ES]:
        return [e.state for e in self.seen if isinstance(e, ev.TaskStateChanged) and e.task == task]


class Not:
    """Compares unequal to `value` and equal to anything else (for keyword matches)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return other != self.value

    __hash__ = None  # type: ignore[assignment]
