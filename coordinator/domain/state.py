"""The coordinator's folded state: what ``fold(evolve, journal)`` yields.

Mutable, slotted dataclasses updated in place by ``evolve`` (copying per
event would cap replay speed). Two conventions keep ``decide`` cheap and
honest:

- ``Execution`` is an immutable value: evolve replaces it in its job's dict,
  so cloning a job copies one dict, not hundreds of objects.
- evolve mutates a job or a worker only through ``State.job_for_update`` /
  ``State.worker_for_update``. ``State.fork()`` returns a copy-on-write
  scratch state whose accessors clone an entity on its first update, so
  decide can fold its own proposals without touching the real state.

What the state deliberately does NOT hold: the journal offset last applied
(the replica keeps it next to the state; snapshots store it beside the state
dict), heartbeat times and checkpoint acknowledgements (the leader's volatile
``LeaderView``), and the leader's configuration (``DomainConfig``). Ordering
never comes from dict or set iteration of unsorted data: jobs carry an
acceptance sequence number, workers are visited sorted by id.
"""

import enum
from dataclasses import dataclass, field
from typing import Final

from coordinator.domain.errors import InconsistentJournal
from coordinator.domain.restart import RestartTracker
from coordinator.domain.transitions import LIVE_EXECUTION_STATES
from schemas.events import (
    CheckpointKind,
    ExecutionState,
    JobStatus,
    JobSubmitted,
    TaskRef,
)

#: Exceptions kept per job for ``jm status`` (Flink's exception history).
#: Part of the fold, so it is a constant of the code, not leader config.
EXCEPTION_HISTORY_LIMIT: Final = 16

# Bounds of what the state remembers about things that are gone. They are part
# of the fold (replay must prune exactly as the live leader did), so they are
# constants of the code, applied by evolve in event time. docs/coordinator.md
# ("Bounded state") lists them.

#: Lost incarnations remembered per TaskManager id, to refuse their comeback.
LOST_INCARNATIONS_PER_WORKER: Final = 8
#: TaskManager ids whose lost incarnations are remembered; the one lost longest
#: ago is forgotten first.
LOST_WORKERS_KEPT: Final = 1_024
#: A lost incarnation is forgotten this long (event time) after its worker's
#: latest loss: a process declared lost comes back within seconds, not hours.
LOST_WORKER_RETENTION_MS: Final = 3_600_000
#: Checkpoints remembered per job in its statistics history (Flink's
#: web.checkpoints.history); the latest completed, failed, savepoint and
#: restore are kept beside it whatever their age.
CHECKPOINT_HISTORY_LIMIT: Final = 10
#: Ended (archived) job ids remembered, so a late duplicate submission is
#: refused instead of running the job again; the oldest is forgotten first.
ENDED_JOBS_KEPT: Final = 10_000
#: An ended job id is forgotten this long (event time) after it was archived.
ENDED_JOB_RETENTION_MS: Final = 7 * 24 * 3_600_000

#: (vertex_id, subtask_index): one subtask of an execution graph.
SubtaskKey = tuple[str, int]


@dataclass(frozen=True, slots=True, init=False)
class Execution:
    """One attempt of one subtask (Flink's Execution). Replaced, never mutated.

    tm_id/slot_index/incarnation: where it was deployed; kept after it ends
    for the UI (the slot itself is released in the worker).
    """

    attempt: int
    state: ExecutionState
    since: int
    tm_id: str | None = None
    slot_index: int | None = None
    incarnation: str | None = None

    def __init__(
        self,
        attempt: int,
        state: ExecutionState,
        since: int,
        tm_id: str | None = None,
        slot_index: int | None = None,
        incarnation: str | None = None,
    ) -> None:
        # The frozen dataclass's own __init__, through the slots' setters: replay makes
        # one Execution for most events, and the generated one (object.__setattr__ per
        # field) took 1.1 µs of it against 0.7 here.
        _set_attempt(self, attempt)
        _set_state(self, state)
        _set_since(self, since)
        _set_tm_id(self, tm_id)
        _set_slot_index(self, slot_index)
        _set_incarnation(self, incarnation)

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_EXECUTION_STATES


_set_attempt, _set_state, _set_since, _set_tm_id, _set_slot_index, _set_incarnation = (
    Execution.__dict__[name].__set__
    for name in ("attempt", "state", "since", "tm_id", "slot_index", "incarnation")
)


@dataclass(frozen=True, slots=True)
class ExceptionEntry:
    """One entry of a job's exception history."""

    timestamp: int
    error_name: str
    message: str
    vertex_id: str | None = None
    subtask_index: int | None = None
    attempt: int | None = None
    tm_id: str | None = None


