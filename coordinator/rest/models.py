"""Response models with Flink's field names (aliases); ``/openapi.json`` is built from them.

Construct by field name, serialise ``by_alias`` (``api.json_answer``). Fields
Flink has keep its names and meaning; ours are named ``jm-...`` (Flink's
clients ignore fields they do not know).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Reflecting(Model):
    """An answer from a replica's folded state: which journal offset it reflects
    (also in the ``X-JM-Journal-Offset`` header)."""

    journal_offset: int = Field(alias="jm-journal-offset")


class Health(Model):
    status: str
    replica_id: str = Field(alias="replica-id")
    role: str


class Features(Model):
    web_submit: bool = Field(alias="web-submit")
    web_cancel: bool = Field(alias="web-cancel")
    web_rescale: bool = Field(alias="web-rescale")
    web_history: bool = Field(alias="web-history")


class DashboardConfig(Model):
    """Flink's ``/config`` (what the dashboard reads first)."""

    refresh_interval: int = Field(alias="refresh-interval")
    timezone_name: str = Field(alias="timezone-name")
    timezone_offset: int = Field(alias="timezone-offset")
    flink_version: str = Field(alias="flink-version")
    flink_revision: str = Field(alias="flink-revision")
    features: Features


class ClusterOverview(Reflecting):
    """Flink's ``/overview``."""

    taskmanagers: int
    slots_total: int = Field(alias="slots-total")
    slots_available: int = Field(alias="slots-available")
    jobs_running: int = Field(alias="jobs-running")
    jobs_finished: int = Field(alias="jobs-finished")
    jobs_cancelled: int = Field(alias="jobs-cancelled")
    jobs_failed: int = Field(alias="jobs-failed")
    flink_version: str = Field(alias="flink-version")
    flink_commit: str = Field(alias="flink-commit")


# ------------------------------------------------------------------ jobs


class JobIdStatus(Model):
    id: str
    status: str


class JobIdsWithStatus(Reflecting):
    """Flink's ``/jobs``."""

    jobs: list[JobIdStatus]


class JobTaskCounts(Model):
    """Subtasks of a job per execution state (Flink's lower-case ``tasks``)."""

    total: int = 0
    created: int = 0
    scheduled: int = 0
    deploying: int = 0
    running: int = 0
    finished: int = 0
    canceling: int = 0
    canceled: int = 0
    failed: int = 0
    reconciling: int = 0
    initializing: int = 0
    pending: int = 0


class JobDetails(Model):
    """One row of Flink's ``/jobs/overview``."""

    jid: str
    name: str
    start_time: int = Field(alias="start-time")
    end_time: int = Field(alias="end-time")
    duration: int
    state: str
    last_modification: int = Field(alias="last-modification")
    tasks: JobTaskCounts


class MultipleJobsDetails(Reflecting):
    """Flink's ``/jobs/overview``."""

    jobs: list[JobDetails]


class IOMetrics(Model):
    """Flink's per-vertex and per-subtask metrics (sums over the subtasks' current
    attempts; counters since each attempt started; 0 until a worker reported)."""

    read_bytes: int = Field(0, alias="read-bytes")
    read_bytes_complete: bool = Field(True, alias="read-bytes-complete")
    write_bytes: int = Field(0, alias="write-bytes")
    write_bytes_complete: bool = Field(True, alias="write-bytes-complete")
    read_records: int = Field(0, alias="read-records")
    read_records_complete: bool = Field(True, alias="read-records-complete")
    write_records: int = Field(0, alias="write-records")
    write_records_complete: bool = Field(True, alias="write-records-complete")
    accumulated_backpressured_time: int = Field(0, alias="accumulated-backpressured-time")
    accumulated_idle_time: int = Field(0, alias="accumulated-idle-time")
    accumulated_busy_time: float = Field(0, alias="accumulated-busy-time")


class JobVertexSummary(Model):
    """One vertex of Flink's ``/jobs/{id}``: ``tasks`` counts subtasks per state."""

    id: str
    name: str
    max_parallelism: int = Field(alias="maxParallelism")
    parallelism: int
    status: str
    start_time: int = Field(alias="start-time")
    end_time: int = Field(alias="end-time")
    duration: int
    tasks: dict[str, int]
    metrics: IOMetrics


class PlanInput(Model):
    num: int
    id: str
    ship_strategy: str
    exchange: str


class PlanNode(Model):
    id: str
    parallelism: int
    operator: str
    operator_strategy: str
    description: str
    inputs: list[PlanInput] = []
    optimizer_properties: dict[str, str] = {}


class Plan(Model):
    jid: str
    name: str
    type: str
    nodes: list[PlanNode]


class JobPlan(Model):
    """Flink's ``/jobs/{id}/plan``."""

    plan: Plan


