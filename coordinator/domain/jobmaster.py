"""The JobMaster: one job's execution graph, task reports, failover, restarts.

Failover is Flink's full restart ("a restart cancels the whole job and
redeploys it", DESIGN.md): the restart strategy decides between RESTARTING
(cancel what still runs, wait for restart_at, build a new execution graph with
attempts + 1) and FAILING -> FAILED.
"""

from coordinator.domain import checkpoint_cleanup
from coordinator.domain.planner import Planner
from coordinator.domain.restart import plan_restart
from coordinator.domain.scheduler import deploy, placement_for
from coordinator.domain.state import Job, SubtaskKey
from coordinator.domain.transitions import execution_path
from schemas.events import (
    CancelTask,
    ExecutionGraphCreated,
    ExecutionState,
    JobStatus,
    JobStatusChanged,
    RestartScheduled,
    TaskRef,
    TaskStateChanged,
    TaskStateRecorded,
)
from schemas.limits import MAX_REJECTION_REASON_BYTES, clip, clip_trace

_E = ExecutionState


def record_report(
    p: Planner,
    job_id: str,
    key: SubtaskKey,
    reported: ExecutionState,
    *,
    error_name: str | None = None,
    error_stack: str | None = None,
    input_event_id: str | None = None,
) -> str | None:
    """Journal a worker-reported state of the current attempt; the problem if impossible.

    A task that finishes or fails while CANCELING has been canceled (Flink's
    completeCancelling); a state several steps ahead on the happy path is
    journaled step by step so every recorded transition is a legal one.
    """
    job = p.state.jobs[job_id]
    current = job.executions[key].state
    if current is _E.CANCELING and reported is _E.FINISHED:
        reported = _E.CANCELED
    if reported is current:
        # A repeat carries no news (the worker confirms DEPLOYING, which the leader
        # journaled when it deployed): no journal record, only a count in the view.
        p.view.repeated_reports += 1
        return None
    path = execution_path(current, reported)
    if path is None:
        return f"illegal transition {current}->{reported}"
    task = job.task_ref(key)
    for step in path:
        final = step is reported
        p.emit(
            TaskStateRecorded,
            task=task,
            state=step,
            error_name=error_name if final else None,
            error_stack=error_stack if final else None,
            input_event_id=input_event_id,
        )
    return None


def on_task_state_changed(p: Planner, r: TaskStateChanged) -> None:
    task = r.task
    job = p.state.jobs.get(task.job_id)
    if job is None:
        p.reject(r, "unknown job", job_id=task.job_id, tm_id=r.tm_id)
        return
    problem = _report_problem(p, job, task, r.tm_id, r.incarnation)
    if problem is None:
        problem = record_report(
            p,
            job.job_id,
            (task.vertex_id, task.subtask_index),
            r.state,
            error_name=r.error_name,
            # A trace is cut, never refused: the failure itself must be recorded.
            error_stack=None if r.error_stack is None else clip_trace(r.error_stack),
            input_event_id=r.event_id,
        )
    if problem is not None:
        p.reject(r, problem, job_id=task.job_id, tm_id=r.tm_id)
        return
    if r.state is _E.FAILED and r.non_recoverable:
        fail(p, job.job_id, _non_recoverable_cause(task, r.error_name, r.error_stack))
    elif r.state is _E.FAILED:
        on_failure(p, job.job_id, _failure_cause(task, r.error_name or "TaskFailure"))
    settle(p, job.job_id)


def _report_problem(
    p: Planner, job: Job, task: TaskRef, tm_id: str, incarnation: str
) -> str | None:
    """Why a report about `task` from (tm_id, incarnation) cannot be taken, or None."""
    worker = p.state.workers.get(tm_id)
    if worker is None or worker.incarnation != incarnation:
        return f"report from unknown or old incarnation {tm_id}/{incarnation}"
    x = job.executions.get((task.vertex_id, task.subtask_index))
    if x is None:
        return f"unknown subtask {task.vertex_id}#{task.subtask_index}"
    if x.attempt != task.attempt:
        return f"stale attempt {task.attempt}, current attempt is {x.attempt}"
    if x.tm_id != tm_id or x.incarnation != incarnation:
        return f"task is not deployed on {tm_id}/{incarnation}"
    return None


def _failure_cause(task: TaskRef, error: str) -> str:
    return f"{task.vertex_id}#{task.subtask_index} (attempt {task.attempt}) failed: {error}"


def _non_recoverable_cause(task: TaskRef, name: str | None, stack: str | None) -> str:
    """The failure and its own message (the trace's last line), which says what to fix."""
    name = name or "TaskFailure"
    lines = [line for line in (stack or "").splitlines() if line.strip()]
    message = lines[-1].strip() if lines else name
    if not message.startswith(name):
        message = f"{name}: {message}"
    cause = f"non-recoverable, not restarted: {_failure_cause(task, message)}"
    return clip(cause, MAX_REJECTION_REASON_BYTES)


