"""The ResourceManager: worker registration, loss, heartbeats, reconciliation.

Incarnations fence workers: a report or registration from an incarnation that
is not the registered one (an older process, a lost one) is rejected. A worker
incarnation declared lost is told so (``DisconnectTaskManager`` on its commands
partition, and again whenever it registers): it may still be alive and hear the
leader, so it stops its tasks and comes back as a new incarnation. A known
incarnation registering again (typically after a leader change) keeps the
tasks it still runs with the attempts the journal assigned them, instead of
redeploying them (Flink's RECONCILING).
"""

from coordinator.domain.admission import standing
from coordinator.domain.jobmaster import on_failure, record_report, settle
from coordinator.domain.planner import Planner
from coordinator.domain.scheduler import schedule_waiting
from schemas.events import (
    CancelTask,
    DisconnectTaskManager,
    ExecutionState,
    RunningTask,
    TaskManagerDeregistered,
    TaskManagerJoined,
    TaskManagerLost,
    TaskManagerRegistered,
    TaskRef,
    TaskStateRecorded,
)

_E = ExecutionState


def _end_task(p: Planner, task: TaskRef, why: str) -> bool:
    """A deployed attempt is gone with its worker: CANCELED if it was being
    canceled anyway, else FAILED. True when it failed."""
    job = p.state.jobs[task.job_id]
    x = job.executions[(task.vertex_id, task.subtask_index)]
    failed = x.state is not _E.CANCELING
    p.emit(
        TaskStateRecorded,
        task=task,
        state=_E.FAILED if failed else _E.CANCELED,
        error_name="TaskManagerLost" if failed else None,
        error_stack=why if failed else None,
    )
    return failed


def _settle_jobs(p: Planner, failed_jobs: dict[str, str], touched: set[str]) -> None:
    """Fail over and settle affected jobs in acceptance order (never set order)."""
    for job_id in sorted(touched, key=lambda j: p.state.jobs[j].accepted_seq):
        if job_id in failed_jobs:
            on_failure(p, job_id, failed_jobs[job_id])
        settle(p, job_id)


def lose_worker(p: Planner, tm_id: str, reason: str, *, tell: bool = True) -> None:
    """Declare a worker incarnation gone: its tasks end first, then the worker.

    `tell`: send it a DisconnectTaskManager (a worker that deregistered is gone
    and needs none)."""
    worker = p.state.workers[tm_id]
    incarnation = worker.incarnation
    failed: dict[str, str] = {}
    touched: set[str] = set()
    for _, task in worker.tasks():
        touched.add(task.job_id)
        if _end_task(p, task, f"TaskManager {tm_id}/{incarnation} lost: {reason}"):
            failed.setdefault(
                task.job_id,
                f"{task.vertex_id}#{task.subtask_index} (attempt {task.attempt}) lost with "
                f"TaskManager {tm_id}: {reason}",
            )
    p.emit(TaskManagerLost, tm_id=tm_id, incarnation=incarnation, reason=reason)
    if tell:
        p.command(DisconnectTaskManager, tm_id=tm_id, incarnation=incarnation, reason=reason)
    _settle_jobs(p, failed, touched)


def on_registered(p: Planner, r: TaskManagerRegistered) -> None:
    if r.slots < 0:
        p.reject(r, f"negative slot count {r.slots}", tm_id=r.tm_id)
        return
    if r.incarnation in p.state.lost_incarnations.get(r.tm_id, ()):
        reason = f"incarnation {r.incarnation} was declared lost; register a new one"
        p.reject(r, reason, tm_id=r.tm_id)
        p.command(DisconnectTaskManager, tm_id=r.tm_id, incarnation=r.incarnation, reason=reason)
        return
    known = p.state.workers.get(r.tm_id)
    if known is not None and known.incarnation == r.incarnation:
        if len(known.slots) != r.slots:
            p.reject(
                r, f"re-registration with {r.slots} slots, {len(known.slots)} known", tm_id=r.tm_id
            )
            return
        _join(p, r)
        _reconcile(p, r)
    else:
        if known is not None:
            lose_worker(p, r.tm_id, f"replaced by incarnation {r.incarnation}")
        _join(p, r)
        # A new incarnation runs nothing the journal gave it: stop leftovers.
        for rt in r.running_tasks:
            p.command(CancelTask, tm_id=r.tm_id, incarnation=r.incarnation, task=rt.task)
    schedule_waiting(p)


