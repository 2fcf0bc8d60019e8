"""Typed events: the contract between clients, workers and the coordinator.

Standard library only (and ``schemas.codecache``, itself standard library only). The
deterministic domain core imports this module, so it must not pull in fastavro, pydantic
or anything that does I/O; the one exception is the code cache's, at import time, like
``__pycache__``'s (the compiled dataclass functions, see the end of the imports).

Conventions (the Avro schemas under ``schemas/avro/`` follow them):

- Every event is a frozen, slotted, keyword-only dataclass carrying
  ``event_id`` (unique string) and ``event_time`` (ms since the Unix epoch).
- Every coordinator decision (journal events and worker commands) also
  carries ``epoch``, the leader epoch that took it.
- Sequences are tuples; string maps are dicts (never mutated after creation).
- Each class documents its fields in its docstring as ``name: text`` lines;
  the Avro ``doc`` of each field is taken from there (see ``schemas.avrogen``).
- Changes are additive: a new field gets a default, so records written before
  it existed still decode (see docs/schemas.md).
"""

import enum
from dataclasses import dataclass, field, fields
from typing import Final

from schemas import codecache

# The functions dataclasses generates for the classes below, compiled once per machine
# (schemas/codecache.py; like __pycache__, the only I/O, at import); ended at the bottom.
_end_cached_dataclasses = codecache.dataclass_functions(__name__)

# ---------------------------------------------------------------------------
# Enums. Values equal names so they read the same in Avro, JSON and logs.
# ---------------------------------------------------------------------------


class JobStatus(enum.StrEnum):
    """Flink's JobStatus. Globally terminal: FINISHED, CANCELED, FAILED."""

    INITIALIZING = "INITIALIZING"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILING = "FAILING"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELED = "CANCELED"
    FINISHED = "FINISHED"
    RESTARTING = "RESTARTING"
    SUSPENDED = "SUSPENDED"
    RECONCILING = "RECONCILING"

    @property
    def is_globally_terminal(self) -> bool:
        return self in _TERMINAL_JOB_STATUSES


_TERMINAL_JOB_STATUSES: Final = frozenset(
    {JobStatus.FINISHED, JobStatus.CANCELED, JobStatus.FAILED}
)


class ExecutionState(enum.StrEnum):
    """Flink's ExecutionState of one task attempt (note CANCELING, one L)."""

    CREATED = "CREATED"
    SCHEDULED = "SCHEDULED"
    DEPLOYING = "DEPLOYING"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    RECONCILING = "RECONCILING"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_EXECUTION_STATES


_TERMINAL_EXECUTION_STATES: Final = frozenset(
    {ExecutionState.FINISHED, ExecutionState.CANCELED, ExecutionState.FAILED}
)


class Partitioning(enum.StrEnum):
    """How records travel along an edge to the downstream subtasks."""

    FORWARD = "FORWARD"
    HASH = "HASH"
    REBALANCE = "REBALANCE"
    BROADCAST = "BROADCAST"


class RestartStrategyKind(enum.StrEnum):
    """Flink's restart strategies."""

    FIXED_DELAY = "FIXED_DELAY"
    FAILURE_RATE = "FAILURE_RATE"
    EXPONENTIAL_DELAY = "EXPONENTIAL_DELAY"
    NONE = "NONE"


class CheckpointKind(enum.StrEnum):
    """Flink's snapshot types: a periodic checkpoint, a savepoint, or the
    synchronous savepoint taken by stop-with-savepoint."""

    CHECKPOINT = "CHECKPOINT"
    SAVEPOINT = "SAVEPOINT"
    SYNC_SAVEPOINT = "SYNC_SAVEPOINT"


class ExternalizedRetention(enum.StrEnum):
    """Flink's externalized-checkpoint-retention: what happens to the retained
    checkpoints when the job ends. Every mode discards them when the job
    FINISHES; RETAIN_ON_CANCELLATION keeps them on cancel and failure,
    DELETE_ON_CANCELLATION keeps them on failure only, and
    NO_EXTERNALIZED_CHECKPOINTS keeps them never."""

    RETAIN_ON_CANCELLATION = "RETAIN_ON_CANCELLATION"
    DELETE_ON_CANCELLATION = "DELETE_ON_CANCELLATION"
    NO_EXTERNALIZED_CHECKPOINTS = "NO_EXTERNALIZED_CHECKPOINTS"


class ReplicaRole(enum.StrEnum):
    """What a coordinator replica is doing right now."""

    STARTING = "STARTING"
    STANDBY = "STANDBY"
    LEADER = "LEADER"
    STOPPED = "STOPPED"


