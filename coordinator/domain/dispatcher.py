"""The Dispatcher: accepts or rejects submissions, cancels and archives jobs."""

import dataclasses

from coordinator.domain.jobmaster import cancel
from coordinator.domain.planner import Planner
from coordinator.domain.scheduler import deploy, place, provided, slot_requests, subtasks_of
from coordinator.domain.state import ENDED_JOB_RETENTION_MS
from schemas.events import (
    ExecutionGraphCreated,
    JobAccepted,
    JobArchived,
    JobCancelRequested,
    JobStatus,
    JobStatusChanged,
    JobSubmitted,
    TaskRef,
)
from schemas.limits import bounded_reason
from schemas.validation import validate_job_submitted


def _content(s: JobSubmitted) -> JobSubmitted:
    """The submission without what identifies one sending of it."""
    return dataclasses.replace(s, event_id="", event_time=0)


def _ended(p: Planner, s: JobSubmitted) -> str | None:
    """Why `s` names a job that already ran and ended, or None.

    Job ids are never reused (a late duplicate must not run a job again): an
    ended job in memory, or one archived within the ended-jobs retention
    (state.ENDED_JOBS_KEPT / ENDED_JOB_RETENTION_MS), refuses its id. The very
    record that was accepted, read again, stays a no-op.
    """
    job = p.state.jobs.get(s.job_id)
    if job is not None and job.status.is_globally_terminal:
        if job.submission.event_id == s.event_id:
            return None
        status, ended_at, archived = job.status, job.status_since, ""
    elif (ended := p.state.ended_jobs.get(s.job_id)) is not None and (
        p.now - ended.archived_at <= ENDED_JOB_RETENTION_MS  # evolve prunes at the next archive
    ):
        status, ended_at, archived = ended.final_status, ended.ended_at, ", archived"
    else:
        return None
    return (
        f"job {s.job_id} already ran and ended: {status} at {ended_at}{archived}; "
        "a job id is never run twice, submit with a new job id"
    )


def on_submitted(p: Planner, s: JobSubmitted) -> None:
    if (ended := _ended(p, s)) is not None:
        p.reject_job(s, s.job_id, ended)
        return
    existing = p.state.jobs.get(s.job_id)
    if existing is not None:
        if _content(existing.submission) != _content(s):
            p.reject_job(s, s.job_id, "job id already used by a different submission")
        return  # an identical resubmission is a no-op (at-least-once clients)
    # Only what can never run is rejected: an operator no worker offers yet is
    # waited for (workers may still be starting or scaling from zero), up to
    # DomainConfig.slot_wait_timeout_ms, like Flink's slot request timeout.
    problems = validate_job_submitted(
        s,
        allow_checkpointing=p.config.allow_checkpointing,
        protected_topic_prefixes=p.config.protected_topic_prefixes,
    )
    if problems:
        p.reject_job(s, s.job_id, bounded_reason(problems))
        return
    if s.savepoint_path is not None:
        checked = p.view.savepoint_checks.get(s.event_id, "was not read by the leader")
        if checked is not None:
            p.reject_job(s, s.job_id, f"cannot restore from savepoint: {checked}")
            return
    if s.artifact is not None:
        checked = p.view.artifact_checks.get(s.event_id, "was not checked by the leader")
        if checked is not None:
            p.reject_job(s, s.job_id, f"user-code artifact refused: {checked}")
            return
    p.emit(JobAccepted, submission=s)
    placement = place(slot_requests(s), p.state.workers, provided(s))
    reason = placement if isinstance(placement, str) else None
    p.emit(
        JobStatusChanged,
        job_id=s.job_id,
        from_status=JobStatus.INITIALIZING,
        to_status=JobStatus.CREATED,
        cause=reason,
    )
    p.emit(
        ExecutionGraphCreated,
        job_id=s.job_id,
        restart_count=0,
        subtasks=tuple(
            TaskRef(job_id=s.job_id, vertex_id=k[0], subtask_index=k[1], attempt=0)
            for k, _ in subtasks_of(s)
        ),
    )
    if not isinstance(placement, str):
        deploy(p, s.job_id, placement)


def on_cancel_requested(p: Planner, r: JobCancelRequested) -> None:
    """Cancel a live job; a request that cannot do anything is refused saying why
    (the client that asked reads the InputRejected as its answer)."""
    job = p.state.jobs.get(r.job_id)
    if job is None:
        ended = p.state.ended_jobs.get(r.job_id)
        if ended is not None:
            why = (
                f"job {r.job_id} already ended: {ended.final_status} at {ended.ended_at} "
                "(archived since); nothing was done"
            )
        else:
            why = f"no job {r.job_id}: none was accepted under this id; nothing was done"
        p.reject(r, why, job_id=r.job_id)
    elif job.status.is_globally_terminal:
        why = f"job {r.job_id} already ended: {job.status} at {job.status_since}"
        p.reject(r, f"{why}; nothing was done", job_id=r.job_id)
    elif job.status is JobStatus.CANCELLING:
        why = f"job {r.job_id} is already CANCELLING (since {job.status_since})"
        p.reject(r, f"{why}; nothing more was done", job_id=r.job_id)
    else:
        who = f" by {r.requested_by}" if r.requested_by else ""
        cancel(p, r.job_id, f"cancel requested{who} ({r.event_id})")


def archive_finished(p: Planner) -> None:
    """Terminal jobs leave memory after config.archive_after_ms, and at once beyond
    config.max_ended_jobs of them, those that ended first first (they stay in the log).

    Their ids stay taken: evolve remembers them in state.ended_jobs (bounded),
    and a new submission with one is refused. Archiving is journaled
    (JobArchived), so replay and snapshot + tail fold it exactly as the leader did.
    """
    after, most = p.config.archive_after_ms, p.config.max_ended_jobs
    if after is None and most is None:
        return
    ended = sorted(
        (j for j in p.state.jobs.values() if j.status.is_globally_terminal),
        key=lambda j: (j.status_since, j.accepted_seq),
    )
    over = 0 if most is None else max(0, len(ended) - most)
    done = [
        j
        for i, j in enumerate(ended)
        if i < over or (after is not None and p.now - j.status_since >= after)
    ]
    for job in sorted(done, key=lambda j: j.accepted_seq):
        p.emit(JobArchived, job_id=job.job_id, final_status=job.status)
