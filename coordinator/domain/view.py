"""What the leader knows that the journal does not: config and volatile facts.

Never part of the folded state. A new leader starts with an empty view; the
decisions the view leads to (a worker declared lost, a checkpoint completed)
are journaled, so replay never needs it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.domain.state import Job, SubtaskKey, Worker
from schemas.events import CheckpointAcknowledged, TaskManagerHeartbeat
from schemas.limits import MAX_JOBS, MAX_SUBTASKS


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainConfig:
    """Leader-side parameters of decide (one frozen object, passed in the view).

    heartbeat_timeout_ms: a worker silent for longer is declared lost.
    slot_wait_timeout_ms: a CREATED job waiting this long for slots (or for a
        worker offering one of its operators) fails, like Flink's
        slot.request.timeout; a submission is never rejected for want of workers.
    allow_checkpointing: accept jobs that enable checkpointing (the default;
        ``--no-allow-checkpointing`` refuses them with the reason).
    archive_after_ms: a globally terminal job leaves memory this long after
        it ended (it stays in the log); None keeps every job.
    max_ended_jobs: at most this many globally terminal jobs stay in memory;
        past it, those that ended first are archived at once. None: no count.
    max_jobs: jobs held at once (ended ones until archived), at most
        ``schemas.limits.MAX_JOBS``; a submission beyond it is rejected.
    max_subtasks: subtasks of all held jobs, at most ``MAX_SUBTASKS``; a
        submission that would pass it is rejected.
    default_savepoint_dir: savepoint location when a request names none.
    protected_topic_prefixes: topics no job may name in an operator config
        (``schemas.validation.protected_prefixes``: the cluster's own prefix,
        Kafka's ``__`` and ``--protected-topic-prefix``); a submission naming
        one is rejected with the reason. Empty checks none.
    allowed_workers: the worker ids that may register (``--allowed-workers``);
        empty lets any worker in. Another id's registration is rejected with
        the reason, and a registered worker not on the list is declared lost.
    """

    heartbeat_timeout_ms: int = 5_000
    slot_wait_timeout_ms: int = 300_000
    allow_checkpointing: bool = True
    archive_after_ms: int | None = 3_600_000
    max_ended_jobs: int | None = None
    max_jobs: int = MAX_JOBS
    max_subtasks: int = MAX_SUBTASKS
    default_savepoint_dir: str = "savepoints"
    protected_topic_prefixes: tuple[str, ...] = ()
    allowed_workers: frozenset[str] = frozenset()


@dataclass(slots=True, kw_only=True)
class LeaderView:
    """The leader's volatile knowledge, fed by its loop, read by decide.

    epoch / replica_id: the leader's own epoch and id; decide stamps epoch on
        every event and requires it to equal the state's epoch.
    leader_since: when this replica became leader. A known worker whose last
        heartbeat is older (or unknown) counts as seen then: every worker gets
        a full heartbeat timeout of grace after a takeover.
    last_heartbeat: (tm_id, incarnation) -> when its latest heartbeat was read;
        only registered incarnations, pruned of the others as they go (at
        most about twice the registered workers, plus a few).
    checkpoint_acks: (job_id, checkpoint_id) -> subtask -> acknowledgement,
        recorded by decide (checkpoints.on_acknowledged) once valid, forgotten
        when the checkpoint completes or is aborted. Acks are not journaled one
        by one; CheckpointCompleted carries them all. A new leader aborts
        checkpoints it did not trigger.
    savepoint_checks: submission event id -> why its savepoint_path cannot be
        restored, or None when it can: the leader's runtime reads the savepoint
        (I/O) before deciding a submission that names one, and drops the entry after.
    artifact_checks: submission event id -> why its user-code artifact cannot be
        used (missing, over the size limit, checksum or signature mismatch), or None
        when it can; filled by the leader's runtime like savepoint_checks.
    repeated_reports: task reports that repeated the state already journaled
        (counted, not journaled).
    ignored_heartbeats: heartbeats of no registered incarnation (a worker not
        registered yet, a lost one, anyone writing to the topic): counted,
        not kept.
    """

    epoch: int
    replica_id: str
    leader_since: int
    config: DomainConfig = field(default_factory=DomainConfig)
    last_heartbeat: dict[tuple[str, str], int] = field(default_factory=dict)
    checkpoint_acks: dict[tuple[str, int], dict[SubtaskKey, CheckpointAcknowledged]] = field(
        default_factory=dict
    )
    # Per pending checkpoint: how many subtasks, in execution order, are known to be
    # acknowledged or FINISHED (decide's completion check resumes there).
    checkpoint_cursors: dict[tuple[str, int], int] = field(default_factory=dict)
    savepoint_checks: dict[str, str | None] = field(default_factory=dict)
    artifact_checks: dict[str, str | None] = field(default_factory=dict)
    repeated_reports: int = 0
    ignored_heartbeats: int = 0

    def record_heartbeat(
        self, heartbeat: TaskManagerHeartbeat, seen_at: int, workers: Mapping[str, Worker]
    ) -> None:
        """Note a heartbeat of a registered incarnation (`workers`: the state's)."""
        worker = workers.get(heartbeat.tm_id)
        if worker is None or worker.incarnation != heartbeat.incarnation:
            self.ignored_heartbeats += 1
            return
        key = (heartbeat.tm_id, heartbeat.incarnation)
        self.last_heartbeat[key] = max(self.last_heartbeat.get(key, seen_at), seen_at)
        if len(self.last_heartbeat) > 2 * len(workers) + 16:
            # Entries of workers gone since: dropped in one pass, amortised O(1).
            self.last_heartbeat = {
                k: t
                for k, t in self.last_heartbeat.items()
                if (w := workers.get(k[0])) is not None and w.incarnation == k[1]
            }

    def record_ack(self, ack: CheckpointAcknowledged, jobs: Mapping[str, Job]) -> None:
        """Remember a valid acknowledgement (decide's on_acknowledged validated it;
        `jobs`: the state's). When the first ack of a checkpoint arrives, those of
        checkpoints no longer pending are dropped if they have piled up (one pass per
        checkpoint at most, not per ack): the view holds about the pending ones."""
        key = (ack.task.job_id, ack.checkpoint_id)
        acks = self.checkpoint_acks.get(key)
        if acks is None:
            if (
                len(self.checkpoint_acks)
                > 2 * sum(len(j.checkpoints.pending) for j in jobs.values()) + 16
            ):
                self.checkpoint_acks = {
                    k: v
                    for k, v in self.checkpoint_acks.items()
                    if (job := jobs.get(k[0])) is not None and k[1] in job.checkpoints.pending
                }
                self.checkpoint_cursors = {
                    k: i for k, i in self.checkpoint_cursors.items() if k in self.checkpoint_acks
                }
            acks = self.checkpoint_acks[key] = {}
        acks[(ack.task.vertex_id, ack.task.subtask_index)] = ack

    def forget_checkpoint(self, job_id: str, checkpoint_id: int) -> None:
        self.checkpoint_acks.pop((job_id, checkpoint_id), None)
        self.checkpoint_cursors.pop((job_id, checkpoint_id), None)