# ---------------------------------------------------------------------------
# Value types nested in events.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Vertex:
    """One operator of a job graph, run as `parallelism` subtasks.

    id: unique within the job graph; edges refer to it.
    name: human readable name shown in the UI and logs.
    operator: name of a registered operator; never imported from the event.
    parallelism: number of subtasks, between 1 and max_parallelism.
    max_parallelism: upper bound for rescaling; also the number of key groups.
    config: operator configuration, opaque strings passed to the operator.
    chaining: false keeps this vertex out of operator chains (Flink's
        ``disableChaining``) (since JobSubmitted and JobAccepted v4).
    slot_sharing_group: subtasks of vertices of one group may share a slot, one subtask
        per vertex; vertices of different groups never do (since JobSubmitted and
        JobAccepted v4).
    """

    id: str
    name: str
    operator: str
    parallelism: int = 1
    max_parallelism: int = 128
    config: dict[str, str] = field(default_factory=dict)
    chaining: bool = True
    slot_sharing_group: str = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A data channel from one vertex to another (a Kafka topic at runtime).

    source: id of the upstream vertex.
    target: id of the downstream vertex.
    partitioning: how records are spread over the downstream subtasks.
    key_field: record field hashed for HASH partitioning; null otherwise.
    """

    source: str
    target: str
    partitioning: Partitioning = Partitioning.FORWARD
    key_field: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobGraph:
    """The logical plan of a job: vertices joined by edges, acyclic.

    vertices: operators of the job, ids unique.
    edges: channels between vertices; together they form a DAG.
    chaining: false turns operator chaining off for the whole job (since JobSubmitted
        and JobAccepted v4).
    """

    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...] = ()
    chaining: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartStrategy:
    """Flink's restart strategy and its parameters, with Flink's defaults.

    kind: which strategy applies; the other parameters of a kind are ignored.
    attempts: FIXED_DELAY: restarts allowed before the job fails.
    delay_ms: FIXED_DELAY and FAILURE_RATE: wait before a restart, ms.
    max_failures_per_interval: FAILURE_RATE: failures tolerated per interval.
    failure_rate_interval_ms: FAILURE_RATE: length of the measuring interval, ms.
    initial_backoff_ms: EXPONENTIAL_DELAY: first delay, ms.
    max_backoff_ms: EXPONENTIAL_DELAY: ceiling of the delay, ms.
    backoff_multiplier: EXPONENTIAL_DELAY: factor applied after each failure.
    jitter_factor: EXPONENTIAL_DELAY: random spread, fraction of the delay (0..1).
    reset_backoff_threshold_ms: EXPONENTIAL_DELAY: stable time resetting the backoff, ms.
    attempts_before_reset_backoff: EXPONENTIAL_DELAY: restarts allowed before the job fails.
    """

    kind: RestartStrategyKind = RestartStrategyKind.EXPONENTIAL_DELAY
    attempts: int = 1
    delay_ms: int = 1_000
    max_failures_per_interval: int = 1
    failure_rate_interval_ms: int = 60_000
    initial_backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000
    backoff_multiplier: float = 1.5
    jitter_factor: float = 0.1
    reset_backoff_threshold_ms: int = 3_600_000
    attempts_before_reset_backoff: int = 2_147_483_647


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointConfig:
    """Per-job checkpointing, with Flink's semantics and defaults.

    interval_ms: time between checkpoint triggers, ms; 0 disables checkpoints.
    timeout_ms: a checkpoint not complete after this long is aborted, ms.
    min_pause_ms: minimum time between the end of one checkpoint and the next trigger, ms.
    max_concurrent: checkpoints allowed in flight at once.
    tolerable_failures: consecutive checkpoint failures tolerated before the job fails.
    retained: completed checkpoints kept; older ones are subsumed.
    externalized_retention: whether the retained checkpoints outlive a canceled
      or failed job (Flink's execution.checkpointing.externalized-checkpoint-retention)
      (since v2).
    """

    interval_ms: int = 0
    timeout_ms: int = 600_000
    min_pause_ms: int = 0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 1
    externalized_retention: ExternalizedRetention = ExternalizedRetention.RETAIN_ON_CANCELLATION


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRef:
    """Identifies one execution attempt of one subtask (Flink's ExecutionAttemptID).

    job_id: the job the task belongs to.
    vertex_id: the vertex the subtask runs.
    subtask_index: index of the subtask, 0 <= index < parallelism.
    attempt: attempt number of this subtask, 0 for the first deployment.
    """

    job_id: str
    vertex_id: str
    subtask_index: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainedTask:
    """A subtask run inside another task's chain (docs/dataplane.md, "Operator chaining"):
    records reach it by function call from the previous operator of the chain.

    task: its own task attempt (states, metrics and checkpoints stay per vertex).
    operator: registered operator name.
    vertex_name: human readable vertex name.
    max_parallelism: max parallelism of its vertex (its parallelism is the head's).
    config: operator configuration of its vertex.
    outputs: edges out of its vertex (the last operator of a chain only).
    restore_state_handle: its state in the checkpoint restored; null if none.
    """

    task: TaskRef
    operator: str
    vertex_name: str
    max_parallelism: int
    config: dict[str, str] = field(default_factory=dict)
    outputs: tuple[Edge, ...] = ()
    restore_state_handle: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotRef:
    """One slot of one TaskManager.

    tm_id: the TaskManager offering the slot.
    slot_index: index of the slot on that TaskManager, from 0.
    """

    tm_id: str
    slot_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningTask:
    """A task a worker is still running, reported so a new leader reconciles.

    task: the attempt running.
    slot_index: slot it occupies on the reporting worker.
    state: its current execution state.
    """

    task: TaskRef
    slot_index: int
    state: ExecutionState


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskIoMetrics:
    """Counters of one task attempt since it started, reported with heartbeats
    (volatile: never journaled; Flink's names in the REST API in brackets).

    task: the attempt counted.
    read_records: data records read from its input edges (read-records).
    write_records: records it emitted to its output edges (write-records).
    read_bytes: bytes of the data records read from its input edges (read-bytes).
    write_bytes: bytes written to its output edges, every copy counted (write-bytes).
    busy_ms: running time neither idle nor backpressured, ms (accumulated-busy-time).
    idle_ms: time spent waiting for input, ms (accumulated-idle-time).
    backpressured_ms: time spent waiting for its output edges to take records, ms
        (accumulated-backpressured-time).
    """

    task: TaskRef
    read_records: int = 0
    write_records: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    busy_ms: int = 0
    idle_ms: int = 0
    backpressured_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStateHandle:
    """Where one task's part of a checkpoint lives.

    task: the attempt that wrote the state.
    state_handle: location of the state in checkpoint storage (opaque to the coordinator).
    state_size: size of the state, bytes.
    duration_ms: trigger to acknowledgement on the task, ms (since v2).
    alignment_ms: time the task spent aligning barriers, ms (since v2).
    """

    task: TaskRef
    state_handle: str
    state_size: int
    duration_ms: int = 0
    alignment_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaHeader:
    """A Kafka record header, kept as is.

    key: header name.
    value: header value bytes; null when the header had no value.
    """

    key: str
    value: bytes | None = None


# ---------------------------------------------------------------------------
# Event roots. Fields common to a family live in the root.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Root of every event."""

    event_id: str
    event_time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCommand(Event):
    """Written by clients to jm.submissions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerReport(Event):
    """Written by workers to jm.reports (and jm.heartbeats)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision(Event):
    """A coordinator decision, stamped with the leader epoch that took it."""

    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEvent(Decision):
    """Written by the leader to jm.journal, the source of truth."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerCommand(Decision):
    """Written by the leader to jm.commands, in the same transaction as the journal."""


# ---------------------------------------------------------------------------
# Client commands (jm.submissions, key = job id).
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactRef:
    """A Python package of user code a job brings along (docs/user-code.md): its
    reference in the blob store, never its bytes.

    sha256: hex sha256 of the package file (a wheel), its identity in the blob store.
    size: size of the package file in bytes (at most MAX_ARTIFACT_BYTES).
    name: distribution name of the package.
    version: distribution version of the package.
    filename: the wheel's file name.
    handle: where the blob store keeps the bytes (a state-store handle).
    operators: operator names the package's entry points provide.
    functions: function names the package's entry points provide.
    requirements: requirements the package declares (Requires-Dist), installed by workers.
    signature: the client's signature over sha256, size, name and version (a jm-sig
        value); null when signing is off.
    """

    sha256: str
    size: int
    name: str
    version: str
    filename: str
    handle: str
    operators: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    signature: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitted(ClientCommand):
    """A client asks the cluster to run a job.

    job_id: chosen by the client (any unique string) or a generated uuid.
    name: human readable job name.
    job_graph: the logical plan to run.
    restart_strategy: what to do when a task fails.
    checkpoint_config: checkpointing parameters; interval 0 disables checkpoints.
    savepoint_path: savepoint to restore the job from; null starts from scratch.
    submitted_by: who submitted the job (user, tool); informative only.
    artifact: the user-code package the job's operators and functions may come from;
        null when the job uses only what the workers have installed (since v3).
    """

    job_id: str
    name: str
    job_graph: JobGraph
    restart_strategy: RestartStrategy = RestartStrategy()
    checkpoint_config: CheckpointConfig = CheckpointConfig()
    savepoint_path: str | None = None
    submitted_by: str | None = None
    artifact: ArtifactRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelRequested(ClientCommand):
    """A client asks to cancel a job (Flink: PATCH /jobs/{id}?mode=cancel).

    job_id: the job to cancel.
    requested_by: who asked; informative only.
    """

    job_id: str
    requested_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SavepointRequested(ClientCommand):
    """A client asks for a savepoint of a running job.

    job_id: the job to snapshot.
    target_directory: where to write the savepoint; null uses the cluster default.
    """

    job_id: str
    target_directory: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopWithSavepointRequested(ClientCommand):
    """A client asks to take a savepoint and then stop the job (Flink's stop).

    job_id: the job to stop.
    target_directory: where to write the savepoint; null uses the cluster default.
    drain: emit end of input (MAX_WATERMARK) before stopping, as Flink's --drain.
    """

    job_id: str
    target_directory: str | None = None
    drain: bool = False


# ---------------------------------------------------------------------------
# Worker reports (jm.reports and jm.heartbeats, key = tm id).
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagerRegistered(WorkerReport):
    """A worker starts (or a new leader asks) and offers its slots.

    tm_id: stable id of the worker; maps to its jm.commands partition.
    incarnation: new at every start of the worker process; older ones are dead.
    host: host name or address of the worker, for humans.
    slots: number of task slots offered.
    operators: names of the operators this worker can run.
    running_tasks: tasks still running on this worker, so a new leader reconciles them.
    version: software version of the worker.
    cpu_cores: CPU cores available to the worker; null if unknown (since v2).
    memory_bytes: physical memory available to the worker, bytes; null if unknown (since v2).
    """

    tm_id: str
    incarnation: str
    host: str
    slots: int
    operators: tuple[str, ...] = ()
    running_tasks: tuple[RunningTask, ...] = ()
    version: str = ""
    cpu_cores: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagerDeregistered(WorkerReport):
    """A worker shuts down cleanly; its slots are gone at once.

    tm_id: the worker leaving.
    incarnation: the incarnation leaving.
    reason: why it leaves, for humans.
    """

    tm_id: str
    incarnation: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStateChanged(WorkerReport):
    """A worker reports that a task attempt moved to a new state.

    tm_id: the reporting worker.
    incarnation: the reporting worker's incarnation.
    task: the task attempt.
    state: its new execution state.
    error_name: exception type when the state is FAILED; null otherwise.
    error_stack: exception trace when the state is FAILED; null otherwise.
    non_recoverable: true when the state is FAILED by an error no restart can fix
        (an unknown function, an invalid operator config, a missing topic): the
        coordinator fails the job at once instead of restarting it (since v2).
    """

    tm_id: str
    incarnation: str
    task: TaskRef
    state: ExecutionState
    error_name: str | None = None
    error_stack: str | None = None
    non_recoverable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointAcknowledged(WorkerReport):
    """A task has written its part of a checkpoint.

    tm_id: the reporting worker.
    incarnation: the reporting worker's incarnation.
    checkpoint_id: the checkpoint acknowledged.
    task: the task attempt acknowledging.
    state_handle: location of the task's state in checkpoint storage.
    state_size: size of that state, bytes.
    duration_ms: time from trigger to acknowledgement on the task, ms (a default since v2).
    alignment_ms: time the task spent aligning barriers of its inputs, ms (since v2).
    """

    tm_id: str
    incarnation: str
    checkpoint_id: int
    task: TaskRef
    state_handle: str
    state_size: int
    duration_ms: int = 0
    alignment_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointDeclined(WorkerReport):
    """A task could not take its part of a checkpoint.

    tm_id: the reporting worker.
    incarnation: the reporting worker's incarnation.
    checkpoint_id: the checkpoint declined.
    task: the task attempt declining.
    reason: why, for humans.
    """

    tm_id: str
    incarnation: str
    checkpoint_id: int
    task: TaskRef
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagerHeartbeat(WorkerReport):
    """A worker is alive (jm.heartbeats, compacted: the latest per worker survives).

    tm_id: the worker.
    incarnation: the worker's incarnation.
    sequence: increases by one per heartbeat of this incarnation.
    slots_free: slots not running a task.
    running_tasks: number of tasks running.
    last_seen_epoch: highest leader epoch the worker has seen; 0 if none.
    task_metrics: counters of the tasks running and of those that ended last, at most
        MAX_TASK_METRICS_PER_HEARTBEAT of them (since v2).
    """

    tm_id: str
    incarnation: str
    sequence: int
    slots_free: int
    running_tasks: int
    last_seen_epoch: int = 0
    task_metrics: tuple[TaskIoMetrics, ...] = ()


# ---------------------------------------------------------------------------
# Journal (jm.journal, leader only). Each firing of a timer is journaled as
# the decision it causes (TaskManagerLost, CheckpointAborted, ...) stamped
# with event_time; the deadlines themselves are fields of those decisions
# (RestartScheduled.restart_at, CheckpointTriggered.timeout_at).
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElected(JournalEvent):
    """A replica won the lease and leads with a new, higher epoch.

    replica_id: the new leader.
    previous_offset: offset of the last journal record the leader read before this one; -1 if none.
    """

    replica_id: str
    previous_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAccepted(JournalEvent):
    """The dispatcher accepted a submission; replay rebuilds the job from it.

    submission: the full submission, as received (its event_id identifies the input).
    """

    submission: JobSubmitted


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRejected(JournalEvent):
    """The dispatcher rejected a submission or a request about a job.

    job_id: the job concerned.
    reason: why, for humans.
    input_event_id: event_id of the rejected input.
    """

    job_id: str
    reason: str
    input_event_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatusChanged(JournalEvent):
    """A job moved from one status to another.

    job_id: the job.
    from_status: status before.
    to_status: status after.
    cause: why, for humans (failure, request id, ...); null if routine.
    """

    job_id: str
    from_status: JobStatus
    to_status: JobStatus
    cause: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGraphCreated(JournalEvent):
    """The JobMaster expanded the job graph into subtask attempts.

    job_id: the job.
    restart_count: 0 for the first run, then one more per restart.
    subtasks: every subtask attempt of this run, in vertex then subtask order.
    """

    job_id: str
    restart_count: int
    subtasks: tuple[TaskRef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAssigned(JournalEvent):
    """A task attempt was given a slot; a DeployTask goes out in the same transaction.

    task: the task attempt.
    slot: the slot it will run in.
    incarnation: incarnation of the TaskManager owning the slot.
    """

    task: TaskRef
    slot: SlotRef
    incarnation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStateRecorded(JournalEvent):
    """The coordinator recorded that a task attempt moved to a new state.

    task: the task attempt.
    state: its new execution state.
    error_name: exception type when FAILED; null otherwise.
    error_stack: exception trace when FAILED; null otherwise.
    input_event_id: the report that caused it; null when the coordinator decided alone.
    """

    task: TaskRef
    state: ExecutionState
    error_name: str | None = None
    error_stack: str | None = None
    input_event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagerJoined(JournalEvent):
    """The resource manager admitted a worker incarnation and its slots.

    tm_id: the worker.
    incarnation: the admitted incarnation.
    host: host of the worker.
    slots: number of slots offered.
    operators: operators it can run.
    running_tasks: tasks it reported still running, to reconcile.
    version: software version of the worker.
    """

    tm_id: str
    incarnation: str
    host: str
    slots: int
    operators: tuple[str, ...] = ()
    running_tasks: tuple[RunningTask, ...] = ()
    version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskManagerLost(JournalEvent):
    """The resource manager declared a worker incarnation gone.

    tm_id: the worker.
    incarnation: the incarnation lost.
    reason: heartbeat timeout, deregistered, replaced by a new incarnation, ...
    """

    tm_id: str
    incarnation: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartScheduled(JournalEvent):
    """The JobMaster will restart a failed job at a deadline.

    job_id: the job.
    restart_at: when the restart is due, ms since the epoch.
    restart_count: number of this restart, from 1.
    cause: the failure that caused it.
    """

    job_id: str
    restart_at: int
    restart_count: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointTriggered(JournalEvent):
    """The checkpoint coordinator started a checkpoint or savepoint.

    job_id: the job.
    checkpoint_id: increasing per job, from 1.
    kind: checkpoint, savepoint or stop-with-savepoint.
    timeout_at: deadline after which it is aborted, ms since the epoch.
    target_directory: savepoint location; null for checkpoints or the default.
    request_event_id: the client request for a savepoint; null for periodic checkpoints.
    """

    job_id: str
    checkpoint_id: int
    kind: CheckpointKind
    timeout_at: int
    target_directory: str | None = None
    request_event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointCompleted(JournalEvent):
    """Every task acknowledged; the checkpoint is complete and can be restored.

    job_id: the job.
    checkpoint_id: the checkpoint.
    task_states: where each task's state lives.
    state_size: total size of the checkpoint, bytes.
    duration_ms: trigger to completion, ms.
    subsumed: checkpoint ids no longer retained because of this one.
    """

    job_id: str
    checkpoint_id: int
    task_states: tuple[TaskStateHandle, ...]
    state_size: int
    duration_ms: int
    subsumed: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointAborted(JournalEvent):
    """A checkpoint was given up (timeout, decline, task failure, new leader).

    job_id: the job.
    checkpoint_id: the checkpoint.
    reason: why, for humans.
    counted: whether it counts toward the job's tolerable checkpoint failures;
      false when a task failure, a failover, a cancel or a new leader caused it
      (Flink's CheckpointFailureManager ignores those) (since v2).
    acknowledged: subtasks that had acknowledged when it was aborted (since v2).
    """

    job_id: str
    checkpoint_id: int
    reason: str
    counted: bool = True
    acknowledged: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointStateDiscarded(JournalEvent):
    """The state of these checkpoints is no longer needed: whoever stores it deletes it.

    job_id: the job.
    checkpoint_ids: the checkpoints whose state goes (subsumed, aborted, or retained
      by a job that ended and does not keep them).
    handles: every state handle to delete (what their acknowledgements named).
    reason: why, for humans (subsumed, aborted, job ended).
    """

    job_id: str
    checkpoint_ids: tuple[int, ...]
    handles: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SavepointCompleted(JournalEvent):
    """A requested savepoint is complete.

    job_id: the job.
    checkpoint_id: id of the snapshot that became the savepoint.
    savepoint_path: where the savepoint lives.
    request_event_id: the client request it answers; null if none.
    """

    job_id: str
    checkpoint_id: int
    savepoint_path: str
    request_event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobArchived(JournalEvent):
    """A globally terminal job leaves the coordinator's memory (it stays in the log).

    job_id: the job.
    final_status: its terminal status.
    """

    job_id: str
    final_status: JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotTaken(JournalEvent):
    """The leader wrote a snapshot of the state to jm.snapshots.

    snapshot_id: id of the snapshot (shared by its chunks).
    covered_offset: journal offset up to which (inclusive) the snapshot reflects events.
    format_version: format version of the state encoding.
    chunk_count: number of chunks written.
    digest: state digest at covered_offset.
    """

    snapshot_id: str
    covered_offset: int
    format_version: int
    chunk_count: int
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRejected(JournalEvent):
    """An input was impossible (stale incarnation, unknown task, ...) and was ignored.

    input_event_id: event_id of the rejected input.
    input_event_type: type name of the rejected input.
    reason: why, for humans.
    job_id: job concerned, if any.
    tm_id: worker concerned, if any.
    """

    input_event_id: str
    input_event_type: str
    reason: str
    job_id: str | None = None
    tm_id: str | None = None


# ---------------------------------------------------------------------------
# Worker commands (jm.commands, key = tm id, partition = tm_partition(tm id)).
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployTask(WorkerCommand):
    """Run a task attempt in a slot.

    tm_id: target worker.
    incarnation: target incarnation; other incarnations ignore the command.
    task: the task attempt to run.
    slot_index: slot on the target worker.
    operator: registered operator name to run.
    vertex_name: human readable vertex name.
    parallelism: parallelism of the task's vertex.
    max_parallelism: max parallelism of the task's vertex (number of key groups).
    config: operator configuration of the vertex.
    inputs: edges into the task's vertex.
    outputs: edges out of the task's vertex.
    vertex_parallelism: parallelism of every vertex of the job, to partition outputs.
    restore_checkpoint_id: checkpoint to restore from; null starts fresh.
    restore_state_handle: this task's state in that checkpoint; null if none.
    job_accepted_at: when the job was accepted (its JobAccepted), ms since the epoch; the same
        for every attempt, so a source told to start at ``latest`` starts there on every
        attempt; null if unknown (since v2).
    artifact: the job's user-code package, installed by the worker before the task
        runs; null when the job has none (since v3).
    chained: the subtasks chained after this one, in chain order, run in the same task;
        ``outputs`` is then empty and the last one's edges are the task's (since v4).
    """

    tm_id: str
    incarnation: str
    task: TaskRef
    slot_index: int
    operator: str
    vertex_name: str
    parallelism: int
    max_parallelism: int
    config: dict[str, str] = field(default_factory=dict)
    inputs: tuple[Edge, ...] = ()
    outputs: tuple[Edge, ...] = ()
    vertex_parallelism: dict[str, int] = field(default_factory=dict)
    restore_checkpoint_id: int | None = None
    restore_state_handle: str | None = None
    job_accepted_at: int | None = None
    artifact: ArtifactRef | None = None
    chained: tuple[ChainedTask, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTask(WorkerCommand):
    """Cancel a task attempt.

    tm_id: target worker.
    incarnation: target incarnation.
    task: the task attempt to cancel.
    """

    tm_id: str
    incarnation: str
    task: TaskRef


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerCheckpoint(WorkerCommand):
    """Start a checkpoint at a source task (barriers flow on from there).

    tm_id: target worker.
    incarnation: target incarnation.
    task: the source task attempt.
    checkpoint_id: the checkpoint.
    kind: checkpoint, savepoint or stop-with-savepoint.
    target_directory: savepoint location; null for checkpoints.
    more_tasks: further task attempts on the same worker incarnation the command is
        also for: one record per worker, not per task (since v2).
    """

    tm_id: str
    incarnation: str
    task: TaskRef
    checkpoint_id: int
    kind: CheckpointKind = CheckpointKind.CHECKPOINT
    target_directory: str | None = None
    more_tasks: tuple[TaskRef, ...] = ()

    def tasks(self) -> tuple[TaskRef, ...]:
        """Every task attempt the command is for."""
        return (self.task, *self.more_tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyCheckpointComplete(WorkerCommand):
    """Tell a task a checkpoint is complete (exactly-once sinks commit then).

    tm_id: target worker.
    incarnation: target incarnation.
    task: the task attempt.
    checkpoint_id: the completed checkpoint.
    more_tasks: further task attempts on the same worker incarnation the command is
        also for: one record per worker, not per task (since v2).
    """

    tm_id: str
    incarnation: str
    task: TaskRef
    checkpoint_id: int
    more_tasks: tuple[TaskRef, ...] = ()

    def tasks(self) -> tuple[TaskRef, ...]:
        """Every task attempt the command is for."""
        return (self.task, *self.more_tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyCheckpointAborted(WorkerCommand):
    """Tell a task a checkpoint was aborted, so it can drop its part.

    tm_id: target worker.
    incarnation: target incarnation.
    task: the task attempt.
    checkpoint_id: the aborted checkpoint.
    more_tasks: further task attempts on the same worker incarnation the command is
        also for: one record per worker, not per task (since v2).
    """

    tm_id: str
    incarnation: str
    task: TaskRef
    checkpoint_id: int
    more_tasks: tuple[TaskRef, ...] = ()

    def tasks(self) -> tuple[TaskRef, ...]:
        """Every task attempt the command is for."""
        return (self.task, *self.more_tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectTaskManager(WorkerCommand):
    """The coordinator declared this worker incarnation lost (or refuses it as lost):
    the worker stops its tasks and registers again as a new incarnation.

    tm_id: target worker.
    incarnation: the incarnation declared lost; other incarnations ignore the command.
    reason: why it was declared lost, for humans (heartbeat timeout, ...).
    """

    tm_id: str
    incarnation: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderKeepalive(WorkerCommand):
    """The leader is alive; sent to every worker partition each heartbeat interval.
    The first one of an epoch announces the new epoch to the workers.

    leader_replica_id: the replica leading with this epoch.
    heartbeat_timeout_ms: the leader declares a worker silent this long lost, ms; workers
        check their own timeouts against it (docs/ha.md); null if unknown (since v2).
    keepalive_interval_ms: time between the leader's keepalives, ms; null if unknown
        (since v2).
    """

    leader_replica_id: str
    heartbeat_timeout_ms: int | None = None
    keepalive_interval_ms: int | None = None


# ---------------------------------------------------------------------------
# Replicas, snapshots, dead letters.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaStatus(Event):
    """What a coordinator replica is doing (jm.replicas, compacted, key = replica id).
    event_time is when the status was taken.

    replica_id: the replica.
    role: its role.
    epoch: highest leader epoch it has applied.
    applied_offset: journal offset of the last event it applied; -1 if none.
    lag: read_committed end offset of the journal minus its position.
    digest: state digest at applied_offset.
    foreign_records: journal records it skipped because no leader wrote them.
    refused_inputs: inputs it refused as leader because deciding them failed.
    problem: what keeps it from working normally (e.g. Redis unreachable); null if none.
    unknown_heartbeats: heartbeats it ignored as leader because no registered worker
        incarnation sent them (a worker not registered yet or gone, or anyone writing to
        the heartbeats topic) (since v3).
    """

    replica_id: str
    role: ReplicaRole
    epoch: int
    applied_offset: int
    lag: int
    digest: str
    foreign_records: int = 0
    refused_inputs: int = 0
    problem: str | None = None
    unknown_heartbeats: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotChunk(Event):
    """One chunk of a coordinator state snapshot (jm.snapshots).

    snapshot_id: the snapshot this chunk belongs to.
    format_version: format version of the state encoding; other versions are skipped.
    covered_offset: journal offset up to which (inclusive) the snapshot reflects events.
    chunk_index: index of this chunk, from 0.
    chunk_count: number of chunks in the snapshot.
    payload: this chunk's bytes of the encoded state.
    epoch: epoch of the leader that wrote the snapshot.
    """

    snapshot_id: str
    format_version: int
    covered_offset: int
    chunk_index: int
    chunk_count: int
    payload: bytes
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter(Event):
    """An input record that could not be decoded or validated (jm.deadletter).

    source_topic: topic the record was read from.
    partition: its partition.
    offset: its offset.
    original_key: its key bytes; null if none.
    original_value: its value bytes; null if none.
    original_headers: its headers.
    reason: what went wrong, for humans.
    error_kind: class name of the error (e.g. UnknownFingerprintError).
    """

    source_topic: str
    partition: int
    offset: int
    original_key: bytes | None
    original_value: bytes | None
    original_headers: tuple[KafkaHeader, ...] = ()
    reason: str
    error_kind: str


# ---------------------------------------------------------------------------
# Registry and identity.
# ---------------------------------------------------------------------------

EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    JobSubmitted,
    JobCancelRequested,
    SavepointRequested,
    StopWithSavepointRequested,
    TaskManagerRegistered,
    TaskManagerDeregistered,
    TaskStateChanged,
    CheckpointAcknowledged,
    CheckpointDeclined,
    TaskManagerHeartbeat,
    LeaderElected,
    JobAccepted,
    JobRejected,
    JobStatusChanged,
    ExecutionGraphCreated,
    TaskAssigned,
    TaskStateRecorded,
    TaskManagerJoined,
    TaskManagerLost,
    RestartScheduled,
    CheckpointTriggered,
    CheckpointCompleted,
    CheckpointAborted,
    SavepointCompleted,
    JobArchived,
    SnapshotTaken,
    InputRejected,
    CheckpointStateDiscarded,
    DeployTask,
    CancelTask,
    TriggerCheckpoint,
    NotifyCheckpointComplete,
    NotifyCheckpointAborted,
    DisconnectTaskManager,
    LeaderKeepalive,
    ReplicaStatus,
    SnapshotChunk,
    DeadLetter,
)

#: Event type name (the class name, also the ``event-type`` header) to class.
EVENT_TYPES: Final[dict[str, type[Event]]] = {c.__name__: c for c in EVENT_CLASSES}

# Nested value types whose fields identify the event carrying them.
_NESTED_IDENTITY: Final[dict[object, tuple[tuple[str, str], ...]]] = {
    TaskRef: (("job-id", "job_id"),),
    SlotRef: (("tm-id", "tm_id"),),
    JobSubmitted: (("job-id", "job_id"),),
}
_DIRECT_IDENTITY: Final = {"job_id": "job-id", "tm_id": "tm-id", "epoch": "epoch"}


def _identity(cls: type[Event]) -> tuple[tuple[str, str], ...]:
    """See identity_fields."""
    found: dict[str, str] = {}
    for f in fields(cls):
        if f.name in _DIRECT_IDENTITY:
            found[_DIRECT_IDENTITY[f.name]] = f.name
    for f in fields(cls):
        for header, attr in _NESTED_IDENTITY.get(f.type, ()):
            found.setdefault(header, f"{f.name}.{attr}")
    order = ("job-id", "tm-id", "epoch")
    return tuple((h, found[h]) for h in order if h in found)


_IDENTITY: Final = {c: _identity(c) for c in EVENT_CLASSES}


def identity_fields(cls: type[Event]) -> tuple[tuple[str, str], ...]:
    """(header name, dotted attribute path) pairs identifying events of `cls`,
    in the order job-id, tm-id, epoch: a ``job_id``/``tm_id``/``epoch`` field,
    the job of a nested TaskRef or submission, the TaskManager of a nested
    SlotRef. A direct field wins. Values may be None for optional fields (then
    the header is omitted)."""
    return _IDENTITY.get(cls) or _identity(cls)


def event_type(event: Event) -> str:
    """The type name of an event: its class name."""
    return type(event).__name__


_end_cached_dataclasses()
