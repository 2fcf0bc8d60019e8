"""Invariants the folded state must always satisfy (checked by tests, cheap
enough for a debug assertion in the loop). Returns the violations found."""

from coordinator.domain.state import State
from schemas.events import ExecutionState, JobStatus
from schemas.limits import MAX_TASKS_PER_SLOT


def violations(state: State) -> list[str]:
    found: list[str] = []
    held: dict[tuple[str, str, int], str] = {}
    for tm_id in sorted(state.workers):
        worker = state.workers[tm_id]
        for i, task in worker.tasks():
            job = state.jobs.get(task.job_id)
            x = None if job is None else job.executions.get((task.vertex_id, task.subtask_index))
            if x is None or x.attempt != task.attempt or not x.is_live:
                found.append(f"slot {tm_id}#{i} holds {task}, which is not a live attempt")
            elif (x.tm_id, x.slot_index, x.incarnation) != (tm_id, i, worker.incarnation):
                found.append(f"slot {tm_id}#{i} holds {task}, deployed elsewhere")
            held[(task.job_id, task.vertex_id, task.subtask_index)] = f"{tm_id}#{i}"
        for i, slot in enumerate(worker.slots):
            if len(slot) > MAX_TASKS_PER_SLOT:
                found.append(f"slot {tm_id}#{i} holds {len(slot)} tasks, more than "
                             f"{MAX_TASKS_PER_SLOT}")  # fmt: skip
    for job_id in sorted(state.jobs):
        job = state.jobs[job_id]
        for key, x in job.executions.items():
            if x.is_live and (job_id, *key) not in held:
                found.append(f"{job_id} {key} is {x.state} but holds no slot")
        if job.status.is_globally_terminal and any(x.is_live for x in job.executions.values()):
            found.append(f"{job_id} is {job.status} with live tasks")
        if job.status is JobStatus.CREATED and any(
            x.state is not ExecutionState.CREATED for x in job.executions.values()
        ):
            found.append(f"{job_id} is CREATED with deployed tasks")
        if job.status is JobStatus.RUNNING and any(
            x.state is ExecutionState.CREATED for x in job.executions.values()
        ):
            found.append(f"{job_id} is RUNNING with undeployed tasks")
        if (job.status is JobStatus.RESTARTING) != (job.restart_at is not None):
            found.append(f"{job_id}: restart_at {job.restart_at} while {job.status}")
        if (job.status is JobStatus.CREATED) != (job.waiting_since is not None):
            found.append(f"{job_id}: waiting_since {job.waiting_since} while {job.status}")
    return found
