"""Admission: an input over a size limit is refused before any decider sees it.

Any Kafka producer can write the input topics, so ``decide`` first checks each
input against ``schemas.limits`` (string and collection sizes, slots,
subtasks per job) and against the coordinator's own capacity (workers and
jobs held at once). A refused input becomes a journaled rejection with a
bounded reason (``JobRejected`` for a submission, ``InputRejected`` for
anything else), so the leader never builds a derived record that could not
fit its topic, and never allocates memory an input asked for.

A worker's standing is checked here too: with an allow-list of worker ids
(``DomainConfig.allowed_workers``, ``--allowed-workers``), the registration of
any other id is refused the same way (docs/security.md), so it never joins and
never gets a slot; its heartbeats and reports are then those of an
unregistered worker (ignored, or refused for an unknown incarnation).
"""

from coordinator.domain.planner import Planner
from coordinator.domain.state import State
from coordinator.domain.view import DomainConfig
from schemas.events import Event, JobSubmitted, TaskManagerRegistered
from schemas.limits import MAX_JOBS, MAX_SUBTASKS, MAX_WORKERS, bounded_reason, input_problems


def standing(config: DomainConfig, tm_id: str) -> str | None:
    """Why worker `tm_id` may not be part of the cluster, or None when it may."""
    if not config.allowed_workers or tm_id in config.allowed_workers:
        return None
    return (
        f"worker {tm_id!r} is not on this coordinator's list of allowed workers "
        "(--allowed-workers / JM_ALLOWED_WORKERS); add its id there to let it register"
    )


def problems(state: State, event: Event, config: DomainConfig | None = None) -> list[str]:
    """Why `event` is over a limit, or comes from a worker without standing
    (with `config`); [] when it may go on to its decider."""
    found = input_problems(event)
    if found:
        return found
    if (
        config is not None
        and isinstance(event, TaskManagerRegistered)
        and (refused := standing(config, event.tm_id)) is not None
    ):
        return [refused]
    if (
        isinstance(event, TaskManagerRegistered)
        and event.tm_id not in state.workers
        and len(state.workers) >= MAX_WORKERS
    ):
        return [f"the cluster already has {MAX_WORKERS} workers registered (MAX_WORKERS)"]
    most = MAX_JOBS if config is None else min(MAX_JOBS, config.max_jobs)
    if (
        isinstance(event, JobSubmitted)
        and event.job_id not in state.jobs
        and len(state.jobs) >= most
    ):
        which = "MAX_JOBS" if most == MAX_JOBS else "jobmanager.jobs.max"
        return [
            f"the coordinator already holds {most} jobs ({which}); "
            "ended jobs leave it when they are archived"
        ]
    if isinstance(event, JobSubmitted) and event.job_id not in state.jobs:
        wanted = sum(v.parallelism for v in event.job_graph.vertices)
        held = sum(len(job.executions) for job in state.jobs.values())
        most = MAX_SUBTASKS if config is None else min(MAX_SUBTASKS, config.max_subtasks)
        if held + wanted > most:
            which = "MAX_SUBTASKS" if most == MAX_SUBTASKS else "jobmanager.subtasks.max"
            return [
                f"the job's {wanted} subtasks do not fit: the coordinator already holds "
                f"{held} of at most {most} subtasks ({which}); "
                "ended jobs leave it when they are archived"
            ]
    return []


def refuse(p: Planner, event: Event, found: list[str]) -> None:
    """Journal the rejection of `event` for `found` problems."""
    reason = bounded_reason(found)
    if isinstance(event, JobSubmitted):
        p.reject_job(event, event.job_id, reason)
        return
    task = getattr(event, "task", None)
    job_id = getattr(event, "job_id", None) or getattr(task, "job_id", None)
    tm_id = getattr(event, "tm_id", None)
    p.reject(
        event,
        reason,
        job_id=job_id if isinstance(job_id, str) else None,
        tm_id=tm_id if isinstance(tm_id, str) else None,
    )
