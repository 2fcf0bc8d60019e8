"""Topic catalog: names, configuration and allowed event types per topic, the
ids derived from the cluster id, and the partition function of jm.commands.

Standard library only: the coordinator, workers and tools all import it, and
the partition function must give the same answer everywhere.

A cluster id namespaces everything a cluster owns (DESIGN.md): with the default
cluster id ``jm`` the topics are exactly ``jm.submissions``, ``jm.journal``, ...
"""

import operator
import os
import re
from dataclasses import dataclass, field
from typing import Final

from schemas import events as ev

DEFAULT_CLUSTER_ID: Final = "jm"
# Kafka topic names allow [a-zA-Z0-9._-], max 249 chars; the longest suffix is
# ".submissions" and we keep headroom for consumer group and transactional ids.
_CLUSTER_ID = re.compile(r"[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,199}")  # fullmatch

# Snapshot chunks are the largest records; 4 MiB fits a chunk of
# SNAPSHOT_CHUNK_BYTES plus its Avro framing with room to spare.
SNAPSHOT_CHUNK_BYTES: Final = 1_000_000
DEFAULT_MAX_MESSAGE_BYTES: Final = 1_048_576
SNAPSHOT_MAX_MESSAGE_BYTES: Final = 4_194_304
# Fixed key of the snapshot topic: compaction then keeps only the latest
# snapshot's chunks per chunk index (key = "<prefix>-<chunk_index>").
SNAPSHOT_KEY_PREFIX: Final = "snapshot"


def snapshot_key(chunk_index: int, rung: int | None = None) -> bytes:
    """The key of a snapshot chunk: per chunk index, and per ladder rung when the
    writer keeps a ladder (coordinator/runtime/snapshots.py), so compaction keeps
    the newest snapshot of each rung."""
    if rung is None:
        return f"{SNAPSHOT_KEY_PREFIX}-{chunk_index}".encode()
    return f"{SNAPSHOT_KEY_PREFIX}-r{rung}-{chunk_index}".encode()


