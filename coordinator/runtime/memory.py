"""What a coordinator's memory holds, from measurements (docs/memory.md, ``make bench``).

The figures are those ``tests/bench/bench_memory.py`` measured (Python 3.11+, 64-bit):
Python allocations of the folded ``State`` per item, rounded up. ``needed_bytes`` adds
them to the resident memory of an idle coordinator and doubles the state for the
snapshot the leader encodes beside it; the start-up check refuses a
``jobmanager.memory.process.size`` below what the configured limits can make it hold.

Imported by ``jm coordinator`` as it starts, and by the benchmark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from coordinator.domain.state import ENDED_JOBS_KEPT
from schemas.limits import MAX_SUBTASKS, MAX_SUBTASKS_PER_JOB, MAX_WORKERS

if TYPE_CHECKING:
    from schemas.config import JobManagerSettings

MIB: Final = 1 << 20
#: Resident memory of a coordinator holding no job: the interpreter, its imports
#: (aiokafka, redis, aiohttp, fastavro, pydantic), its Kafka and Redis clients and
#: their buffers. Measured idle RSS plus an allowance for the clients' buffers.
BASE_RSS_BYTES: Final = 128 * MIB
#: State bytes per job (besides its subtasks): the submission, graph, config,
#: status history, checkpoint bookkeeping.
BYTES_PER_JOB: Final = 3_200
#: State bytes per subtask (an Execution and its keys).
BYTES_PER_SUBTASK: Final = 450
#: State bytes per registered worker (16 slots).
BYTES_PER_WORKER: Final = 700
#: State bytes per ended job kept once archived (its id, status and times in
#: ``State.ended_jobs``, at most ``ENDED_JOBS_KEPT``).
BYTES_PER_ENDED_JOB_KEPT: Final = 300
#: The leader encodes a snapshot of the whole state beside it (docs/ha.md): the state
#: counts twice at that moment.
SNAPSHOT_FACTOR: Final = 2


def state_bytes(*, jobs: int, subtasks: int, workers: int, ended_kept: int = 0) -> int:
    return (
        jobs * BYTES_PER_JOB
        + subtasks * BYTES_PER_SUBTASK
        + workers * BYTES_PER_WORKER
        + ended_kept * BYTES_PER_ENDED_JOB_KEPT
    )


def needed_bytes(*, jobs: int, subtasks: int, workers: int, ended_kept: int = 0) -> int:
    """Resident memory a coordinator holding this much needs."""
    state = state_bytes(jobs=jobs, subtasks=subtasks, workers=workers, ended_kept=ended_kept)
    return BASE_RSS_BYTES + SNAPSHOT_FACTOR * state


def needed_for(settings: JobManagerSettings) -> int:
    """What the configured limits can make a coordinator hold, at the worst."""
    jobs = settings.max_jobs
    return needed_bytes(
        jobs=jobs,
        subtasks=min(MAX_SUBTASKS, jobs * MAX_SUBTASKS_PER_JOB),
        workers=MAX_WORKERS,
        ended_kept=ENDED_JOBS_KEPT,
    )


def mib(n: int) -> str:
    return f"{-(-n // MIB)}m"


def process_size_problem(settings: JobManagerSettings) -> str | None:
    """Why `settings` cannot keep the coordinator inside its budget (None: it can)."""
    needed = needed_for(settings)
    size = settings.memory_process_size
    if size >= needed:
        return None
    # The largest jobmanager.jobs.max that fits, if any does.
    smaller = (settings.model_copy(update={"max_jobs": n}) for n in range(settings.max_jobs, 0, -1))
    fits = next((s.max_jobs for s in smaller if needed_for(s) <= size), 0)
    lower = (
        f", or lower jobmanager.jobs.max from {settings.max_jobs} to {fits} or less" if fits else ""
    )
    return (
        f"jobmanager.memory.process.size {mib(size)} is below the {mib(needed)} the limits "
        f"need (jobmanager.jobs.max {settings.max_jobs} jobs, up to "
        f"{min(MAX_SUBTASKS, settings.max_jobs * MAX_SUBTASKS_PER_JOB)} subtasks, "
        f"{MAX_WORKERS} workers; docs/memory.md): set jobmanager.memory.process.size to "
        f"{mib(needed)} or more (-D jobmanager.memory.process.size={mib(needed)}, "
        f"$JM_JOBMANAGER_MEMORY_PROCESS_SIZE or the config file){lower}"
    )
