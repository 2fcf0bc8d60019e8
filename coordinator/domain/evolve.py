"""``evolve(state, event)``: the one apply path, for live processing and replay.

Each journal event type has its ``_apply_<EventName>``. Every handler first
checks that the event can follow the state and raises ``InconsistentJournal``
otherwise: the journal is the truth, an impossible journal is refused, never
guessed at. Handlers take time only from ``event.event_time``.

Epoch rule (DESIGN.md, leadership): a LeaderElected must raise the epoch; any
other event stamped with an older epoch is a fenced leader's leftover and is
ignored (and counted); an event from a newer epoch than the last
LeaderElected cannot exist.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from coordinator.domain.errors import EpochNotIncreasing, InconsistentJournal
from coordinator.domain.restart import record_restart
from coordinator.domain.state import (
    CHECKPOINT_HISTORY_LIMIT,
    ENDED_JOB_RETENTION_MS,
    ENDED_JOBS_KEPT,
    EXCEPTION_HISTORY_LIMIT,
    LOST_INCARNATIONS_PER_WORKER,
    LOST_WORKER_RETENTION_MS,
    LOST_WORKERS_KEPT,
    CheckpointRecord,
    CheckpointStatus,
    EndedJob,
    ExceptionEntry,
    Execution,
    Job,
    PendingCheckpoint,
    RestoreRecord,
    SavepointToWrite,
    State,
    Worker,
)
from coordinator.domain.transitions import (
    LIVE_EXECUTION_STATES,
    is_legal_execution_transition,
    is_legal_job_transition,
)
from schemas.events import (
    CheckpointAborted,
    CheckpointCompleted,
    CheckpointKind,
    CheckpointStateDiscarded,
    CheckpointTriggered,
    ExecutionGraphCreated,
    ExecutionState,
    InputRejected,
    JobAccepted,
    JobArchived,
    JobRejected,
    JobStatus,
    JobStatusChanged,
    JournalEvent,
    LeaderElected,
    RestartScheduled,
    SavepointCompleted,
    SnapshotTaken,
    TaskAssigned,
    TaskManagerJoined,
    TaskManagerLost,
    TaskStateRecorded,
)
from schemas.limits import FINISHED_TASK_HANDLE, clip_trace


def evolve(state: State, event: JournalEvent) -> None:
    """Apply one journal event to `state` in place, or raise InconsistentJournal."""
    if event.epoch != state.epoch:
        if type(event) is LeaderElected:
            pass  # checked by its handler
        elif event.epoch < state.epoch:
            state.ignored_stale_events += 1
            return
        else:
            raise InconsistentJournal(
                f"{type(event).__name__} {event.event_id} has epoch {event.epoch}, "
                f"above the current epoch {state.epoch} without a LeaderElected"
            )
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise InconsistentJournal(f"{type(event).__name__} is not a journal event")
    handler(state, event)


def _exception(job: Job, entry: ExceptionEntry) -> None:
    job.exceptions.append(entry)
    if len(job.exceptions) > EXCEPTION_HISTORY_LIMIT:
        del job.exceptions[0]


def _apply_LeaderElected(state: State, e: LeaderElected) -> None:
    if e.epoch <= state.epoch:
        raise EpochNotIncreasing(
            f"LeaderElected {e.event_id} ({e.replica_id}) has epoch {e.epoch}, "
            f"not above the current epoch {state.epoch}"
        )
    state.epoch = e.epoch
    state.leader_replica_id = e.replica_id
    state.leader_since = e.event_time


def _apply_JobAccepted(state: State, e: JobAccepted) -> None:
    sub = e.submission
    if sub.job_id in state.jobs:
        raise InconsistentJournal(f"job {sub.job_id!r} accepted twice")
    state.jobs[sub.job_id] = Job(
        job_id=sub.job_id,
        submission=sub,
        accepted_seq=state.next_job_seq,
        accepted_at=e.event_time,
        status=JobStatus.INITIALIZING,
        status_since=e.event_time,
    )
    state.next_job_seq += 1


def _apply_JobRejected(state: State, e: JobRejected) -> None:
    state.rejected_inputs += 1


def _apply_InputRejected(state: State, e: InputRejected) -> None:
    state.rejected_inputs += 1
    job_id = e.job_id
    job = state.jobs.get(job_id) if job_id is not None else None
    if job is None or job_id is None:
        return
    # A savepoint request is refused after its checkpoint completed when its
    # directory could not be written (checkpoints.on_savepoint_written).
    for checkpoint_id, todo in list(job.checkpoints.savepoints_to_write.items()):
        if todo.request_event_id == e.input_event_id:
            job = state.job_for_update(job_id)
            del job.checkpoints.savepoints_to_write[checkpoint_id]
            found = job.checkpoints.stats.record(checkpoint_id)
            if found is not None:
                job.checkpoints.stats.replace(dataclasses.replace(found, failure_message=e.reason))


def _apply_JobStatusChanged(state: State, e: JobStatusChanged) -> None:
    job = state.job_for_update(e.job_id)
    if job.status is not e.from_status:
        raise InconsistentJournal(
            f"job {e.job_id!r} is {job.status}, not {e.from_status} ({e.event_id})"
        )
    target = e.to_status
    if not is_legal_job_transition(job.status, target):
        raise InconsistentJournal(f"job {e.job_id!r}: illegal transition {job.status}->{target}")
    if target is JobStatus.RUNNING and (
        not job.executions
        or any(x.state is ExecutionState.CREATED for x in job.executions.values())
    ):
        raise InconsistentJournal(f"job {e.job_id!r} RUNNING with undeployed subtasks")
    if target.is_globally_terminal:
        if any(x.state in LIVE_EXECUTION_STATES for x in job.executions.values()):
            raise InconsistentJournal(f"job {e.job_id!r} {target} with live tasks")
        # Never-deployed subtasks end with their job, as Flink cancels them.
        for key, x in job.executions.items():
            if x.state is ExecutionState.CREATED:
                job.executions[key] = Execution(x.attempt, ExecutionState.CANCELED, e.event_time)
    if job.status is JobStatus.CREATED:
        job.waiting_reason = job.waiting_since = None
    elif job.status is JobStatus.RESTARTING:
        job.restart_at = None
    elif job.status is JobStatus.RUNNING:
        # A checkpoint cannot complete once tasks stop: decide journals a
        # CheckpointAborted for each before the job leaves RUNNING (journals
        # written before it did left them pending: they end here, as failed).
        # The next RUNNING re-arms the periodic trigger.
        for pending in job.checkpoints.pending.values():
            _checkpoint_failed(job, pending.checkpoint_id, e.event_time, "job left RUNNING", 0)
        job.checkpoints.pending.clear()
        job.checkpoints.next_trigger_at = None
    if target is JobStatus.CREATED:
        job.waiting_reason = e.cause
        job.waiting_since = e.event_time
    elif target is JobStatus.RUNNING:
        interval = job.submission.checkpoint_config.interval_ms
        if interval > 0:
            job.checkpoints.next_trigger_at = e.event_time + interval
    elif target is JobStatus.FAILING and e.cause is not None:
        _exception(job, ExceptionEntry(e.event_time, "JobFailure", e.cause))
    job.status = target
    job.status_since = e.event_time


def _apply_ExecutionGraphCreated(state: State, e: ExecutionGraphCreated) -> None:
    job = state.job_for_update(e.job_id)
    if job.status is not JobStatus.CREATED:
        raise InconsistentJournal(f"job {e.job_id!r}: execution graph while {job.status}")
    expected_count = job.restart_count + 1 if job.executions else 0
    if e.restart_count != expected_count:
        raise InconsistentJournal(
            f"job {e.job_id!r}: execution graph run {e.restart_count}, expected {expected_count}"
        )
    if any(x.state in LIVE_EXECUTION_STATES for x in job.executions.values()):
        raise InconsistentJournal(f"job {e.job_id!r}: new execution graph while tasks are live")
    expected = [(v.id, i) for v in job.submission.job_graph.vertices for i in range(v.parallelism)]
    got = [(t.vertex_id, t.subtask_index) for t in e.subtasks]
    if got != expected or any(t.job_id != e.job_id for t in e.subtasks):
        raise InconsistentJournal(f"job {e.job_id!r}: execution graph does not match job graph")
    executions: dict[tuple[str, int], Execution] = {}
    for t in e.subtasks:
        key = (t.vertex_id, t.subtask_index)
        old = job.executions.get(key)
        if old is not None and t.attempt <= old.attempt:
            raise InconsistentJournal(f"job {e.job_id!r}: attempt of {key} does not increase")
        executions[key] = Execution(t.attempt, ExecutionState.CREATED, e.event_time)
    job.executions = executions
    job.restart_count = e.restart_count
    cps = job.checkpoints
    cps.stopping_after = None  # a stop with savepoint that met a failover is off
    # The new graph's tasks are deployed with the latest completed checkpoint
    # (scheduler.deploy), or with the submission's savepoint on the first run.
    if cps.latest_completed is not None:
        cps.stats.latest_restored = RestoreRecord(cps.latest_completed, e.event_time, False)
        cps.stats.restored += 1
    elif e.restart_count == 0 and job.submission.savepoint_path is not None:
        path = job.submission.savepoint_path
        cps.stats.latest_restored = RestoreRecord(None, e.event_time, True, path)
        cps.stats.restored += 1


def _apply_TaskAssigned(state: State, e: TaskAssigned) -> None:
    task = e.task
    job = state.job_for_update(task.job_id)
    key = (task.vertex_id, task.subtask_index)
    x = job.executions.get(key)
    if job.status is not JobStatus.CREATED or x is None or x.attempt != task.attempt:
        raise InconsistentJournal(f"{e.event_id}: assignment of unknown or stale task {task}")
    if x.state is not ExecutionState.CREATED:
        raise InconsistentJournal(f"{e.event_id}: task {task} already {x.state}")
    worker = state.worker_for_update(e.slot.tm_id)
    i = e.slot.slot_index
    if worker.incarnation != e.incarnation or not 0 <= i < len(worker.slots):
        raise InconsistentJournal(f"{e.event_id}: unknown slot {e.slot} / {e.incarnation}")
    held = worker.slots[i]
    if any(t.job_id != task.job_id or t.vertex_id == task.vertex_id for t in held):
        # Shared only by subtasks of one job, one per vertex (the planner picks which).
        raise InconsistentJournal(f"{e.event_id}: slot {e.slot} already runs {held}")
    worker.slots[i] = (*held, task)
    # One event stands for Flink's SCHEDULED (slot allocated) and DEPLOYING
    # (deployment sent in the same transaction).
    job.executions[key] = Execution(
        x.attempt, ExecutionState.DEPLOYING, e.event_time, worker.tm_id, i, worker.incarnation
    )


def _apply_TaskStateRecorded(state: State, e: TaskStateRecorded) -> None:
    task = e.task
    job = state.job_for_update(task.job_id)
    key = (task.vertex_id, task.subtask_index)
    x = job.executions.get(key)
    if x is None or x.attempt != task.attempt:
        raise InconsistentJournal(f"{e.event_id}: state of unknown or stale task {task}")
    if not is_legal_execution_transition(x.state, e.state):
        raise InconsistentJournal(f"{e.event_id}: task {task} illegal {x.state}->{e.state}")
    if e.state.is_terminal and x.tm_id is not None and x.slot_index is not None:
        worker = state.worker_for_update(x.tm_id)
        held = worker.slots[x.slot_index]
        if worker.incarnation != x.incarnation or task not in held:
            raise InconsistentJournal(f"{e.event_id}: task {task} does not hold its slot")
        worker.slots[x.slot_index] = tuple(t for t in held if t != task)
    job.executions[key] = Execution(
        x.attempt, e.state, e.event_time, x.tm_id, x.slot_index, x.incarnation
    )
    if e.state is ExecutionState.FAILED:
        _exception(
            job,
            ExceptionEntry(
                e.event_time,
                e.error_name or "TaskFailure",
                # Journals written before traces were cut at the source may hold long ones.
                clip_trace(e.error_stack or ""),
                task.vertex_id,
                task.subtask_index,
                task.attempt,
                x.tm_id,
            ),
        )


def _apply_TaskManagerJoined(state: State, e: TaskManagerJoined) -> None:
    known = state.workers.get(e.tm_id)
    if known is None:
        if e.incarnation in state.lost_incarnations.get(e.tm_id, ()):
            raise InconsistentJournal(f"{e.event_id}: lost incarnation {e.incarnation} rejoins")
        state.workers[e.tm_id] = Worker(
            e.tm_id, e.incarnation, e.host, [()] * e.slots, e.operators, e.version, e.event_time
        )
        return
    if known.incarnation != e.incarnation:
        raise InconsistentJournal(
            f"{e.event_id}: {e.tm_id} joins as {e.incarnation} while {known.incarnation} is known"
        )
    if len(known.slots) != e.slots:
        raise InconsistentJournal(f"{e.event_id}: {e.tm_id} re-registers with other slot count")
    # Re-registration of a known incarnation (a new leader reconciling).
    worker = state.worker_for_update(e.tm_id)
    worker.host, worker.operators, worker.version = e.host, e.operators, e.version
    worker.registered_at = e.event_time


def _apply_TaskManagerLost(state: State, e: TaskManagerLost) -> None:
    worker = state.workers.get(e.tm_id)
    if worker is None or worker.incarnation != e.incarnation:
        raise InconsistentJournal(
            f"{e.event_id}: lost unknown TaskManager {e.tm_id}/{e.incarnation}"
        )
    if any(worker.slots):
        raise InconsistentJournal(f"{e.event_id}: {e.tm_id} lost while its slots hold tasks")
    del state.workers[e.tm_id]
    lost = state.lost_for_update()
    # A new dict, moved to the end: the order is by latest loss, and a fork
    # shares the inner dicts of its origin.
    incarnations = {**lost.pop(e.tm_id, {}), e.incarnation: e.event_time}
    while len(incarnations) > LOST_INCARNATIONS_PER_WORKER:
        del incarnations[next(iter(incarnations))]
    lost[e.tm_id] = incarnations
    cutoff = e.event_time - LOST_WORKER_RETENTION_MS
    while lost and (
        len(lost) > LOST_WORKERS_KEPT or max(next(iter(lost.values())).values()) < cutoff
    ):
        del lost[next(iter(lost))]


def _apply_RestartScheduled(state: State, e: RestartScheduled) -> None:
    job = state.job_for_update(e.job_id)
    if job.status is not JobStatus.RESTARTING or job.restart_at is not None:
        raise InconsistentJournal(f"{e.event_id}: restart of job {e.job_id!r} while {job.status}")
    if e.restart_count != job.restart_count + 1 or e.restart_at < e.event_time:
        raise InconsistentJournal(f"{e.event_id}: restart {e.restart_count} out of order")
    job.restart_at = e.restart_at
    record_restart(
        job.submission.restart_strategy, job.restarts, e.event_time, e.restart_at - e.event_time
    )


def _apply_CheckpointTriggered(state: State, e: CheckpointTriggered) -> None:
    job = state.job_for_update(e.job_id)
    cps = job.checkpoints
    if job.status is not JobStatus.RUNNING or e.checkpoint_id != cps.next_checkpoint_id:
        raise InconsistentJournal(f"{e.event_id}: checkpoint {e.checkpoint_id} out of order")
    cps.pending[e.checkpoint_id] = PendingCheckpoint(
        e.checkpoint_id,
        e.kind,
        e.event_time,
        e.timeout_at,
        e.epoch,
        e.target_directory,
        e.request_event_id,
    )
    cps.next_checkpoint_id += 1
    stats = cps.stats
    stats.triggered += 1
    stats.history.append(
        CheckpointRecord(
            e.checkpoint_id, e.kind, CheckpointStatus.IN_PROGRESS, e.event_time,
            len(job.executions),
        )
    )  # fmt: skip
    if len(stats.history) > CHECKPOINT_HISTORY_LIMIT:
        del stats.history[0]
    interval = job.submission.checkpoint_config.interval_ms
    if e.kind is CheckpointKind.CHECKPOINT and interval > 0:
        cps.next_trigger_at = e.event_time + interval


def _pending(
    state: State, job_id: str, checkpoint_id: int, event_id: str
) -> tuple[Job, PendingCheckpoint]:
    job = state.job_for_update(job_id)
    pending = job.checkpoints.pending.pop(checkpoint_id, None)
    if pending is None:
        raise InconsistentJournal(f"{event_id}: checkpoint {checkpoint_id} is not pending")
    return job, pending


def _after_checkpoint(job: Job, now: int) -> None:
    cps = job.checkpoints
    if cps.next_trigger_at is not None:
        cps.next_trigger_at = max(
            cps.next_trigger_at, now + job.submission.checkpoint_config.min_pause_ms
        )


def _record(job: Job, checkpoint_id: int, kind: CheckpointKind, at: int) -> CheckpointRecord:
    """The history record of a checkpoint (one fallen out of the history: rebuilt)."""
    found = job.checkpoints.stats.record(checkpoint_id)
    if found is not None:
        return found
    return CheckpointRecord(checkpoint_id, kind, CheckpointStatus.IN_PROGRESS, at, 0)


def _checkpoint_failed(
    job: Job, checkpoint_id: int, at: int, reason: str, acknowledged: int
) -> None:
    stats = job.checkpoints.stats
    pending = job.checkpoints.pending[checkpoint_id]
    failed = dataclasses.replace(
        _record(job, checkpoint_id, pending.kind, pending.triggered_at),
        status=CheckpointStatus.FAILED,
        num_acknowledged_subtasks=acknowledged,
        finish_timestamp=at,
        failure_message=reason,
    )
    stats.replace(failed)
    stats.failed += 1
    stats.latest_failed = failed


def _apply_CheckpointCompleted(state: State, e: CheckpointCompleted) -> None:
    job, pending = _pending(state, e.job_id, e.checkpoint_id, e.event_id)
    cps = job.checkpoints
    if pending.kind is CheckpointKind.CHECKPOINT:
        if not set(e.subsumed) <= set(cps.completed):
            raise InconsistentJournal(f"{e.event_id}: subsumes unknown checkpoints")
        cps.completed = [c for c in cps.completed if c not in e.subsumed]
        cps.completed.append(e.checkpoint_id)
        for subsumed in e.subsumed:
            cps.retained_handles.pop(subsumed, None)
        cps.retained_handles[e.checkpoint_id] = tuple(
            h.state_handle for h in e.task_states if h.state_handle != FINISHED_TASK_HANDLE
        )
        cps.latest_completed = e.checkpoint_id
        cps.restore_handles = {
            (h.task.vertex_id, h.task.subtask_index): h.state_handle for h in e.task_states
        }
        cps.consecutive_failures = 0
    else:
        cps.savepoints_to_write[e.checkpoint_id] = SavepointToWrite(
            pending.kind,
            pending.target_directory or "savepoints",
            pending.request_event_id,
            {(h.task.vertex_id, h.task.subtask_index): h.state_handle for h in e.task_states},
        )
    stats = cps.stats
    done = dataclasses.replace(
        _record(job, e.checkpoint_id, pending.kind, pending.triggered_at),
        status=CheckpointStatus.COMPLETED,
        num_acknowledged_subtasks=len(e.task_states),
        end_to_end_duration=e.duration_ms,
        state_size=e.state_size,
        alignment_ms=max((h.alignment_ms for h in e.task_states), default=0),
        finish_timestamp=e.event_time,
    )
    stats.replace(done)
    stats.completed += 1
    stats.end_to_end_duration = stats.end_to_end_duration.add(e.duration_ms)
    stats.state_size = stats.state_size.add(e.state_size)
    if pending.kind is CheckpointKind.CHECKPOINT:
        stats.latest_completed = done
    else:
        stats.latest_savepoint = done
    _after_checkpoint(job, e.event_time)


def _apply_CheckpointAborted(state: State, e: CheckpointAborted) -> None:
    job = state.job_for_update(e.job_id)
    if e.checkpoint_id in job.checkpoints.pending:
        _checkpoint_failed(job, e.checkpoint_id, e.event_time, e.reason, e.acknowledged)
    job, pending = _pending(state, e.job_id, e.checkpoint_id, e.event_id)
    if pending.kind is CheckpointKind.CHECKPOINT and e.counted:
        job.checkpoints.consecutive_failures += 1
    _after_checkpoint(job, e.event_time)


def _apply_CheckpointStateDiscarded(state: State, e: CheckpointStateDiscarded) -> None:
    job = state.job_for_update(e.job_id)
    cps = job.checkpoints
    gone = set(e.checkpoint_ids)
    if gone & set(cps.pending):
        raise InconsistentJournal(f"{e.event_id}: discards the state of a pending checkpoint")
    if cps.latest_completed in gone:
        cps.latest_completed = None
        cps.restore_handles = {}
    cps.completed = [c for c in cps.completed if c not in gone]
    for checkpoint_id in gone:
        cps.retained_handles.pop(checkpoint_id, None)
    stats = cps.stats
    for i, r in enumerate(stats.history):
        if r.checkpoint_id in gone:
            stats.history[i] = dataclasses.replace(r, discarded=True)
    if stats.latest_completed is not None and stats.latest_completed.checkpoint_id in gone:
        stats.latest_completed = dataclasses.replace(stats.latest_completed, discarded=True)


def _apply_SavepointCompleted(state: State, e: SavepointCompleted) -> None:
    job = state.job_for_update(e.job_id)
    job.checkpoints.last_savepoint_path = e.savepoint_path
    written = job.checkpoints.savepoints_to_write.pop(e.checkpoint_id, None)
    if written is not None and written.kind is CheckpointKind.SYNC_SAVEPOINT:
        job.checkpoints.stopping_after = e.checkpoint_id
    stats = job.checkpoints.stats
    latest = stats.latest_savepoint
    if latest is not None and latest.checkpoint_id == e.checkpoint_id:
        stats.latest_savepoint = dataclasses.replace(latest, external_path=e.savepoint_path)
    found = stats.record(e.checkpoint_id)
    if found is not None:
        stats.replace(dataclasses.replace(found, external_path=e.savepoint_path))


def _apply_JobArchived(state: State, e: JobArchived) -> None:
    job = state.job_for_update(e.job_id)
    if job.status is not e.final_status or not job.status.is_globally_terminal:
        raise InconsistentJournal(f"{e.event_id}: archiving job {e.job_id!r} while {job.status}")
    del state.jobs[e.job_id]
    state.archived_jobs += 1
    ended = state.ended_for_update()
    ended.pop(e.job_id, None)
    ended[e.job_id] = EndedJob(job.status, job.status_since, e.event_time)
    cutoff = e.event_time - ENDED_JOB_RETENTION_MS
    while ended and (
        len(ended) > ENDED_JOBS_KEPT or next(iter(ended.values())).archived_at < cutoff
    ):
        del ended[next(iter(ended))]


def _apply_SnapshotTaken(state: State, e: SnapshotTaken) -> None:
    """A marker for readers of the journal; the state it describes is unchanged."""


_HANDLERS: Final[dict[type[JournalEvent], Callable[[State, Any], None]]] = {
    LeaderElected: _apply_LeaderElected,
    JobAccepted: _apply_JobAccepted,
    JobRejected: _apply_JobRejected,
    JobStatusChanged: _apply_JobStatusChanged,
    ExecutionGraphCreated: _apply_ExecutionGraphCreated,
    TaskAssigned: _apply_TaskAssigned,
    TaskStateRecorded: _apply_TaskStateRecorded,
    TaskManagerJoined: _apply_TaskManagerJoined,
    TaskManagerLost: _apply_TaskManagerLost,
    RestartScheduled: _apply_RestartScheduled,
    CheckpointTriggered: _apply_CheckpointTriggered,
    CheckpointCompleted: _apply_CheckpointCompleted,
    CheckpointAborted: _apply_CheckpointAborted,
    CheckpointStateDiscarded: _apply_CheckpointStateDiscarded,
    SavepointCompleted: _apply_SavepointCompleted,
    JobArchived: _apply_JobArchived,
    SnapshotTaken: _apply_SnapshotTaken,
    InputRejected: _apply_InputRejected,
}

#: Journal event types evolve knows (a test checks it is every JournalEvent).
HANDLED_EVENT_TYPES: Final = frozenset(_HANDLERS)


def in_epoch_handlers() -> Callable[[type], Callable[[State, Any], None] | None]:
    """For a reader that folds many events: the lookup of what ``evolve`` does with an
    event of the state's current epoch that is not a LeaderElected (the epoch check
    is the caller's). None for a type evolve refuses: ``evolve`` says why."""
    return _HANDLERS.get