# Checkpoint state chunks (schemas/statestore.py's KafkaStore): raw bytes, not
# events. A chunk of STATE_CHUNK_BYTES plus its key, header and batch framing
# stays under the 1 MiB request default of clients and far under the topic's max.
STATE_CHUNK_BYTES: Final = 1_000_000
STATE_MAX_MESSAGE_BYTES: Final = 4_194_304


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    """What a topic must look like; processes refuse to run on anything else."""

    role: str  # "submissions", "journal", ...: the suffix after the cluster id
    name: str
    partitions: int
    allowed: frozenset[type[ev.Event]]
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * 24 * 3600 * 1000
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    min_insync_replicas: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Kafka topic configs to create (and verify) the topic with."""
        out = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(self.min_insync_replicas),
        }
        out.update(self.extra)
        return out


_SUBMISSIONS: Final[frozenset[type[ev.Event]]] = frozenset(
    {ev.JobSubmitted, ev.JobCancelRequested, ev.SavepointRequested, ev.StopWithSavepointRequested}
)
_REPORTS: Final[frozenset[type[ev.Event]]] = frozenset(
    {
        ev.TaskManagerRegistered,
        ev.TaskManagerDeregistered,
        ev.TaskStateChanged,
        ev.CheckpointAcknowledged,
        ev.CheckpointDeclined,
    }
)
_COMMANDS: Final[frozenset[type[ev.Event]]] = frozenset(
    {
        ev.DeployTask,
        ev.CancelTask,
        ev.TriggerCheckpoint,
        ev.NotifyCheckpointComplete,
        ev.NotifyCheckpointAborted,
        ev.DisconnectTaskManager,
        ev.LeaderKeepalive,
    }
)
_JOURNAL: Final[frozenset[type[ev.Event]]] = frozenset(
    c for c in ev.EVENT_CLASSES if issubclass(c, ev.JournalEvent)
)


#: The replication factor of the cluster's topics, when the Catalog is not told one.
REPLICATION_ENV: Final = "JM_REPLICATION_FACTOR"


def replication_for(brokers: int) -> int:
    """The topics' replication factor on `brokers` brokers: 3 when there are three or
    more (min.insync.replicas 2: one broker may be down), else one copy per broker."""
    return max(1, min(3, brokers))


class Catalog:
    """Topics and ids of one cluster."""

    def __init__(
        self,
        cluster_id: str = DEFAULT_CLUSTER_ID,
        prefix: str | None = None,
        *,
        commands_partitions: int = 16,
        submissions_partitions: int = 4,
        reports_partitions: int = 8,
        state_partitions: int = 8,
        replication_factor: int | None = None,
    ) -> None:
        """`prefix` defaults to the cluster id; topic names are ``{prefix}.{role}``.

        `replication_factor` sets min.insync.replicas (RF - 1, at least 1) so a
        single-broker development cluster and a 3-broker one both work; by default
        ``$JM_REPLICATION_FACTOR`` (which `launcher.py env` exports for an instance of
        three brokers, ``replication_for``), else 1.
        """
        if replication_factor is None:
            replication_factor = int(os.environ.get(REPLICATION_ENV) or 1)
        if not _CLUSTER_ID.fullmatch(cluster_id):
            raise ValueError(f"cluster id {cluster_id!r} must match {_CLUSTER_ID.pattern}")
        self.cluster_id = cluster_id
        self.prefix = cluster_id if prefix is None else prefix
        if not _CLUSTER_ID.fullmatch(self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} must match {_CLUSTER_ID.pattern}")
        self.replication_factor = replication_factor
        isr = max(1, replication_factor - 1)
        compacted = "compact"

        def spec(
            role: str,
            partitions: int,
            allowed: frozenset[type[ev.Event]],
            *,
            cleanup_policy: str = "delete",
            retention_ms: int = 7 * 24 * 3600 * 1000,
            max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            extra: dict[str, str] | None = None,
        ) -> TopicSpec:
            return TopicSpec(
                role=role,
                name=f"{self.prefix}.{role}",
                partitions=partitions,
                allowed=allowed,
                cleanup_policy=cleanup_policy,
                retention_ms=retention_ms,
                max_message_bytes=max_message_bytes,
                min_insync_replicas=isr,
                extra=extra or {},
            )

        self.submissions = spec("submissions", submissions_partitions, _SUBMISSIONS)
        self.reports = spec("reports", reports_partitions, _REPORTS)
        self.heartbeats = spec(
            "heartbeats",
            reports_partitions,
            frozenset({ev.TaskManagerHeartbeat}),
            cleanup_policy=compacted,
            retention_ms=-1,
            # Compact often: only the latest heartbeat per worker matters.
            extra={"segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
        )
        # The journal is the source of truth: one partition (total order),
        # never deleted, never compacted.
        self.journal = spec("journal", 1, _JOURNAL, retention_ms=-1)
        self.commands = spec("commands", commands_partitions, _COMMANDS, retention_ms=3600 * 1000)
        # Compacted topics keep the latest record per key, but only once a segment
        # has rolled: without segment.ms the active segment (1 GiB by default)
        # would hold every snapshot and status ever written.
        self.snapshots = spec(
            "snapshots",
            1,
            frozenset({ev.SnapshotChunk}),
            cleanup_policy=compacted,
            retention_ms=-1,
            max_message_bytes=SNAPSHOT_MAX_MESSAGE_BYTES,
            extra={"segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
        )
        # Replicas past their retention get a tombstone (coordinator/commands/replica.py),
        # which compaction removes after delete.retention.ms.
        self.replicas = spec(
            "replicas",
            1,
            frozenset({ev.ReplicaStatus}),
            cleanup_policy=compacted,
            retention_ms=-1,
            extra={
                "segment.ms": "600000",
                "min.cleanable.dirty.ratio": "0.1",
                "delete.retention.ms": "3600000",
            },
        )
        # Checkpoint state chunks, keyed "<state uid>/<chunk index>" (each key written
        # once): compaction drops a state only after its tombstones (written when the
        # checkpoint is subsumed or aborted); tombstones stay an hour so a reader can
        # still see that a state was discarded.
        self.state = spec(
            "state",
            state_partitions,
            frozenset(),
            cleanup_policy=compacted,
            retention_ms=-1,
            max_message_bytes=STATE_MAX_MESSAGE_BYTES,
            extra={
                "segment.ms": "600000",
                "min.cleanable.dirty.ratio": "0.1",
                "delete.retention.ms": "3600000",
            },
        )
        # Dead letters keep the original bytes, so they may be as large as
        # the largest input, plus framing.
        self.deadletter = spec(
            "deadletter",
            1,
            frozenset({ev.DeadLetter}),
            retention_ms=30 * 24 * 3600 * 1000,
            max_message_bytes=2 * DEFAULT_MAX_MESSAGE_BYTES,
        )

    @property
    def topics(self) -> tuple[TopicSpec, ...]:
        return (
            self.submissions,
            self.reports,
            self.heartbeats,
            self.journal,
            self.commands,
            self.snapshots,
            self.replicas,
            self.deadletter,
            self.state,
        )

    def topic(self, role: str) -> TopicSpec:
        """The topic of a role ("journal", ...)."""
        for t in self.topics:
            if t.role == role:
                return t
        raise KeyError(role)

    def topic_for(self, event_type: type[ev.Event]) -> TopicSpec:
        """The one topic events of this type are written to."""
        for t in self.topics:
            if event_type in t.allowed:
                return t
        raise KeyError(event_type.__name__)

    @property
    def transactional_id(self) -> str:
        """Fixed per cluster: initialising it fences the previous leader."""
        return f"{self.cluster_id}.leader"

    @property
    def leader_group_id(self) -> str:
        """Consumer group under which the leader commits its input offsets
        (inside its transactions; it reads with assign(), never joins)."""
        return f"{self.cluster_id}.leader-inputs"

    def history_topic(self, name: str = "history", table: str | None = None) -> str:
        """History server `name`'s faust app id (its consumer group on the journal),
        or the changelog topic of its `table` (coordinator/history/)."""
        return f"{self.prefix}.{name}" + ("" if table is None else f".{table}")

    @property
    def redis_prefix(self) -> str:
        """Prefix of every Redis key of this cluster."""
        return f"{self.cluster_id}:"

    @property
    def leader_lease_key(self) -> str:
        return f"{self.redis_prefix}leader-lease"

    def commands_partition(self, tm_id: str) -> int:
        """Partition of jm.commands that worker `tm_id` reads."""
        return tm_partition(tm_id, self.commands.partitions)

    def key_for(self, event: ev.Event) -> bytes:
        """The Kafka record key of an event on its topic (DESIGN.md): job id on
        submissions and the journal, tm id on reports, heartbeats and commands,
        replica id on replicas; the cluster id when the event has neither."""
        cls = type(event)
        if isinstance(event, ev.ReplicaStatus):
            return event.replica_id.encode()
        if isinstance(event, ev.SnapshotChunk):
            # Fixed keys: compaction keeps the latest snapshot's chunk per index.
            return snapshot_key(event.chunk_index)
        if isinstance(event, ev.DeadLetter):
            return event.original_key or b""
        by_worker = cls in _REPORTS or cls in _COMMANDS or cls is ev.TaskManagerHeartbeat
        path = dict(ev.identity_fields(cls)).get("tm-id" if by_worker else "job-id")
        value = operator.attrgetter(path)(event) if path else None
        return self.cluster_id.encode() if value is None else str(value).encode()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    mask = 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    full = length & ~3
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = length - full
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def tm_partition(tm_id: str, partitions: int) -> int:
    """Partition of a worker's commands: what Kafka's default partitioner picks
    for key = tm id (utf-8), so a plain Kafka producer agrees."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (murmur2(tm_id.encode()) & 0x7FFFFFFF) % partitions
