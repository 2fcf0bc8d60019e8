"""Topic catalog and the commands partition function."""

import pytest

from schemas import events as ev
from schemas.catalog import Catalog, murmur2, tm_partition

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(
    "key", [b"", b"t", b"tm", b"tm-", b"tm-0", b"worker-17", "wörker".encode()]
)
def test_murmur2_matches_aiokafka(key: bytes) -> None:
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    # aiokafka returns the same 32 bits unsigned.
    assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_tm_partition_is_kafkas_default_partition() -> None:
    # toPositive(murmur2("foobar")) % 50 == 16 (Kafka's DefaultPartitioner).
    assert tm_partition("foobar", 50) == 16
    assert all(0 <= tm_partition(f"tm-{i}", 16) < 16 for i in range(100))
    assert Catalog(commands_partitions=7).commands_partition("foobar") == tm_partition("foobar", 7)
    with pytest.raises(ValueError):
        tm_partition("x", 0)


def test_default_names_are_those_of_the_design() -> None:
    names = [t.name for t in Catalog().topics]
    assert names == [
        "jm.submissions",
        "jm.reports",
        "jm.heartbeats",
        "jm.journal",
        "jm.commands",
        "jm.snapshots",
        "jm.replicas",
        "jm.deadletter",
        "jm.state",
    ]


def test_cluster_id_namespaces_everything() -> None:
    a, b = Catalog("run-a"), Catalog("run-b")
    assert a.journal.name == "run-a.journal"
    for attr in ("transactional_id", "leader_group_id", "redis_prefix", "leader_lease_key"):
        assert getattr(a, attr) != getattr(b, attr)
        assert "run-a" in getattr(a, attr)
    assert Catalog("c1", prefix="test.x").journal.name == "test.x.journal"
    with pytest.raises(ValueError):
        Catalog("bad id/with slash")
    with pytest.raises(ValueError):
        Catalog("jm\n")  # a trailing newline is not part of a valid id


def test_topic_configuration() -> None:
    c = Catalog()
    assert c.journal.partitions == 1
    assert c.journal.config()["retention.ms"] == "-1"
    assert c.journal.config()["cleanup.policy"] == "delete"
    for t in (c.heartbeats, c.snapshots, c.replicas):
        assert t.config()["cleanup.policy"] == "compact"
    assert c.snapshots.max_message_bytes > 1_000_000
    assert Catalog(replication_factor=3).journal.config()["min.insync.replicas"] == "2"


def test_every_event_type_has_exactly_one_topic() -> None:
    c = Catalog()
    for cls in ev.EVENT_CLASSES:
        homes = [t.role for t in c.topics if cls in t.allowed]
        assert len(homes) == 1, (cls.__name__, homes)
    assert c.topic_for(ev.JobSubmitted).role == "submissions"
    assert c.topic_for(ev.TaskManagerHeartbeat).role == "heartbeats"
    assert c.topic_for(ev.LeaderKeepalive).role == "commands"
    assert c.topic("journal") is c.journal


TASK = ev.TaskRef(job_id="job-9", vertex_id="v", subtask_index=0, attempt=0)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (ev.JobCancelRequested(event_id="e", event_time=1, job_id="job-9"), b"job-9"),
        (
            ev.TaskStateChanged(
                event_id="e",
                event_time=1,
                tm_id="tm-1",
                incarnation="i",
                task=TASK,
                state=ev.ExecutionState.RUNNING,
            ),
            b"tm-1",
        ),
        (
            ev.CancelTask(
                event_id="e", event_time=1, epoch=1, tm_id="tm-2", incarnation="i", task=TASK
            ),
            b"tm-2",
        ),
        (
            ev.JobArchived(
                event_id="e",
                event_time=1,
                epoch=1,
                job_id="job-9",
                final_status=ev.JobStatus.FINISHED,
            ),
            b"job-9",
        ),
        (
            ev.TaskStateRecorded(
                event_id="e", event_time=1, epoch=1, task=TASK, state=ev.ExecutionState.FAILED
            ),
            b"job-9",
        ),
        (
            ev.LeaderElected(
                event_id="e", event_time=1, epoch=1, replica_id="r", previous_offset=-1
            ),
            b"jm",
        ),
        (
            ev.ReplicaStatus(
                event_id="e",
                event_time=1,
                replica_id="r2",
                role=ev.ReplicaRole.LEADER,
                epoch=1,
                applied_offset=0,
                lag=0,
                digest="d",
            ),
            b"r2",
        ),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, ev.Event) else "",
)
def test_keys(event: ev.Event, key: bytes) -> None:
    assert Catalog().key_for(event) == key
