"""Ending checkpoints: abort, notify, and name the state to delete.

Below both the JobMaster (which aborts what is pending before a job leaves
RUNNING) and the CheckpointCoordinator (``checkpoints``). The core only
decides: ``CheckpointStateDiscarded`` names the handles whose state goes, and
whoever owns the storage (the leader's runtime, or the workers, told by
``NotifyCheckpointAborted``) deletes it.
"""

from collections.abc import Iterable
from typing import Any

from coordinator.domain.planner import Planner
from coordinator.domain.state import Job, SubtaskKey
from schemas.events import (
    CheckpointAborted,
    CheckpointStateDiscarded,
    ExternalizedRetention,
    JobStatus,
    NotifyCheckpointAborted,
    NotifyCheckpointComplete,
    TaskRef,
    TriggerCheckpoint,
)
from schemas.limits import FINISHED_TASK_HANDLE, MAX_REASON_BYTES, MAX_TASKS_PER_COMMAND, clip

TaskCommand = TriggerCheckpoint | NotifyCheckpointComplete | NotifyCheckpointAborted


def send_to_tasks(
    p: Planner, job: Job, keys: Iterable[SubtaskKey], command: type[TaskCommand], **fields: Any
) -> None:
    """Send `command` to the current attempt of each subtask of `keys` that is deployed:
    one command per worker incarnation naming its tasks (``task`` and ``more_tasks``),
    not one per task, so a checkpoint of n subtasks on w workers costs w records."""
    by_worker: dict[tuple[str, str], list[TaskRef]] = {}
    for key in keys:
        x = job.executions[key]
        if x.tm_id is not None and x.incarnation is not None:
            by_worker.setdefault((x.tm_id, x.incarnation), []).append(job.task_ref(key))
    for (tm_id, incarnation), tasks in by_worker.items():
        for i in range(0, len(tasks), MAX_TASKS_PER_COMMAND):
            first, *more = tasks[i : i + MAX_TASKS_PER_COMMAND]
            p.command(
                command, tm_id=tm_id, incarnation=incarnation, task=first,
                more_tasks=tuple(more), **fields,
            )  # fmt: skip


def notify(
    p: Planner,
    job: Job,
    checkpoint_id: int,
    command: type[NotifyCheckpointComplete] | type[NotifyCheckpointAborted],
) -> None:
    """Tell every live task of `job` how `checkpoint_id` ended."""
    send_to_tasks(p, job, job.live_keys(), command, checkpoint_id=checkpoint_id)


def discard(p: Planner, job_id: str, handles: dict[int, tuple[str, ...]], why: str) -> None:
    """One CheckpointStateDiscarded per checkpoint: a record never holds more handles
    than one checkpoint has subtasks, whatever `retained` is."""
    for checkpoint_id, names in handles.items():
        p.emit(
            CheckpointStateDiscarded,
            job_id=job_id,
            checkpoint_ids=(checkpoint_id,),
            handles=tuple(sorted(set(names))),
            reason=why,
        )


def abort(p: Planner, job_id: str, checkpoint_id: int, reason: str, *, counted: bool) -> None:
    """Journal the abort, tell the tasks, and discard what the acknowledged tasks wrote.

    Acknowledgements that never reached this leader (a new leader aborting an
    older one's checkpoint, a late ack) name state only their task knows: the
    task drops it on NotifyCheckpointAborted.
    """
    acks = p.view.checkpoint_acks.get((job_id, checkpoint_id), {})
    handles = tuple(a.state_handle for a in acks.values() if a.state_handle != FINISHED_TASK_HANDLE)
    p.emit(
        CheckpointAborted,
        job_id=job_id,
        checkpoint_id=checkpoint_id,
        reason=clip(reason, MAX_REASON_BYTES),
        counted=counted,
        acknowledged=len(acks),
    )
    p.view.forget_checkpoint(job_id, checkpoint_id)
    notify(p, p.state.jobs[job_id], checkpoint_id, NotifyCheckpointAborted)
    if handles:
        discard(p, job_id, {checkpoint_id: handles}, f"checkpoint {checkpoint_id} aborted")


def abort_all_pending(p: Planner, job_id: str, reason: str) -> None:
    """Before a job leaves RUNNING: its tasks stop, no pending checkpoint can complete.
    Not counted as checkpoint failures (Flink ignores task failures and failovers)."""
    for checkpoint_id in sorted(p.state.jobs[job_id].checkpoints.pending):
        abort(p, job_id, checkpoint_id, reason, counted=False)


def _keeps(retention: ExternalizedRetention, status: JobStatus) -> bool:
    """Whether retained checkpoints outlive a job that ended `status` (Flink's
    CheckpointProperties: every mode discards on FINISHED)."""
    if status is JobStatus.FAILED:
        return retention is not ExternalizedRetention.NO_EXTERNALIZED_CHECKPOINTS
    if status is JobStatus.CANCELED:
        return retention is ExternalizedRetention.RETAIN_ON_CANCELLATION
    return False


def on_job_ended(p: Planner, job_id: str) -> None:
    """The job just ended: discard its retained checkpoints unless its retention keeps them.
    Savepoints are never among them: they are never deleted automatically."""
    job = p.state.jobs[job_id]
    cps = job.checkpoints
    if not cps.completed or _keeps(
        job.submission.checkpoint_config.externalized_retention, job.status
    ):
        return
    handles = {c: cps.retained_handles.get(c, ()) for c in cps.completed}
    discard(p, job_id, handles, f"job {job.status}")