def cancel_live_tasks(p: Planner, job_id: str) -> None:
    """CancelTask every deployed live attempt; journal it as CANCELING."""
    job = p.state.jobs[job_id]
    for key in job.live_keys():
        x = job.executions[key]
        if x.state is _E.CANCELING or x.tm_id is None or x.incarnation is None:
            continue
        task = job.task_ref(key)
        p.emit(TaskStateRecorded, task=task, state=_E.CANCELING)
        p.command(CancelTask, tm_id=x.tm_id, incarnation=x.incarnation, task=task)


def _change(p: Planner, job: Job, to: JobStatus, cause: str | None = None) -> None:
    """Journal a job status change; pending checkpoints are aborted before a job
    leaves RUNNING, retained ones discarded when it ends (per its retention)."""
    if job.status is JobStatus.RUNNING and job.checkpoints.pending:
        why = f"job {to}" if cause is None else f"job {to}: {cause}"
        checkpoint_cleanup.abort_all_pending(p, job.job_id, why)
    p.emit(JobStatusChanged, job_id=job.job_id, from_status=job.status, to_status=to, cause=cause)
    if to.is_globally_terminal:
        checkpoint_cleanup.on_job_ended(p, job.job_id)


def on_failure(p: Planner, job_id: str, cause: str) -> None:
    """A task of a RUNNING job failed: restart it or fail it, per its strategy.

    Failures while CANCELLING, FAILING or RESTARTING change nothing: the job
    is already on its way out (Flink ignores them too).
    """
    job = p.state.jobs[job_id]
    if job.status is not JobStatus.RUNNING:
        return
    restart_count = job.restart_count + 1
    delay = plan_restart(
        job.submission.restart_strategy, job.restarts, p.now, job_id, restart_count
    )
    if delay is None:
        _change(p, job, JobStatus.FAILING, f"restart strategy exhausted; {cause}")
        cancel_live_tasks(p, job_id)
        return
    _change(p, job, JobStatus.RESTARTING, cause)
    p.emit(
        RestartScheduled,
        job_id=job_id,
        restart_at=p.now + delay,
        restart_count=restart_count,
        cause=cause,
    )
    cancel_live_tasks(p, job_id)


def fail(p: Planner, job_id: str, cause: str) -> None:
    """A failure no restart can fix (Flink's non-recoverable error): FAILING at once,
    whatever the restart strategy allows; FAILED once every live task ended.

    As in on_failure, a job already on its way out is left alone.
    """
    job = p.state.jobs[job_id]
    if job.status is not JobStatus.RUNNING:
        return
    _change(p, job, JobStatus.FAILING, cause)
    cancel_live_tasks(p, job_id)


def cancel(p: Planner, job_id: str, cause: str) -> None:
    """Flink's cancel: CANCELLING, cancel every live task, CANCELED once all ended."""
    job = p.state.jobs[job_id]
    _change(p, job, JobStatus.CANCELLING, cause)
    cancel_live_tasks(p, job_id)
    settle(p, job_id)


def stop_with_savepoint(p: Planner, job_id: str) -> None:
    """The savepoint of a stop is written: stop every task; the job stays RUNNING
    (as in Flink) and ends FINISHED once none is live (``settle``)."""
    cancel_live_tasks(p, job_id)
    settle(p, job_id)


def restart(p: Planner, job_id: str) -> None:
    """Build the next execution graph (attempts + 1) and deploy it if slots allow."""
    job = p.state.jobs[job_id]
    placement = placement_for(p, job)
    reason = placement if isinstance(placement, str) else None
    _change(p, job, JobStatus.CREATED, reason)
    job = p.state.jobs[job_id]
    subtasks = tuple(
        TaskRef(job_id=job_id, vertex_id=k[0], subtask_index=k[1], attempt=x.attempt + 1)
        for k, x in job.executions.items()
    )
    p.emit(
        ExecutionGraphCreated,
        job_id=job_id,
        restart_count=job.restart_count + 1,
        subtasks=subtasks,
    )
    if not isinstance(placement, str):
        deploy(p, job_id, placement)


def settle(p: Planner, job_id: str) -> None:
    """Take the job-level step its tasks now allow, if any."""
    job = p.state.jobs[job_id]
    status = job.status
    if status is JobStatus.RUNNING:
        stopped = job.checkpoints.stopping_after is not None and not job.live_keys()
        if stopped or all(x.state is _E.FINISHED for x in job.executions.values()):
            _change(p, job, JobStatus.FINISHED)
        return
    if job.live_keys():
        return
    if status is JobStatus.CANCELLING:
        _change(p, job, JobStatus.CANCELED)
    elif status is JobStatus.FAILING:
        _change(p, job, JobStatus.FAILED)
    elif status is JobStatus.RESTARTING and job.restart_at is not None and job.restart_at <= p.now:
        restart(p, job_id)


def fail_slot_wait(p: Planner, job_id: str) -> None:
    job = p.state.jobs[job_id]
    cause = (
        f"NoResourceAvailableException: no slots for {p.config.slot_wait_timeout_ms} ms "
        f"({job.waiting_reason or 'waiting for resources'})"
    )
    _change(p, job, JobStatus.FAILING, cause)
    settle(p, job_id)
