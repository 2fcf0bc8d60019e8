"""Who may take part: jobs kept out of protected topics, workers kept to an allow-list.

Pure: the domain driven like the leader drives it (tests/domain/cluster.py).
docs/security.md describes both rules.
"""

import dataclasses

import pytest

from coordinator.domain import DomainConfig
from schemas.events import (
    DisconnectTaskManager,
    InputRejected,
    JobAccepted,
    JobRejected,
    JobSubmitted,
    TaskManagerJoined,
    TaskManagerLost,
)
from schemas.validation import check_topics, protected_prefixes, validate_job_submitted
from tests.domain.cluster import Cluster, submission

PROTECTED = protected_prefixes("jm", ["billing.", "audit"])


def with_config(s: JobSubmitted, vertex: int, **config: str) -> JobSubmitted:
    vertices = list(s.job_graph.vertices)
    vertices[vertex] = dataclasses.replace(vertices[vertex], config=config)
    graph = dataclasses.replace(s.job_graph, vertices=tuple(vertices))
    return dataclasses.replace(s, job_graph=graph)


def test_protected_prefixes_are_the_clusters_own_kafkas_then_the_configured() -> None:
    assert PROTECTED == ("jm.", "__", "billing.", "audit")
    assert protected_prefixes("jm", [" jm. ", "", "x."]) == ("jm.", "__", "x.")


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({"topic": "jm.journal"}, "jm.journal"),
        ({"topic": "jm.commands"}, "jm.commands"),
        ({"topic": "jm.edge.job.a0.src.dst"}, "jm.edge.job.a0.src.dst"),
        ({"topic": "jm.sink-commits"}, "jm.sink-commits"),
        ({"topic": "jm.state"}, "jm.state"),
        ({"topic": "__consumer_offsets"}, "__consumer_offsets"),
        ({"topic": "billing.invoices"}, "billing.invoices"),
        ({"topic": "audit-log"}, "audit-log"),
        ({"input_topic": "jm.submissions"}, "jm.submissions"),
        ({"topics": "orders, jm.reports"}, "jm.reports"),
    ],
)
def test_a_config_naming_a_protected_topic_is_a_problem(
    config: dict[str, str], refused: str
) -> None:
    job = with_config(submission("j", (("sink", "kafka_sink", 1),)), 0, **config)
    (problem,) = check_topics(job.job_graph, PROTECTED)
    assert problem.startswith("vertices[0].config.")
    assert repr(refused) in problem


@pytest.mark.parametrize(
    "config",
    [
        {"topic": "orders"},
        {"topic": "jm-counts"},  # '-', not '.': not the cluster's
        {"topic": "jmx.orders"},
        {"topic": "billing"},  # the prefix is "billing.", this is another topic
        {"key_field": "jm.journal"},  # not a key naming a topic
    ],
)
def test_a_config_naming_other_topics_is_fine(config: dict[str, str]) -> None:
    job = with_config(submission("j", (("sink", "kafka_sink", 1),)), 0, **config)
    assert list(check_topics(job.job_graph, PROTECTED)) == []


def test_the_coordinator_rejects_a_job_writing_its_journal_with_the_reason() -> None:
    c = Cluster(config=DomainConfig(protected_topic_prefixes=PROTECTED))
    c.register("tm-a", operators=("sequence", "kafka_sink"))
    job = with_config(
        submission("rogue", (("src", "sequence", 1), ("out", "kafka_sink", 1))),
        1,
        topic="jm.journal",
    )
    (rejected,) = c.feed(job).events
    assert isinstance(rejected, JobRejected)
    assert rejected.job_id == "rogue" and rejected.input_event_id == job.event_id
    assert "vertices[1].config.topic: topic 'jm.journal'" in rejected.reason
    assert "protected prefix 'jm.'" in rejected.reason
    assert "rogue" not in c.state.jobs and c.commands == []


def test_the_same_job_on_its_own_topic_is_accepted() -> None:
    c = Cluster(config=DomainConfig(protected_topic_prefixes=PROTECTED))
    c.register("tm-a", operators=("sequence", "kafka_sink"))
    job = with_config(
        submission("fine", (("src", "sequence", 1), ("out", "kafka_sink", 1))), 1, topic="counts"
    )
    assert isinstance(c.feed(job).events[0], JobAccepted)


def test_validation_checks_no_topic_without_prefixes() -> None:
    job = with_config(submission("j", (("sink", "kafka_sink", 1),)), 0, topic="jm.journal")
    assert validate_job_submitted(job) == []
    assert validate_job_submitted(job, protected_topic_prefixes=PROTECTED) != []


ALLOWED = DomainConfig(allowed_workers=frozenset({"tm-a"}))


def test_a_worker_off_the_allow_list_is_rejected_and_gets_no_slot() -> None:
    c = Cluster(config=ALLOWED)
    (rejected,) = c.register("tm-rogue", slots=50, operators=("map",)).events
    assert isinstance(rejected, InputRejected)
    assert rejected.tm_id == "tm-rogue" and rejected.input_event_type == "TaskManagerRegistered"
    assert "not on this coordinator's list of allowed workers" in rejected.reason
    assert "tm-rogue" not in c.state.workers
    joined = c.register("tm-a", slots=2, operators=("map",)).events
    assert [type(e) for e in joined] == [TaskManagerJoined]
    accepted = c.submit("j", (("src", "map", 2),)).events
    assert isinstance(accepted[0], JobAccepted)
    assert {x.tm_id for x in c.state.jobs["j"].executions.values()} == {"tm-a"}


def test_an_empty_allow_list_lets_any_worker_in() -> None:
    c = Cluster()
    assert [type(e) for e in c.register("anyone").events] == [TaskManagerJoined]


def test_a_registered_worker_left_off_a_new_list_is_declared_lost_and_told() -> None:
    c = Cluster()
    c.register("tm-old")
    c.heartbeat_all()
    c.config = ALLOWED
    c.elect("replica-2")  # a coordinator restarted with the list
    c.heartbeat_all()
    lost = [e for e in c.tick().events if isinstance(e, TaskManagerLost)]
    assert [(e.tm_id, "not on this coordinator's list" in e.reason) for e in lost] == [
        ("tm-old", True)
    ]
    assert "tm-old" not in c.state.workers
    told = [x for x in c.commands if isinstance(x, DisconnectTaskManager)]
    assert [x.tm_id for x in told] == ["tm-old"]
    (again,) = c.register("tm-old", incarnation="inc-2").events
    assert isinstance(again, InputRejected)
