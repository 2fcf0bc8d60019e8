"""The client side of the cluster, for any Python program: submit, cancel, wait.

Submitting is producing a ``JobSubmitted`` to the submissions topic, keyed by
job id; nothing else. Whether the job was accepted is a fact in the journal
(``JobAccepted`` or ``JobRejected`` with the reason), which ``wait_for`` reads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.settings import ClusterSettings


class JobRejectedError(Exception):
    """The coordinator journaled a rejection of this submission."""


class WaitTimeout(Exception):
    """The job did not reach the awaited status in time."""


def now_ms() -> int:
    return int(time.time() * 1000)


async def produce(settings: ClusterSettings, event: ev.ClientCommand) -> tuple[int, int]:
    """Produce a client command to the submissions topic; returns (partition, offset)."""
    catalog = Catalog(settings.cluster_id)
    value, headers = default_codec().encode(event)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            catalog.submissions.name, value, key=catalog.key_for(event), headers=headers
        )
    finally:
        await producer.stop()
    return meta.partition, meta.offset


def cancel_request(job_id: str, requested_by: str | None = None) -> ev.JobCancelRequested:
    return ev.JobCancelRequested(
        event_id=uuid.uuid4().hex, event_time=now_ms(), job_id=job_id, requested_by=requested_by
    )


@dataclass(frozen=True)
class Progress:
    """One journal fact about the awaited job."""

    offset: int
    event: ev.JournalEvent


async def wait_for(
    settings: ClusterSettings,
    job_id: str,
    target: ev.JobStatus,
    *,
    submission_id: str | None = None,
    timeout_s: float = 60.0,
    on_progress: Callable[[Progress], None] | None = None,
) -> ev.JobStatus:
    """Tail the journal until `job_id` reaches `target` (or a terminal status).

    Raises JobRejectedError if the submission `submission_id` was rejected,
    WaitTimeout after `timeout_s`. Returns the status reached.
    """
    catalog = Catalog(settings.cluster_id)
    codec = default_codec()
    tp = TopicPartition(catalog.journal.name, 0)
    consumer = kafkaio.consumer(settings.bootstrap_servers)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    status: ev.JobStatus | None = None
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=100)
            for record in batch.get(tp, []):
                event = codec.decode(record.value or b"", catalog.journal.allowed)
                if isinstance(event, ev.JobRejected) and (
                    event.input_event_id == submission_id
                    or (submission_id is None and event.job_id == job_id)
                ):
                    raise JobRejectedError(f"job {event.job_id} rejected: {event.reason}")
                if getattr(event, "job_id", None) != job_id and not (
                    isinstance(event, ev.JobAccepted) and event.submission.job_id == job_id
                ):
                    continue
                assert isinstance(event, ev.JournalEvent)
                if on_progress is not None:
                    on_progress(Progress(record.offset, event))
                if isinstance(event, ev.JobStatusChanged):
                    status = event.to_status
                    if status == target or status.is_globally_terminal:
                        return status
        raise WaitTimeout(
            f"job {job_id} did not reach {target} within {timeout_s:.0f}s (last status: {status})"
        )
    finally:
        await consumer.stop()
