"""What a coordinator's memory holds, from measurements (docs/memory.md, ``make bench``).

The figures are those ``tests/bench/bench_memory.py`` measured (Python 3.11+, 64-bit):
Python allocations of the folded ``State`` per item, rounded up. ``needed_bytes`` adds
them to the resident memory of an idle coordinator and doubles the state for the
snapshot the leader encodes beside it; the start-up check refuses a
``jobmanager.memory.process.size`` below what the configured limits can make it hold.

Imported by ``jm coordinator`` as it starts, and by the benchmark.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from coordinator.domain.state import ENDED_JOBS_KEPT, State
from schemas.limits import MAX_SUBTASKS_PER_JOB, MAX_WORKERS

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


def held_at_most(settings: JobManagerSettings) -> tuple[int, int]:
    """(jobs, subtasks) the configured limits let a coordinator hold at once."""
    jobs = settings.max_jobs
    return jobs, min(settings.max_subtasks, jobs * MAX_SUBTASKS_PER_JOB)


def needed_for(settings: JobManagerSettings) -> int:
    """What the configured limits can make a coordinator hold, at the worst."""
    jobs, subtasks = held_at_most(settings)
    return needed_bytes(jobs=jobs, subtasks=subtasks, workers=MAX_WORKERS,
                        ended_kept=ENDED_JOBS_KEPT)  # fmt: skip


def mib(n: int) -> str:
    return f"{-(-n // MIB)}m"


def process_size_problem(settings: JobManagerSettings) -> str | None:
    """Why `settings` cannot keep the coordinator inside its budget (None: it can)."""
    needed = needed_for(settings)
    size = settings.memory_process_size
    if size >= needed:
        return None
    jobs, subtasks = held_at_most(settings)
    # The most subtasks that fit beside the jobs, workers and ended jobs configured.
    room = (size - BASE_RSS_BYTES) // SNAPSHOT_FACTOR - state_bytes(
        jobs=jobs, subtasks=0, workers=MAX_WORKERS, ended_kept=ENDED_JOBS_KEPT
    )
    fits = room // BYTES_PER_SUBTASK
    lower = f", or lower jobmanager.subtasks.max to {fits} or less" if fits > 0 else ""
    return (
        f"jobmanager.memory.process.size {mib(size)} is below the {mib(needed)} the limits "
        f"need (jobmanager.jobs.max {jobs} jobs, jobmanager.subtasks.max {subtasks} subtasks, "
        f"{MAX_WORKERS} workers, {ENDED_JOBS_KEPT} ended job ids; docs/memory.md): set "
        f"jobmanager.memory.process.size to {mib(needed)} or more "
        f"(-D jobmanager.memory.process.size={mib(needed)}, "
        f"$JM_JOBMANAGER_MEMORY_PROCESS_SIZE or the config file){lower}"
    )


def resident_bytes() -> int:
    """The process's resident memory now (Linux: VmRSS), else its peak (getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_metrics(state: State) -> dict[str, str]:
    """``/jobmanager/metrics``: resident memory, the state's size by the measured
    figures, and what it holds (docs/memory.md)."""
    subtasks = sum(len(job.executions) for job in state.jobs.values())
    held = state_bytes(jobs=len(state.jobs), subtasks=subtasks, workers=len(state.workers),
                       ended_kept=len(state.ended_jobs))  # fmt: skip
    return {
        "jm.memory.resident-bytes": str(resident_bytes()),
        "jm.state.estimated-bytes": str(held),
        "jm.state.jobs": str(len(state.jobs)),
        "jm.state.subtasks": str(subtasks),
        "jm.state.workers": str(len(state.workers)),
        "jm.state.ended-jobs-kept": str(len(state.ended_jobs)),
    }


#: The sizing table of docs/memory.md: jobs of 4 subtasks (2 vertices x parallelism 2)
#: on workers of 16 slots (64 for 10,000 jobs: MAX_WORKERS is 1,024), with every one of
#: the ENDED_JOBS_KEPT ended job ids remembered.
SIZING_JOBS: Final = (100, 1_000, 10_000)


def sizing_table() -> str:
    """The sizing rows of docs/memory.md (a test keeps the page equal to them)."""
    rows = [
        "| jobs held | subtasks | workers | state | needed (RSS, snapshot included) "
        "| `jobmanager.memory.process.size` |",
        "|---|---|---|---|---|---|",
    ]
    for jobs in SIZING_JOBS:
        subtasks = 4 * jobs
        workers = -(-subtasks // (64 if jobs > 4_096 else 16))
        state = state_bytes(jobs=jobs, subtasks=subtasks, workers=workers,
                            ended_kept=ENDED_JOBS_KEPT)  # fmt: skip
        needed = needed_bytes(jobs=jobs, subtasks=subtasks, workers=workers,
                              ended_kept=ENDED_JOBS_KEPT)  # fmt: skip
        size = max(256, -(-needed // MIB // 64) * 64)
        rows.append(f"| {jobs:,} | {subtasks:,} | {workers:,} | {state / MIB:.1f} MiB "
                    f"| {needed / MIB:.0f} MiB | {size}m |")  # fmt: skip
    return "\n".join(rows)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to call
        return None
    return trim


def release_free_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc's ``malloc_trim``;
    nothing where there is none). A snapshot or a digest of a large state builds and
    drops tens of megabytes of temporary objects, in a worker thread whose own malloc
    arena keeps the pages otherwise: 10,000 jobs held, 20 MiB of resident memory
    (measured, docs/memory.md). About 2 ms."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
