"""schemas.kafkalog: aiokafka's NotEnoughReplicas retries become one calm INFO line a
minute; every other record passes unchanged (issue 11, item 10)."""

from __future__ import annotations

import logging

import pytest

from schemas import kafkalog

RETRY = "Got error produce response on topic-partition %s, retrying. Error: %s"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(kafkalog.SENDER_LOGGER, level, __file__, 1, msg, args, None)


def not_enough_replicas() -> logging.LogRecord:
    error = "<class 'aiokafka.errors.NotEnoughReplicasError'>"
    return record(RETRY, "TopicPartition(topic='jm.journal', partition=0)", error)


@pytest.fixture(autouse=True)
def root_at_info() -> object:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def test_retries_become_one_info_line_a_minute() -> None:
    clock = Clock()
    calm = kafkalog.CalmRetries(clock=clock)
    first = not_enough_replicas()
    assert calm.filter(first)
    assert (first.levelno, first.levelname) == (logging.INFO, "INFO")
    assert "NotEnoughReplicas to 1 produce request(s)" in first.getMessage()
    passed = []
    for second in range(1, 60):  # a retry every second for the rest of the minute
        clock.now = float(second)
        passed.append(calm.filter(not_enough_replicas()))
    assert not any(passed)
    clock.now = 60.0
    summary = not_enough_replicas()
    assert calm.filter(summary)
    assert "NotEnoughReplicas to 60 produce request(s)" in summary.getMessage()
    assert summary.levelno == logging.INFO


@pytest.mark.parametrize(
    "other",
    [
        record(RETRY, "tp", "<class 'aiokafka.errors.NotLeaderForPartitionError'>"),
        record("Topic %s not found in cluster metadata", "x", level=logging.ERROR),
        record("Unable connect to node with id %s", 1),
    ],
)
def test_other_records_pass_unchanged(other: logging.LogRecord) -> None:
    calm = kafkalog.CalmRetries(clock=Clock())
    level, text = other.levelno, other.getMessage()
    assert calm.filter(other)
    assert (other.levelno, other.getMessage()) == (level, text)


def test_offset_lookups_on_a_partition_without_leader_are_calmed() -> None:
    calm = kafkalog.CalmRetries(clock=Clock(), rule=kafkalog.OFFSET_RETRIES)
    failed = logging.LogRecord(
        kafkalog.FETCHER_LOGGER, logging.ERROR, __file__, 1, "Failed fetch offsets from %s: %s",
        (1, "[Error 6] NotLeaderForPartitionError: TopicPartition(topic='e', partition=1)"), None,
    )  # fmt: skip
    assert calm.filter(failed)
    assert failed.levelno == logging.INFO
    assert "NotLeaderForPartition to 1 offset lookup(s)" in failed.getMessage()
    other = logging.LogRecord(
        kafkalog.FETCHER_LOGGER, logging.ERROR, __file__, 1, "Failed fetch offsets from %s: %s",
        (1, "[Error 29] TopicAuthorizationFailedError"), None,
    )  # fmt: skip
    assert calm.filter(other) and other.levelno == logging.ERROR  # a real problem stays loud


def test_install_once_on_each_logger(caplog: pytest.LogCaptureFixture) -> None:
    # Fresh retry filters: another test of the same process may have installed them and
    # already logged their first line.
    for rule in kafkalog.RULES:
        logger = logging.getLogger(rule.logger)
        for f in [f for f in logger.filters if isinstance(f, kafkalog.CalmRetries)]:
            logger.removeFilter(f)
    installed = kafkalog.install()
    try:
        assert kafkalog.install() == installed
        for calm in installed:
            assert logging.getLogger(calm.rule.logger).filters.count(calm) == 1
        logger = logging.getLogger(kafkalog.SENDER_LOGGER)
        # Both levels explicit: the root's (the filter asks it) and the sender's, which
        # the CLI's in-process runs of other tests set to CRITICAL on the aiokafka logger.
        with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger=logger.name):
            for _ in range(5):
                logger.warning(RETRY, "tp", "<class 'aiokafka.errors.NotEnoughReplicasError'>")
        assert [r.levelname for r in caplog.records] == ["INFO"]
    finally:
        for calm in installed:
            logging.getLogger(calm.rule.logger).removeFilter(calm)


def test_an_outage_is_one_line_a_summary_and_one_line_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = kafkalog.BrokerOutage(every_s=30, clock=clock)
    text = "Unable connect to node with id %s: %s"
    refused = logging.LogRecord("aiokafka.client", logging.ERROR, __file__, 1, text,
                                (1, "refused"), None)  # fmt: skip
    other = logging.LogRecord("aiokafka.client", logging.ERROR, __file__, 1, "something else",
                              None, None)  # fmt: skip
    with caplog.at_level(logging.INFO, logger=kafkalog.OUTAGE_LOGGER):
        for _ in range(100):  # 10 s of aiokafka's errors at 10 a second
            assert not outage.filter(refused)
            outage.failed(1, "refused")
            clock.now += 0.1
        assert outage.filter(other)  # anything else passes
        clock.now += 25  # 35 s into the outage: one summary
        assert not outage.filter(refused)
        outage.answered(1)  # an error just now: not over yet
        clock.now += kafkalog.OUTAGE_QUIET_S
        outage.answered(1)
        outage.answered(1)
    lines = [r.getMessage() for r in caplog.records if r.name == kafkalog.OUTAGE_LOGGER]
    assert len(lines) == 3, lines
    assert lines[0].startswith("Kafka does not answer (Unable connect to node with id 1")
    assert lines[1].startswith("Kafka still does not answer after 35 s (broker(s) 1); 101 ")
    assert lines[2].startswith("Kafka answers again after 35.0 s; 101 connection errors")


def test_a_produce_retry_while_a_new_partition_gets_its_leader_is_one_calm_line() -> None:
    """An edge topic created a moment before: aiokafka retries NotLeaderForPartition on
    produce and logs a WARNING each time; the filter lets one INFO summary through."""
    clock = Clock()
    calm = kafkalog.CalmRetries(clock=clock, rule=kafkalog.PRODUCE_LEADER_RETRIES)
    args = ("TopicPartition(topic='c.edge.j.a0.keyed.count', partition=1)",
            "<class 'aiokafka.errors.NotLeaderForPartitionError'>")  # fmt: skip
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    try:
        first = logging.LogRecord(kafkalog.SENDER_LOGGER, logging.WARNING, __file__, 1, RETRY,
                                  args, None)  # fmt: skip
        assert calm.filter(first) and first.levelno == logging.INFO
        assert "NotLeaderForPartition to 1 produce request(s)" in first.getMessage()
        again = logging.LogRecord(kafkalog.SENDER_LOGGER, logging.WARNING, __file__, 1, RETRY,
                                  args, None)  # fmt: skip
        assert not calm.filter(again)  # within the minute: dropped, counted
    finally:
        root.setLevel(level)
