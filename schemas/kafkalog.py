"""aiokafka's log, told calmly: what a healthy cluster does is not a WARNING.

Kafka 3.9 answers a produce request to a partition whose previous transaction
is still being completed with ``NOT_ENOUGH_REPLICAS``, even on a single broker
with every replica in sync (back-to-back transactions on the journal do it all
the time). aiokafka retries the batch, as it should, and logs a WARNING for
each retry: dozens per minute that say nothing is wrong. ``install`` puts a
filter on aiokafka's producer sender that turns these retries into at most
one INFO line a minute, with how many there were. The consumer's offset lookup
for a partition whose leader is still being elected (an edge topic just created
on a busy broker) is logged as an ERROR and retried: the same treatment. Every
other record passes unchanged. The coordinator and the worker install it where they configure
logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: The logger aiokafka's produce retries are logged on.
SENDER_LOGGER: Final = "aiokafka.producer.sender"
#: The logger aiokafka's consumer logs a failed offset lookup on (then retries it).
FETCHER_LOGGER: Final = "aiokafka.consumer.fetcher"
#: At most one summary line per this many seconds.
SUMMARY_EVERY_S: Final = 60.0


@dataclass(frozen=True)
class Rule:
    """Which aiokafka records are a normal retry: on `logger`, at `level`, whose
    format contains `marker` and whose text names one of `errors`; `summary` is the
    INFO line that replaces them (%s: the error, %d: how many since the last line)."""

    logger: str
    level: int
    marker: str
    errors: tuple[str, ...]
    summary: str


#: Produce retries on NOT_ENOUGH_REPLICAS (Kafka 3.9's answer to back-to-back transactions).
PRODUCE_RETRIES: Final = Rule(
    SENDER_LOGGER, logging.WARNING, "retrying", ("NotEnoughReplicasError",),
    "Kafka answered %s to %d produce request(s) since the last such line; retried. "
    "Kafka 3.9 reports a transaction that starts while the previous one on the "
    "partition completes this way: normal under load, not a replication problem",
)  # fmt: skip
#: A consumer's offset lookup for a partition whose leader is still being elected (a
#: topic just created, on a busy broker): aiokafka logs it as an ERROR, then retries.
OFFSET_RETRIES: Final = Rule(
    FETCHER_LOGGER, logging.ERROR, "Failed fetch offsets",
    ("NotLeaderForPartitionError", "UnknownTopicOrPartitionError", "LeaderNotAvailableError"),
    "Kafka answered %s to %d offset lookup(s) since the last such line; retried. "
    "A partition just created has no leader for a moment: normal, not a failure",
)  # fmt: skip
RULES: Final = (PRODUCE_RETRIES, OFFSET_RETRIES)


class CalmRetries(logging.Filter):
    """Drops aiokafka's records that `rule` describes; lets one INFO line a minute
    through instead, counting the retries since the last one."""

    def __init__(
        self,
        every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        rule: Rule = PRODUCE_RETRIES,
    ) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.rule = rule
        self.suppressed = 0  # retries since the last summary line
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        rule = self.rule
        if record.levelno != rule.level or rule.marker not in str(record.msg):
            return True
        text = record.getMessage()
        error = next((e for e in rule.errors if e in text), None)
        if error is None:
            return True
        self.suppressed += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        if not logging.getLogger().isEnabledFor(logging.INFO):
            return False  # the process logs WARNING and above: the summary is not wanted
        record.msg = rule.summary
        record.args = (error.removesuffix("Error"), self.suppressed)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        self.suppressed = 0
        self._last = now
        return True


def install() -> list[CalmRetries]:
    """Put a filter for each of RULES on its logger (once per process); returns them."""
    installed = []
    for rule in RULES:
        logger = logging.getLogger(rule.logger)
        calm = next(
            (f for f in logger.filters if isinstance(f, CalmRetries) and f.rule == rule), None
        )
        if calm is None:
            calm = CalmRetries(rule=rule)
            logger.addFilter(calm)
        installed.append(calm)
    return installed