class JobArtifact(Model):
    """The user-code package a job brought (docs/user-code.md)."""

    sha256: str
    size: int
    name: str
    version: str
    filename: str
    operators: list[str]
    functions: list[str]


class JobDetail(Reflecting):
    """Flink's ``/jobs/{id}``, plus why a CREATED job waits and its restarts (ours)."""

    jid: str
    name: str
    is_stoppable: bool = Field(alias="isStoppable")
    state: str
    job_type: str = Field(alias="job-type")
    start_time: int = Field(alias="start-time")
    end_time: int = Field(alias="end-time")
    duration: int
    max_parallelism: int = Field(alias="maxParallelism")
    now: int
    timestamps: dict[str, int]
    vertices: list[JobVertexSummary]
    status_counts: dict[str, int] = Field(alias="status-counts")
    plan: Plan
    waiting_reason: str | None = Field(alias="jm-waiting-reason")
    restarts: int = Field(alias="jm-restarts")
    artifact: JobArtifact | None = Field(None, alias="jm-artifact")


class JobStatusInfo(Reflecting):
    """Flink's ``/jobs/{id}/status``."""

    status: str


class ExecutionConfig(Model):
    execution_mode: str = Field(alias="execution-mode")
    restart_strategy: str = Field(alias="restart-strategy")
    job_parallelism: int = Field(alias="job-parallelism")
    object_reuse_mode: bool = Field(alias="object-reuse-mode")
    user_config: dict[str, str] = Field(alias="user-config")


class JobConfig(Model):
    """Flink's ``/jobs/{id}/config``."""

    jid: str
    name: str
    execution_config: ExecutionConfig = Field(alias="execution-config")


class ExceptionHistoryEntry(Model):
    exception_name: str = Field(alias="exceptionName")
    stacktrace: str
    timestamp: int
    task_name: str | None = Field(alias="taskName")
    location: str | None
    endpoint: str | None
    task_manager_id: str | None = Field(alias="taskManagerId")
    failure_labels: dict[str, str] = Field(alias="failureLabels")
    concurrent_exceptions: list[str] = Field(alias="concurrentExceptions")


class ExceptionHistory(Model):
    entries: list[ExceptionHistoryEntry]
    truncated: bool


class JobExceptions(Model):
    """Flink's ``/jobs/{id}/exceptions`` (latest first)."""

    exception_history: ExceptionHistory = Field(alias="exceptionHistory")


# ------------------------------------------------------------ checkpoints


class CheckpointCounts(Model):
    restored: int
    total: int
    in_progress: int
    completed: int
    failed: int


class MinMaxAvg(Model):
    min: int
    max: int
    avg: int


class CheckpointSummary(Model):
    end_to_end_duration: MinMaxAvg
    state_size: MinMaxAvg


class CheckpointStatistics(Model):
    """One checkpoint or savepoint (Flink's CheckpointStatistics)."""

    id: int
    status: str
    is_savepoint: bool
    checkpoint_type: str
    trigger_timestamp: int
    latest_ack_timestamp: int | None
    state_size: int | None
    end_to_end_duration: int | None
    alignment_duration: int | None
    num_subtasks: int
    num_acknowledged_subtasks: int
    failure_timestamp: int | None
    failure_message: str | None
    external_path: str | None
    discarded: bool


class RestoredCheckpoint(Model):
    id: int | None
    restore_timestamp: int
    is_savepoint: bool
    external_path: str | None


class LatestCheckpoints(Model):
    completed: CheckpointStatistics | None
    savepoint: CheckpointStatistics | None
    failed: CheckpointStatistics | None
    restored: RestoredCheckpoint | None


class CheckpointingStatistics(Reflecting):
    """Flink's ``/jobs/{id}/checkpoints`` (history: latest first)."""

    counts: CheckpointCounts
    summary: CheckpointSummary
    latest: LatestCheckpoints
    history: list[CheckpointStatistics]


class Externalization(Model):
    enabled: bool
    delete_on_cancellation: bool


class CheckpointConfigInfo(Model):
    """Flink's ``/jobs/{id}/checkpoints/config``."""

    mode: str
    interval: int
    timeout: int
    min_pause: int
    max_concurrent: int
    externalization: Externalization
    state_backend: str
    checkpoint_storage: str
    unaligned_checkpoints: bool
    tolerable_failed_checkpoints: int
    aligned_checkpoint_timeout: int
    checkpoints_after_tasks_finish: bool
    state_changelog_enabled: bool
    retained: int = Field(alias="jm-retained")


# ----------------------------------------------------------- vertices


class SubtaskDetail(Model):
    subtask: int
    status: str
    attempt: int
    endpoint: str | None
    start_time: int = Field(alias="start-time")
    end_time: int = Field(alias="end-time")
    duration: int
    metrics: IOMetrics
    taskmanager_id: str | None = Field(alias="taskmanager-id")