def _join(p: Planner, r: TaskManagerRegistered) -> None:
    p.emit(
        TaskManagerJoined,
        tm_id=r.tm_id,
        incarnation=r.incarnation,
        host=r.host,
        slots=r.slots,
        operators=r.operators,
        running_tasks=r.running_tasks,
        version=r.version,
    )


def _reconcile(p: Planner, r: TaskManagerRegistered) -> None:
    """Keep the tasks the worker still runs as assigned; end the missing ones;
    cancel the ones the journal does not know."""
    reported: dict[tuple[TaskRef, int], RunningTask] = {
        (rt.task, rt.slot_index): rt for rt in r.running_tasks
    }
    failed: dict[str, str] = {}
    touched: set[str] = set()
    worker = p.state.workers[r.tm_id]
    for slot_index, task in worker.tasks():
        touched.add(task.job_id)
        rt = reported.pop((task, slot_index), None)
        if rt is None:
            execution = p.state.jobs[task.job_id].executions.get(
                (task.vertex_id, task.subtask_index)
            )
            if execution is not None and execution.state is _E.DEPLOYING:
                # Not acknowledged yet: the DeployTask may still be on its way to
                # the worker (a registration can cross it in flight). Keep it; the
                # worker's next report says more.
                continue
            if _end_task(p, task, "not running on its TaskManager after re-registration"):
                failed.setdefault(
                    task.job_id,
                    f"{task.vertex_id}#{task.subtask_index} "
                    f"(attempt {task.attempt}) missing on TaskManager {r.tm_id}",
                )
            continue
        key = (task.vertex_id, task.subtask_index)
        # A state the journal cannot reach from where it is stays unrecorded:
        # the worker's next report will say more.
        record_report(p, task.job_id, key, rt.state, input_event_id=r.event_id)
        now_state = p.state.jobs[task.job_id].executions[key].state
        if now_state is _E.FAILED:
            failed.setdefault(task.job_id, f"{key[0]}#{key[1]} failed during reconciliation")
        elif now_state is _E.CANCELING:
            # The old leader's CancelTask may never have arrived: say it again.
            p.command(CancelTask, tm_id=r.tm_id, incarnation=r.incarnation, task=task)
    for rt in r.running_tasks:
        if (rt.task, rt.slot_index) in reported:
            p.command(CancelTask, tm_id=r.tm_id, incarnation=r.incarnation, task=rt.task)
    _settle_jobs(p, failed, touched)


def on_deregistered(p: Planner, r: TaskManagerDeregistered) -> None:
    worker = p.state.workers.get(r.tm_id)
    if worker is None or worker.incarnation != r.incarnation:
        p.reject(r, f"unknown or old incarnation {r.tm_id}/{r.incarnation}", tm_id=r.tm_id)
        return
    reason = f"deregistered: {r.reason}" if r.reason else "deregistered"
    lose_worker(p, r.tm_id, reason, tell=False)
    schedule_waiting(p)


def check_heartbeats(p: Planner) -> None:
    """Declare lost every worker silent for longer than the heartbeat timeout.

    Last sign of life = the latest of its last heartbeat (view), its
    registration (state) and this leader's start (grace after a takeover).
    """
    timeout = p.config.heartbeat_timeout_ms
    view = p.view
    for tm_id in sorted(p.state.workers):
        worker = p.state.workers[tm_id]
        seen = max(
            view.last_heartbeat.get((tm_id, worker.incarnation), view.leader_since),
            view.leader_since,
            worker.registered_at,
        )
        if p.now - seen > timeout:
            lose_worker(p, tm_id, f"heartbeat timeout ({timeout} ms)")


def check_standing(p: Planner) -> None:
    """Declare lost every registered worker without standing: one that joined
    before ``DomainConfig.allowed_workers`` left it out (a coordinator restarted
    with a new list). Told so, it registers anew, and that is refused."""
    for tm_id in sorted(p.state.workers):
        if (why := standing(p.config, tm_id)) is not None:
            lose_worker(p, tm_id, why)