@dataclass(frozen=True, slots=True)
class EndedJob:
    """What is remembered of an archived job: how and when it ended."""

    final_status: JobStatus
    ended_at: int
    archived_at: int


@dataclass(frozen=True, slots=True)
class PendingCheckpoint:
    """A triggered checkpoint not yet completed or aborted."""

    checkpoint_id: int
    kind: CheckpointKind
    triggered_at: int
    timeout_at: int
    epoch: int
    target_directory: str | None = None
    request_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SavepointToWrite:
    """A completed savepoint whose directory the leader's runtime still has to write.

    kind: SAVEPOINT or SYNC_SAVEPOINT (stop with savepoint).
    directory: the target directory the savepoint goes under.
    request_event_id: the client request it answers.
    handles: subtask -> state handle, from the CheckpointCompleted.
    """

    kind: CheckpointKind
    directory: str
    request_event_id: str | None
    handles: dict[SubtaskKey, str]


class CheckpointStatus(enum.StrEnum):
    """Flink's CheckpointStatsStatus."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """Statistics of one checkpoint or savepoint (Flink's CheckpointStatistics).

    num_acknowledged_subtasks: what the journal knows: all of them once
        COMPLETED (CheckpointCompleted.task_states), the count at abort time once
        FAILED (CheckpointAborted.acknowledged), 0 while IN_PROGRESS (single
        acknowledgements are not journaled; the leader keeps them in its view).
    end_to_end_duration / state_size / alignment_ms: set once COMPLETED
        (alignment_ms: the longest alignment of any subtask).
    discarded: its state was deleted (subsumed, or the job ended without keeping it).
    """

    checkpoint_id: int
    kind: CheckpointKind
    status: CheckpointStatus
    trigger_timestamp: int
    num_subtasks: int
    num_acknowledged_subtasks: int = 0
    end_to_end_duration: int | None = None
    state_size: int | None = None
    alignment_ms: int | None = None
    finish_timestamp: int | None = None
    failure_message: str | None = None
    external_path: str | None = None
    discarded: bool = False


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    """The checkpoint or savepoint an execution graph was started from."""

    checkpoint_id: int | None
    restore_timestamp: int
    is_savepoint: bool
    external_path: str | None = None


@dataclass(frozen=True, slots=True)
class MinMaxAvg:
    """A running summary of completed checkpoints: avg = total // count."""

    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0

    def add(self, value: int) -> "MinMaxAvg":
        if self.count == 0:
            return MinMaxAvg(1, value, value, value)
        return MinMaxAvg(
            self.count + 1, self.total + value, min(self.min, value), max(self.max, value)
        )

    @property
    def avg(self) -> int:
        return self.total // self.count if self.count else 0


@dataclass(slots=True)
class CheckpointStats:
    """A job's checkpoint statistics (Flink's /jobs/{id}/checkpoints), folded from
    the journal so a replica, a replay and a snapshot all show the same.

    history: the latest CHECKPOINT_HISTORY_LIMIT checkpoints, oldest first.
    In progress is the number of pending checkpoints (not stored twice).
    """

    triggered: int = 0
    completed: int = 0
    failed: int = 0
    restored: int = 0
    history: list[CheckpointRecord] = field(default_factory=list)
    latest_completed: CheckpointRecord | None = None
    latest_failed: CheckpointRecord | None = None
    latest_savepoint: CheckpointRecord | None = None
    latest_restored: RestoreRecord | None = None
    end_to_end_duration: MinMaxAvg = field(default_factory=MinMaxAvg)
    state_size: MinMaxAvg = field(default_factory=MinMaxAvg)

    def clone(self) -> "CheckpointStats":
        return CheckpointStats(
            self.triggered,
            self.completed,
            self.failed,
            self.restored,
            list(self.history),
            self.latest_completed,
            self.latest_failed,
            self.latest_savepoint,
            self.latest_restored,
            self.end_to_end_duration,
            self.state_size,
        )

    def record(self, checkpoint_id: int) -> CheckpointRecord | None:
        for r in reversed(self.history):
            if r.checkpoint_id == checkpoint_id:
                return r
        return None

    def replace(self, new: CheckpointRecord) -> None:
        """Put `new` in place of the record of its checkpoint in the history, if there."""
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i].checkpoint_id == new.checkpoint_id:
                self.history[i] = new
                return