class JobVertexDetail(Reflecting):
    """Flink's ``/jobs/{id}/vertices/{vid}``."""

    id: str
    name: str
    max_parallelism: int = Field(alias="maxParallelism")
    parallelism: int
    now: int
    subtasks: list[SubtaskDetail]


class AggregatedMetric(Model):
    """One metric over a vertex's subtasks (Flink's aggregated subtask metrics);
    without ``get``, only ``id`` (the metrics there are)."""

    id: str
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    sum: float | None = None


class Metric(Model):
    """One metric (Flink's ``{"id", "value"}``; without ``get``, only ``id``)."""

    id: str
    value: str | None = None


# ------------------------------------------------------- task managers


class Hardware(Model):
    cpu_cores: int = Field(alias="cpuCores")
    physical_memory: int = Field(alias="physicalMemory")
    free_memory: int = Field(alias="freeMemory")
    managed_memory: int = Field(alias="managedMemory")


class TaskManagerInfo(Model):
    """One TaskManager (Flink's TaskManagerInfo, plus ``jm-`` fields)."""

    id: str
    path: str
    data_port: int = Field(alias="dataPort")
    jmx_port: int = Field(alias="jmxPort")
    time_since_last_heartbeat: int = Field(alias="timeSinceLastHeartbeat")
    slots_number: int = Field(alias="slotsNumber")
    free_slots: int = Field(alias="freeSlots")
    hardware: Hardware
    blocked: bool = False
    incarnation: str = Field(alias="jm-incarnation")
    operators: list[str] = Field(alias="jm-operators")
    version: str = Field(alias="jm-version")
    registered_at: int = Field(alias="jm-registered-at")
    heartbeat_age_ms: int | None = Field(alias="jm-heartbeat-age-ms")


class TaskManagersInfo(Reflecting):
    """Flink's ``/taskmanagers``."""

    taskmanagers: list[TaskManagerInfo]


class AllocatedSlot(Model):
    index: int
    job_id: str | None = Field(alias="jobId")
    vertex_id: str | None = Field(alias="jm-vertex-id")
    subtask: int | None = Field(alias="jm-subtask")
    attempt: int | None = Field(alias="jm-attempt")


class TaskManagerDetail(TaskManagerInfo):
    """Flink's ``/taskmanagers/{id}``: with its slots."""

    journal_offset: int = Field(alias="jm-journal-offset")
    allocated_slots: list[AllocatedSlot] = Field(alias="allocatedSlots")


# ------------------------------------------------------------ jobmanager


class ConfigEntry(Model):
    key: str
    value: str


class Jvm(Model):
    version: str
    arch: str
    options: list[str]


class Environment(Model):
    """Flink's ``/jobmanager/environment``: here the Python runtime in its ``jvm`` field."""

    jvm: Jvm
    classpath: list[str]


# ------------------------------------------------------------ our own


class ReplicaInfo(Model):
    id: str
    role: str
    epoch: int
    applied_offset: int = Field(alias="applied-offset")
    lag: int
    age_ms: int = Field(alias="age-ms")
    digest: str
    problem: str | None


class ClusterLeader(Reflecting):
    """``/cluster/leader``: the leader by the journal, and every replica's position
    as it last published it (the replicas topic)."""

    leader_id: str | None = Field(alias="leader-id")
    epoch: int
    leader_since: int = Field(alias="leader-since")
    answered_by: str = Field(alias="answered-by")
    answered_by_role: str = Field(alias="answered-by-role")
    replicas: list[ReplicaInfo]


class JournalEventEntry(Model):
    offset: int
    type: str
    time: int
    summary: str
    event: dict[str, object]


class JobEvents(Model):
    """``/jobs/{id}/events``: the job's journal records from offset ``from`` on.
    ``next-offset`` continues the paging; ``end-offset`` is the journal's end."""

    job_id: str = Field(alias="job-id")
    start: int = Field(alias="from")
    events: list[JournalEventEntry]
    next_offset: int = Field(alias="next-offset")
    end_offset: int = Field(alias="end-offset")


class JobStateAt(Model):
    """``/jobs/{id}/state``: the job as the journal had it up to a point (a replay)."""

    job_id: str = Field(alias="job-id")
    until: int | None
    offset: int
    found: bool
    archived_status: str | None = Field(alias="archived-status")
    job: JobDetail | None
    # Where the replay started: the offset the ladder snapshot it started from covers
    # (None: offset 0), and how many events it applied after it.
    snapshot_offset: int | None = Field(alias="snapshot-offset")
    replayed: int


class Readiness(Reflecting):
    ready: bool
    role: str
    lag: int
    max_lag: int = Field(alias="max-lag")
    reason: str | None = None
