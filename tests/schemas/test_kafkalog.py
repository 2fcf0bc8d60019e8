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


def test_install_once_on_the_sender_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(kafkalog.SENDER_LOGGER)
    calm = kafkalog.install()
    try:
        assert kafkalog.install() is calm
        assert logger.filters.count(calm) == 1
        with caplog.at_level(logging.INFO):
            for _ in range(5):
                logger.warning(RETRY, "tp", "<class 'aiokafka.errors.NotEnoughReplicasError'>")
        assert [r.levelname for r in caplog.records] == ["INFO"]
    finally:
        logger.removeFilter(calm)
