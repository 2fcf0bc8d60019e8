"""The CheckpointCoordinator: trigger, acknowledge, complete, abort (Flink's rules).

Acknowledgements are volatile: ``on_acknowledged`` records each valid one in
the leader's view (LeaderView.checkpoint_acks) until every subtask of the
current attempts has acknowledged; then one CheckpointCompleted carries them
all, and the view forgets them (as it does on abort). Checkpoints triggered
under an older epoch are aborted by the next leader: their acks died with the
old leader.

Rules (CheckpointConfig, Flink's defaults): a periodic trigger every
``interval_ms``, at least ``min_pause_ms`` after the previous checkpoint
ended, at most ``max_concurrent`` in flight; a checkpoint not complete after
``timeout_ms`` is aborted; declines and expiries count as failures, and more
than ``tolerable_failures`` in a row fail the job over (a completion resets
the count); aborts caused by a task failure, failover, cancel or a new leader
do not count. Completed checkpoints beyond ``retained`` are subsumed; the
state of subsumed and aborted checkpoints is discarded (CheckpointStateDiscarded).

Finished tasks (FLIP-147, simplified; docs/checkpoints.md "Finished tasks"):
periodic checkpoints go on once some tasks have FINISHED. Triggers go to the
RUNNING sources only; a task that has FINISHED without acknowledging counts
as acknowledged with FINISHED_TASK_HANDLE (it processed all its input and
emitted all its output, so every later snapshot downstream contains it), and
a job restored from that checkpoint redeploys it as finished. Savepoints
still need every task RUNNING.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.domain import checkpoint_cleanup, jobmaster
from coordinator.domain.jobmaster import on_failure, stop_with_savepoint
from coordinator.domain.planner import Planner
from coordinator.domain.state import Job, SubtaskKey
from schemas.events import (
    CheckpointAcknowledged,
    CheckpointCompleted,
    CheckpointDeclined,
    CheckpointKind,
    CheckpointTriggered,
    ExecutionState,
    JobStatus,
    NotifyCheckpointComplete,
    SavepointCompleted,
    SavepointRequested,
    StopWithSavepointRequested,
    TaskStateChanged,
    TaskStateHandle,
    TriggerCheckpoint,
)
from schemas.limits import FINISHED_TASK_HANDLE

_E = ExecutionState


@dataclass(frozen=True, slots=True)
class SavepointWritten:
    """The leader's runtime wrote (or failed to write) the directory of a completed
    savepoint (state: ``savepoints_to_write``). Like a Tick, made by the loop and
    never read from a topic; event_id: unique, e.g. ``savepoint:<epoch>:<job>:<id>``.

    path: the savepoint directory written; None when it failed, `error` says why.
    """

    event_id: str
    job_id: str
    checkpoint_id: int
    path: str | None
    error: str | None = None


def _not_running(job: Job) -> str | None:
    if job.status is not JobStatus.RUNNING:
        return f"job is {job.status}, not RUNNING"
    if any(x.state is not _E.RUNNING for x in job.executions.values()):
        return "not all tasks are RUNNING"
    return None


def _cannot_checkpoint(job: Job) -> str | None:
    """Why no periodic checkpoint can start now: tasks may have FINISHED (FLIP-147),
    but every other task must be RUNNING, and one source at least."""
    if job.status is not JobStatus.RUNNING:
        return f"job is {job.status}, not RUNNING"
    states = {key: x.state for key, x in job.executions.items()}
    if any(s not in (_E.RUNNING, _E.FINISHED) for s in states.values()):
        return "not all tasks are RUNNING or FINISHED"
    if not any(states[key] is _E.RUNNING for key in _source_keys(job)):
        return "every source has finished"
    return None


def _source_keys(job: Job) -> list[tuple[str, int]]:
    graph = job.submission.job_graph
    sources = {v.id for v in graph.vertices} - {e.target for e in graph.edges}
    return [key for key in job.executions if key[0] in sources]


def trigger(
    p: Planner,
    job_id: str,
    kind: CheckpointKind,
    target_directory: str | None = None,
    request_event_id: str | None = None,
) -> None:
    """Journal the trigger and send TriggerCheckpoint to the source subtasks."""
    job = p.state.jobs[job_id]
    checkpoint_id = job.checkpoints.next_checkpoint_id
    p.emit(
        CheckpointTriggered,
        job_id=job_id,
        checkpoint_id=checkpoint_id,
        kind=kind,
        timeout_at=p.now + job.submission.checkpoint_config.timeout_ms,
        target_directory=target_directory,
        request_event_id=request_event_id,
    )
    checkpoint_cleanup.send_to_tasks(
        p,
        job,
        # Finished sources have sent their end markers: they take no trigger.
        [key for key in _source_keys(job) if job.executions[key].state is not _E.FINISHED],
        TriggerCheckpoint,
        checkpoint_id=checkpoint_id,
        kind=kind,
        target_directory=target_directory,
    )


def on_savepoint_requested(p: Planner, r: SavepointRequested | StopWithSavepointRequested) -> None:
    job = p.state.jobs.get(r.job_id)
    problem = "unknown job" if job is None else _not_running(job)
    if problem is not None:
        p.reject(r, problem, job_id=r.job_id)
        return
    kind = (
        CheckpointKind.SYNC_SAVEPOINT
        if isinstance(r, StopWithSavepointRequested)
        else CheckpointKind.SAVEPOINT
    )
    target = r.target_directory or p.config.default_savepoint_dir
    trigger(p, r.job_id, kind, target, r.event_id)


def _ack_problem(p: Planner, r: CheckpointAcknowledged | CheckpointDeclined) -> str | None:
    job = p.state.jobs.get(r.task.job_id)
    if job is None:
        return "unknown job"
    if r.checkpoint_id not in job.checkpoints.pending:
        return f"checkpoint {r.checkpoint_id} is not pending"
    x = job.executions.get((r.task.vertex_id, r.task.subtask_index))
    if x is None or x.attempt != r.task.attempt:
        return "unknown subtask or stale attempt"
    if x.tm_id != r.tm_id or x.incarnation != r.incarnation:
        return f"task is not deployed on {r.tm_id}/{r.incarnation}"
    return None


def on_acknowledged(p: Planner, r: CheckpointAcknowledged) -> None:
    """Record a valid acknowledgement in the view; complete once every subtask has."""
    problem = _ack_problem(p, r)
    if problem is not None:
        p.reject(r, problem, job_id=r.task.job_id, tm_id=r.tm_id)
        return
    p.view.record_ack(r, p.state.jobs)
    _complete_if_acknowledged(p, r.task.job_id, r.checkpoint_id)


def _complete_if_acknowledged(p: Planner, job_id: str, checkpoint_id: int) -> None:
    """Complete the checkpoint once each subtask has acknowledged it or has FINISHED
    without acknowledging it (an acknowledgement wins: its state is the one at the
    barrier, and the task's later records are not in the downstream snapshots).

    Called on every acknowledgement, so it resumes where the previous call stopped
    (``LeaderView.checkpoint_cursors``: a subtask once satisfied stays satisfied while
    the checkpoint is pending): a checkpoint of n subtasks costs O(n), not O(n^2)."""
    job = p.state.jobs[job_id]
    key = (job_id, checkpoint_id)
    acks = p.view.checkpoint_acks.get(key, {})
    finished_counts = job.checkpoints.pending[checkpoint_id].kind is CheckpointKind.CHECKPOINT
    keys = list(job.executions)
    i = p.view.checkpoint_cursors.get(key, 0)
    while i < len(keys) and _handle(job, keys[i], acks, finished_counts) is not None:
        i += 1
    if i < len(keys):
        p.view.checkpoint_cursors[key] = i
        return  # still waiting for other subtasks
    handles = [_handle(job, subtask, acks, finished_counts) for subtask in keys]
    if any(h is None for h in handles):  # cannot happen while the cursor's premise holds
        p.view.checkpoint_cursors.pop(key, None)
        return
    _complete(p, job, checkpoint_id, tuple(h for h in handles if h is not None))


def _handle(
    job: Job,
    subtask: SubtaskKey,
    acks: Mapping[SubtaskKey, CheckpointAcknowledged],
    finished_counts: bool,
) -> TaskStateHandle | None:
    """What `subtask` contributes to the checkpoint: its acknowledgement's state, the
    FINISHED handle (a checkpoint, not a savepoint), or None while it owes one."""
    x = job.executions[subtask]
    ack = acks.get(subtask)
    if ack is not None and ack.task.attempt == x.attempt:
        return TaskStateHandle(
            task=ack.task,
            state_handle=ack.state_handle,
            state_size=ack.state_size,
            duration_ms=ack.duration_ms,
            alignment_ms=ack.alignment_ms,
        )
    if finished_counts and x.state is _E.FINISHED:
        return TaskStateHandle(
            task=job.task_ref(subtask),
            state_handle=FINISHED_TASK_HANDLE,
            state_size=0,
            duration_ms=0,
            alignment_ms=0,
        )
    return None


def on_task_state_changed(p: Planner, r: TaskStateChanged) -> None:
    """The JobMaster records the report; a task that FINISHED may be the last one
    a pending checkpoint was waiting for."""
    jobmaster.on_task_state_changed(p, r)
    job = p.state.jobs.get(r.task.job_id)
    if r.state is not _E.FINISHED or job is None or job.status is not JobStatus.RUNNING:
        return
    for checkpoint_id in sorted(job.checkpoints.pending):
        if checkpoint_id in p.state.jobs[job.job_id].checkpoints.pending:
            _complete_if_acknowledged(p, job.job_id, checkpoint_id)


def _complete(
    p: Planner, job: Job, checkpoint_id: int, handles: tuple[TaskStateHandle, ...]
) -> None:
    pending = job.checkpoints.pending[checkpoint_id]
    subsumed: tuple[int, ...] = ()
    if pending.kind is CheckpointKind.CHECKPOINT:
        completed = [*job.checkpoints.completed, checkpoint_id]
        retained = job.submission.checkpoint_config.retained
        subsumed = tuple(completed[: max(0, len(completed) - retained)])
    kept = job.checkpoints.retained_handles
    subsumed_handles = {c: kept.get(c, ()) for c in subsumed}
    p.emit(
        CheckpointCompleted,
        job_id=job.job_id,
        checkpoint_id=checkpoint_id,
        task_states=handles,
        state_size=sum(h.state_size for h in handles),
        duration_ms=p.now - pending.triggered_at,
        subsumed=subsumed,
    )
    # A savepoint's directory is written by the leader's runtime from these handles
    # (state: savepoints_to_write); SavepointCompleted follows on_savepoint_written.
    p.view.forget_checkpoint(job.job_id, checkpoint_id)
    checkpoint_cleanup.notify(p, job, checkpoint_id, NotifyCheckpointComplete)
    checkpoint_cleanup.discard(
        p, job.job_id, subsumed_handles, f"subsumed by checkpoint {checkpoint_id}"
    )


def abort(p: Planner, job_id: str, checkpoint_id: int, reason: str, *, counted: bool) -> None:
    """Abort a pending checkpoint; more consecutive counted failures than tolerated
    fail the job over."""
    checkpoint_cleanup.abort(p, job_id, checkpoint_id, reason, counted=counted)
    job = p.state.jobs[job_id]
    if job.checkpoints.consecutive_failures > job.submission.checkpoint_config.tolerable_failures:
        on_failure(p, job_id, f"checkpoint tolerable failure threshold exceeded: {reason}")


def on_declined(p: Planner, r: CheckpointDeclined) -> None:
    problem = _ack_problem(p, r)
    if problem is not None:
        p.reject(r, problem, job_id=r.task.job_id, tm_id=r.tm_id)
        return
    task = r.task
    job = p.state.jobs[task.job_id]
    if job.executions[(task.vertex_id, task.subtask_index)].state is _E.FINISHED:
        # The trigger crossed the task's FINISHED report: it counts as finished.
        _complete_if_acknowledged(p, task.job_id, r.checkpoint_id)
        return
    abort(
        p,
        task.job_id,
        r.checkpoint_id,
        f"declined by {task.vertex_id}#{task.subtask_index}: {r.reason}",
        counted=True,
    )


def on_tick(p: Planner, job_id: str) -> None:
    """Abort expired or orphaned checkpoints; trigger a due periodic one."""
    job = p.state.jobs[job_id]
    for checkpoint_id in sorted(job.checkpoints.pending):
        pending = job.checkpoints.pending[checkpoint_id]
        if pending.epoch < p.state.epoch:
            abort(p, job_id, checkpoint_id, "leader changed; acknowledgements lost", counted=False)
        elif pending.timeout_at <= p.now:
            abort(p, job_id, checkpoint_id, "checkpoint expired before completing", counted=True)
        job = p.state.jobs[job_id]
        if job.status is not JobStatus.RUNNING:
            return
    cps = job.checkpoints
    config = job.submission.checkpoint_config
    if (
        cps.next_trigger_at is not None
        and cps.next_trigger_at <= p.now
        and len(cps.pending) < config.max_concurrent
        and _cannot_checkpoint(job) is None
    ):
        trigger(p, job_id, CheckpointKind.CHECKPOINT)


def on_savepoint_written(p: Planner, w: SavepointWritten) -> None:
    """Journal SavepointCompleted with the directory the runtime wrote (and stop the
    job for a stop with savepoint), or refuse the request with the reason."""
    job = p.state.jobs.get(w.job_id)
    todo = None if job is None else job.checkpoints.savepoints_to_write.get(w.checkpoint_id)
    if job is None or todo is None:
        return  # already answered (a leader before this one journaled it)
    request_id = todo.request_event_id or f"savepoint:{w.job_id}:{w.checkpoint_id}"
    if w.path is None:
        request = (
            StopWithSavepointRequested
            if todo.kind is CheckpointKind.SYNC_SAVEPOINT
            else SavepointRequested
        )
        p.reject_input(
            request_id,
            request.__name__,
            f"savepoint {w.checkpoint_id} of job {w.job_id} could not be written: {w.error}",
            job_id=w.job_id,
        )
        return
    p.emit(
        SavepointCompleted,
        job_id=w.job_id,
        checkpoint_id=w.checkpoint_id,
        savepoint_path=w.path,
        request_event_id=todo.request_event_id,
    )
    if todo.kind is CheckpointKind.SYNC_SAVEPOINT and job.status is JobStatus.RUNNING:
        stop_with_savepoint(p, w.job_id)
