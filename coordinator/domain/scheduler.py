"""Slot placement (pure) and deployment of a waiting job.

Placement is all-or-nothing, like Flink's default scheduler with a fixed
parallelism: a job runs when every subtask has a slot, else it waits CREATED
(with the reason: too few free slots, or no worker offering an operator yet).
Each subtask goes to the worker that offers its operator and has the most
free slots (ties: smallest tm_id), lowest free slot index first, which
spreads a job across workers (Flink's cluster.evenly-spread-out-slots).
"""

from collections.abc import Mapping, Sequence

from coordinator.domain.planner import Planner
from coordinator.domain.state import Job, SubtaskKey, Worker
from schemas.events import (
    DeployTask,
    JobStatus,
    JobStatusChanged,
    JobSubmitted,
    SlotRef,
    TaskAssigned,
)
from schemas.validation import savepoint_handle

Placement = dict[SubtaskKey, tuple[str, int]]


def subtasks_of(submission: JobSubmitted) -> list[tuple[SubtaskKey, str]]:
    """(subtask, operator) in graph order: vertex order, then subtask index."""
    return [
        ((v.id, i), v.operator) for v in submission.job_graph.vertices for i in range(v.parallelism)
    ]


def provided(submission: JobSubmitted) -> frozenset[str]:
    """Operators the job's user-code artifact brings: every worker can run them."""
    artifact = submission.artifact
    return frozenset(artifact.operators) if artifact is not None else frozenset()


def place(
    subtasks: Sequence[tuple[SubtaskKey, str]],
    workers: Mapping[str, Worker],
    brought: frozenset[str] = frozenset(),
) -> Placement | str:
    """A slot for every subtask, or why there is none (the waiting reason). Operators
    in `brought` (the job's own code) run on any worker."""
    free = {tm: workers[tm].free_slots() for tm in sorted(workers)}
    placement: Placement = {}
    for key, operator in subtasks:
        best: str | None = None
        for tm, slots in free.items():
            if (
                slots
                and (operator in brought or operator in workers[tm].operators)
                and (best is None or len(slots) > len(free[best]))
            ):
                best = tm
        if best is None:
            if operator not in brought and not any(
                operator in w.operators for w in workers.values()
            ):
                return f"waiting for a worker offering {operator!r} (for {key[0]}#{key[1]})"
            total = sum(len(s) for s in free.values()) + len(placement)
            return (
                f"waiting for resources: {len(subtasks)} slots needed, {total} free; "
                f"no free slot offers operator {operator!r} for {key[0]}#{key[1]}"
            )
        placement[key] = (best, free[best].pop(0))
    return placement


def placement_for(p: Planner, job: Job) -> Placement | str:
    return place(subtasks_of(job.submission), p.state.workers, provided(job.submission))


def deploy(p: Planner, job_id: str, placement: Placement) -> None:
    """Assign every subtask of a CREATED job, move it to RUNNING, send DeployTask."""
    job = p.state.jobs[job_id]
    for key, (tm, slot) in placement.items():
        p.emit(
            TaskAssigned,
            task=job.task_ref(key),
            slot=SlotRef(tm_id=tm, slot_index=slot),
            incarnation=p.state.workers[tm].incarnation,
        )
    p.emit(
        JobStatusChanged, job_id=job_id, from_status=JobStatus.CREATED, to_status=JobStatus.RUNNING
    )
    job = p.state.jobs[job_id]
    graph = job.submission.job_graph
    vertices = {v.id: v for v in graph.vertices}
    parallelism = {v.id: v.parallelism for v in graph.vertices}
    handles = job.checkpoints.restore_handles
    restore_id = job.checkpoints.latest_completed
    savepoint = job.submission.savepoint_path
    if restore_id is None and savepoint is not None:
        # No checkpoint of its own yet: the state is the submission's savepoint,
        # read by the tasks from its directory (checkpoint id 0 in DeployTask).
        restore_id = 0
        handles = {k: savepoint_handle(savepoint, k[0], k[1]) for k in job.executions}
    for key, (tm, slot) in placement.items():
        v = vertices[key[0]]
        p.command(
            DeployTask,
            tm_id=tm,
            incarnation=p.state.workers[tm].incarnation,
            task=job.task_ref(key),
            slot_index=slot,
            operator=v.operator,
            vertex_name=v.name,
            parallelism=v.parallelism,
            max_parallelism=v.max_parallelism,
            config=dict(v.config),
            inputs=tuple(e for e in graph.edges if e.target == v.id),
            outputs=tuple(e for e in graph.edges if e.source == v.id),
            vertex_parallelism=dict(parallelism),
            restore_checkpoint_id=restore_id,
            restore_state_handle=handles.get(key),
            job_accepted_at=job.accepted_at,
            artifact=job.submission.artifact,
        )


def schedule_waiting(p: Planner) -> None:
    """Give free slots to CREATED jobs, oldest acceptance first."""
    waiting = sorted(
        (j for j in p.state.jobs.values() if j.status is JobStatus.CREATED),
        key=lambda j: j.accepted_seq,
    )
    for job in waiting:
        placement = placement_for(p, job)
        if not isinstance(placement, str):
            deploy(p, job.job_id, placement)
