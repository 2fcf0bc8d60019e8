"""The client side of the cluster, for any Python program: submit, cancel, wait.

Submitting is producing a ``JobSubmitted`` to the submissions topic, keyed by
job id; nothing else. Whether the job was accepted is a fact in the journal
(``JobAccepted`` or ``JobRejected`` with the reason), which a ``JobWatch``
opened before the send reads: the answer to that command, then the job's
statuses.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.settings import ClusterSettings


class WaitTimeout(Exception):
    """The awaited answer or status did not come in time."""


def now_ms() -> int:
    return int(time.time() * 1000)


async def produce(settings: ClusterSettings, event: ev.ClientCommand) -> tuple[int, int]:
    """Produce a client command to the submissions topic; returns (partition, offset)."""
    catalog = Catalog(settings.cluster_id)
    keys = settings.keyring("client")
    value, headers = default_codec().encode(event)
    topic, key = catalog.submissions.name, catalog.key_for(event)
    headers = keys.sign("submissions", topic, key, value, headers)
    producer = kafkaio.producer(
        bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
    return meta.partition, meta.offset


def cancel_request(job_id: str, requested_by: str | None = None) -> ev.JobCancelRequested:
    return ev.JobCancelRequested(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, requested_by=requested_by
    )


def savepoint_request(
    job_id: str, target_directory: str | None, *, stop: bool = False
) -> ev.SavepointRequested | ev.StopWithSavepointRequested:
    """A savepoint request (with `stop`: stop with savepoint) for `job_id`."""
    cls = ev.StopWithSavepointRequested if stop else ev.SavepointRequested
    return cls(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id,
        target_directory=target_directory,
    )  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """One journal fact about the awaited job."""

    offset: int
    event: ev.JournalEvent


@dataclass(frozen=True)
class Answer:
    """What the coordinator said to one client command.

    accepted: the command took effect (JobAccepted; a cancel moved the job).
    reason: why not, when it did not (JobRejected / InputRejected), else None.
    event: the journal record that answered; None when the leader consumed the
        command and wrote nothing about it (an identical resubmission of a job
        it already has: at-least-once clients may send one twice).
    """

    accepted: bool
    reason: str | None = None
    event: ev.JournalEvent | None = None
    offset: int = -1


#: How often, while no answer is in the journal, whether the leader consumed
#: the command is asked (a consumed command without an answer was a no-op).
CONSUMED_CHECK_S = 1.0


class JobWatch:
    """The journal as it concerns one job, read from where it ended when the watch opened.

    Open it BEFORE producing the command it should see answered: whatever the
    coordinator writes afterwards is then read, and nothing older is scanned.
    ``answer`` waits for the answer to one command; ``until`` for a job status.
    """

    def __init__(self, settings: ClusterSettings, job_id: str) -> None:
        self.settings = settings
        self.job_id = job_id
        self.catalog = Catalog(settings.cluster_id)
        self.status: ev.JobStatus | None = None
        self._codec = default_codec()
        self._tp = TopicPartition(self.catalog.journal.name, 0)
        self._consumer = kafkaio.consumer(settings.bootstrap_servers)
        self._pending: deque[tuple[int, ev.JournalEvent]] = deque()

    async def __aenter__(self) -> JobWatch:
        await self._consumer.start()
        try:
            self._consumer.assign([self._tp])
            await self._consumer.seek_to_end(self._tp)
            await self._consumer.position(self._tp)  # resolve "the end" now, before any send
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def rewind(self) -> None:
        """Read the job's history from the journal's start (its status so far)."""
        await self._consumer.seek_to_beginning(self._tp)
        self._pending.clear()
        self.status = None

    def _concerns(self, event: ev.Event) -> bool:
        if isinstance(event, ev.JobAccepted):
            return event.submission.job_id == self.job_id
        return getattr(event, "job_id", None) == self.job_id

    async def _next(self, timeout_ms: int) -> list[tuple[int, ev.JournalEvent]]:
        """The job's next journal facts (empty when none came within `timeout_ms`)."""
        if not self._pending:
            batch = await self._consumer.getmany(self._tp, timeout_ms=timeout_ms)
            for record in batch.get(self._tp, []):
                event = self._codec.decode(record.value or b"", self.catalog.journal.allowed)
                if isinstance(event, ev.JournalEvent) and self._concerns(event):
                    self._pending.append((record.offset, event))
        out = list(self._pending)
        self._pending.clear()
        return out

    def _see(self, event: ev.JournalEvent) -> None:
        if isinstance(event, ev.JobStatusChanged):
            self.status = event.to_status

    async def _at_end(self) -> bool:
        end: int = (await self._consumer.end_offsets([self._tp]))[self._tp]
        position: int = await self._consumer.position(self._tp)
        return position >= end

    async def answer(
        self, command: ev.ClientCommand, sent: tuple[int, int], timeout_s: float
    ) -> Answer:
        """The coordinator's answer to `command`, produced at `sent` (partition, offset).

        Raises WaitTimeout when no leader answered within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        next_check = time.monotonic() + CONSUMED_CHECK_S
        consumed = False
        while True:
            facts = await self._next(100)
            for i, (offset, event) in enumerate(facts):
                self._see(event)
                found = _answer_to(command, offset, event)
                if found is not None:
                    self._pending.extend(facts[i + 1 :])
                    return found
            if facts:
                continue
            if consumed and await self._at_end():
                return Answer(accepted=True)  # consumed, journal read, nothing said: a no-op
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(
                    f"no leader answered within {timeout_s:g}s: is a coordinator running for "
                    f"cluster {self.settings.cluster_id!r} (`jm replicas`)? The request stays "
                    f"queued in {self.catalog.submissions.name} and is answered when a "
                    f"leader reads it"
                )
            if not consumed and now >= next_check:
                consumed = await self._consumed(sent)
                next_check = now + CONSUMED_CHECK_S

    async def savepoint(
        self, command: ev.SavepointRequested | ev.StopWithSavepointRequested, timeout_s: float
    ) -> Answer:
        """How a savepoint request ended: accepted with its SavepointCompleted (the
        path), or refused with the reason (InputRejected, or the CheckpointAborted
        of the checkpoint it triggered). WaitTimeout after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        checkpoint_id: int | None = None
        while time.monotonic() < deadline:
            for offset, event in await self._next(100):
                self._see(event)
                if isinstance(event, ev.InputRejected) and event.input_event_id == command.event_id:
                    return Answer(accepted=False, reason=event.reason, event=event, offset=offset)
                if (
                    isinstance(event, ev.CheckpointTriggered)
                    and event.request_event_id == command.event_id
                ):
                    checkpoint_id = event.checkpoint_id
                if isinstance(event, ev.CheckpointAborted) and event.checkpoint_id == checkpoint_id:
                    reason = f"savepoint {checkpoint_id} aborted: {event.reason}"
                    return Answer(accepted=False, reason=reason, event=event, offset=offset)
                if (
                    isinstance(event, ev.SavepointCompleted)
                    and event.request_event_id == command.event_id
                ):
                    return Answer(accepted=True, event=event, offset=offset)
        where = "no leader answered" if checkpoint_id is None else "the savepoint did not complete"
        raise WaitTimeout(f"{where} within {timeout_s:g}s (job {self.job_id})")

    async def _consumed(self, sent: tuple[int, int]) -> bool:
        from coordinator.runtime.leader import committed_offsets  # heavy: only when needed

        partition, offset = sent
        tp = TopicPartition(self.catalog.submissions.name, partition)
        found = await committed_offsets(
            self.settings.bootstrap_servers, self.catalog.leader_group_id
        )
        return found.get(tp, -1) > offset

    async def until(
        self,
        target: ev.JobStatus,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ev.JobStatus:
        """Follow the job until it reaches `target` or a terminal status; returns it.

        Raises WaitTimeout after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self._reached(target):
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {self.job_id} did not reach {target} within {timeout_s:g}s "
                    f"(last status: {self.status})"
                )
            for offset, event in await self._next(100):
                self._see(event)
                if on_progress is not None:
                    on_progress(Progress(offset, event))
                if self._reached(target):
                    break
        assert self.status is not None
        return self.status

    def _reached(self, target: ev.JobStatus) -> bool:
        return self.status is not None and (
            self.status == target or self.status.is_globally_terminal
        )


def _answer_to(command: ev.ClientCommand, offset: int, event: ev.JournalEvent) -> Answer | None:
    """`event` as the answer to `command`, or None if it is not one."""
    if isinstance(event, ev.JobRejected | ev.InputRejected):
        if event.input_event_id == command.event_id:
            return Answer(accepted=False, reason=event.reason, event=event, offset=offset)
        return None
    if isinstance(event, ev.JobAccepted):
        if event.submission.event_id == command.event_id:
            return Answer(accepted=True, event=event, offset=offset)
        return None
    # A cancel is answered by the move it makes: the dispatcher names the request in its cause.
    if (
        isinstance(command, ev.JobCancelRequested)
        and isinstance(event, ev.JobStatusChanged)
        and command.event_id in (event.cause or "")
    ):
        return Answer(accepted=True, event=event, offset=offset)
    return None