@dataclass(slots=True)
class CheckpointBookkeeping:
    """The CheckpointCoordinator's state for one job (kept minimal).

    next_trigger_at: when the next periodic checkpoint is due; None when
        periodic checkpoints are off or the job is not running.
    restore_handles: subtask -> state handle of `latest_completed`, used by
        DeployTask when the job restarts.
    retained_handles: completed checkpoint id -> every state handle it holds,
        for each id of `completed`: what is discarded when it is subsumed.
    stats: the statistics shown by ``jm status``.
    savepoints_to_write: completed savepoints (checkpoint id -> what to write)
        whose directory is not written yet: the leader's runtime exports them and
        feeds the outcome back (decide's SavepointWritten), see docs/checkpoints.md.
    stopping_after: the stop-with-savepoint whose savepoint is written: the
        job's tasks are being stopped and it ends FINISHED once none is live.
    """

    next_checkpoint_id: int = 1
    pending: dict[int, PendingCheckpoint] = field(default_factory=dict)
    completed: list[int] = field(default_factory=list)
    latest_completed: int | None = None
    restore_handles: dict[SubtaskKey, str] = field(default_factory=dict)
    next_trigger_at: int | None = None
    consecutive_failures: int = 0
    last_savepoint_path: str | None = None
    retained_handles: dict[int, tuple[str, ...]] = field(default_factory=dict)
    stats: CheckpointStats = field(default_factory=CheckpointStats)
    savepoints_to_write: dict[int, SavepointToWrite] = field(default_factory=dict)
    stopping_after: int | None = None

    def clone(self) -> "CheckpointBookkeeping":
        return CheckpointBookkeeping(
            self.next_checkpoint_id,
            dict(self.pending),
            list(self.completed),
            self.latest_completed,
            dict(self.restore_handles),
            self.next_trigger_at,
            self.consecutive_failures,
            self.last_savepoint_path,
            dict(self.retained_handles),
            self.stats.clone(),
            dict(self.savepoints_to_write),
            self.stopping_after,
        )


@dataclass(slots=True)
class Job:
    """One job: the Dispatcher's record plus its JobMaster's ExecutionGraph.

    accepted_seq: acceptance order; the scheduler serves waiting jobs by it.
    restart_count: the run of the current execution graph (0 = first run).
    executions: the current execution graph, one Execution per subtask.
    waiting_reason: why a CREATED job is not running yet (visible in status).
    waiting_since: when it started waiting for slots; the slot-wait deadline
        is waiting_since + DomainConfig.slot_wait_timeout_ms (the timeout is
        leader config; its firing is journaled as a FAILING transition).
    restart_at: deadline of the scheduled restart while RESTARTING.
    """

    job_id: str
    submission: JobSubmitted
    accepted_seq: int
    accepted_at: int
    status: JobStatus
    status_since: int
    restart_count: int = 0
    executions: dict[SubtaskKey, Execution] = field(default_factory=dict)
    waiting_reason: str | None = None
    waiting_since: int | None = None
    restart_at: int | None = None
    restarts: RestartTracker = field(default_factory=RestartTracker)
    exceptions: list[ExceptionEntry] = field(default_factory=list)
    checkpoints: CheckpointBookkeeping = field(default_factory=CheckpointBookkeeping)

    def clone(self) -> "Job":
        return Job(
            self.job_id,
            self.submission,
            self.accepted_seq,
            self.accepted_at,
            self.status,
            self.status_since,
            self.restart_count,
            dict(self.executions),
            self.waiting_reason,
            self.waiting_since,
            self.restart_at,
            self.restarts.clone(),
            list(self.exceptions),
            self.checkpoints.clone(),
        )

    def task_ref(self, key: SubtaskKey) -> TaskRef:
        return TaskRef(
            job_id=self.job_id,
            vertex_id=key[0],
            subtask_index=key[1],
            attempt=self.executions[key].attempt,
        )

    def live_keys(self) -> list[SubtaskKey]:
        """Subtasks whose current attempt is live, in graph order."""
        return [k for k, e in self.executions.items() if e.state in LIVE_EXECUTION_STATES]


@dataclass(slots=True)
class Worker:
    """A registered TaskManager incarnation and its slots (ResourceManager view).

    slots: slot index -> the task attempts sharing it, empty when free: one subtask of
        each vertex of one job's slot sharing group (an operator chain's subtasks always
        share one; coordinator/domain/chaining.py).
    """

    tm_id: str
    incarnation: str
    host: str
    slots: list[tuple[TaskRef, ...]]
    operators: tuple[str, ...]
    version: str
    registered_at: int

    def clone(self) -> "Worker":
        return Worker(
            self.tm_id,
            self.incarnation,
            self.host,
            list(self.slots),
            self.operators,
            self.version,
            self.registered_at,
        )

    def free_slots(self) -> list[int]:
        return [i for i, tasks in enumerate(self.slots) if not tasks]

    def tasks(self) -> list[tuple[int, TaskRef]]:
        """(slot index, task attempt) of every attempt in a slot, slot by slot."""
        return [(i, t) for i, tasks in enumerate(self.slots) for t in tasks]


@dataclass(slots=True)
class State:
    """Everything the journal says, and nothing else.

    epoch: the current leader epoch (0 before any LeaderElected).
    leader_since: event_time of the current epoch's LeaderElected.
    ignored_stale_events: events stamped with an older epoch (a fenced
        leader's leftovers), ignored and counted.
    rejected_inputs: JobRejected + InputRejected journaled.
    archived_jobs: jobs that left memory (JobArchived); they stay in the log.
    next_job_seq: acceptance sequence number of the next job.
    lost_incarnations: tm_id -> {incarnation: lost_at} of its latest lost
        incarnations; such an incarnation is dead for good and may not
        register again. Ordered by latest loss, oldest first; bounded by
        LOST_INCARNATIONS_PER_WORKER, LOST_WORKERS_KEPT and
        LOST_WORKER_RETENTION_MS. Inner dicts are replaced, never mutated.
    ended_jobs: job_id -> how an archived job ended, in archive order, bounded
        by ENDED_JOBS_KEPT and ENDED_JOB_RETENTION_MS: such an id is not run
        again.

    Dict order matters where pruning drops the oldest entries: snapshots keep
    it (see coordinator/runtime/snapshots.py); the digest does not depend on it.
    """

    epoch: int = 0
    leader_replica_id: str | None = None
    leader_since: int = 0
    ignored_stale_events: int = 0
    rejected_inputs: int = 0
    archived_jobs: int = 0
    next_job_seq: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    lost_incarnations: dict[str, dict[str, int]] = field(default_factory=dict)
    ended_jobs: dict[str, EndedJob] = field(default_factory=dict)

    def lost_for_update(self) -> dict[str, dict[str, int]]:
        return self.lost_incarnations

    def ended_for_update(self) -> dict[str, EndedJob]:
        return self.ended_jobs

    def job_for_update(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise InconsistentJournal(f"unknown job {job_id!r}")
        return job

    def worker_for_update(self, tm_id: str) -> Worker:
        worker = self.workers.get(tm_id)
        if worker is None:
            raise InconsistentJournal(f"unknown TaskManager {tm_id!r}")
        return worker

    def fork(self) -> "State":
        """A copy-on-write scratch copy for decide; the original is never touched."""
        return _Fork(self)


class _Fork(State):
    """Shares unchanged jobs and workers with its origin; clones them on update."""

    __slots__ = ("_own_ended", "_own_jobs", "_own_lost", "_own_workers")

    def __init__(self, origin: State) -> None:
        super().__init__(
            origin.epoch,
            origin.leader_replica_id,
            origin.leader_since,
            origin.ignored_stale_events,
            origin.rejected_inputs,
            origin.archived_jobs,
            origin.next_job_seq,
            dict(origin.jobs),
            dict(origin.workers),
            origin.lost_incarnations,  # shared until updated: see lost_for_update
            origin.ended_jobs,
        )
        self._own_jobs: set[str] = set()
        self._own_workers: set[str] = set()
        self._own_lost = self._own_ended = False

    def lost_for_update(self) -> dict[str, dict[str, int]]:
        if not self._own_lost:
            self.lost_incarnations = dict(self.lost_incarnations)
            self._own_lost = True
        return self.lost_incarnations

    def ended_for_update(self) -> dict[str, EndedJob]:
        if not self._own_ended:
            self.ended_jobs = dict(self.ended_jobs)
            self._own_ended = True
        return self.ended_jobs

    def job_for_update(self, job_id: str) -> Job:
        job = State.job_for_update(self, job_id)
        if job_id not in self._own_jobs:
            job = job.clone()
            self.jobs[job_id] = job
            self._own_jobs.add(job_id)
        return job

    def worker_for_update(self, tm_id: str) -> Worker:
        worker = State.worker_for_update(self, tm_id)
        if tm_id not in self._own_workers:
            worker = worker.clone()
            self.workers[tm_id] = worker
            self._own_workers.add(tm_id)
        return worker

    def fork(self) -> State:
        return _Fork(self)
