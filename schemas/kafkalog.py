"""aiokafka's log, told calmly: what a healthy cluster does is not a WARNING.

Kafka 3.9 answers a produce request to a partition whose previous transaction
is still being completed with ``NOT_ENOUGH_REPLICAS``, even on a single broker
with every replica in sync (back-to-back transactions on the journal do it all
the time). aiokafka retries the batch, as it should, and logs a WARNING for
each retry: dozens per minute that say nothing is wrong. ``install`` puts a
filter on aiokafka's producer sender that turns these retries into at most
one INFO line a minute, with how many there were; every other record passes
unchanged. The coordinator and the worker install it where they configure
logging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

#: The logger aiokafka's produce retries are logged on.
SENDER_LOGGER: Final = "aiokafka.producer.sender"
#: At most one summary line per this many seconds.
SUMMARY_EVERY_S: Final = 60.0
#: The retries this filter calms (error class names as aiokafka logs them).
CALM_ERRORS: Final = ("NotEnoughReplicasError",)


class CalmRetries(logging.Filter):
    """Drops aiokafka's "retrying" WARNINGs for CALM_ERRORS; lets one INFO line a
    minute through instead, counting the retries since the last one."""

    def __init__(
        self, every_s: float = SUMMARY_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.suppressed = 0  # retries since the last summary line
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or "retrying" not in str(record.msg):
            return True
        text = record.getMessage()
        error = next((e for e in CALM_ERRORS if e in text), None)
        if error is None:
            return True
        self.suppressed += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        if not logging.getLogger().isEnabledFor(logging.INFO):
            return False  # the process logs WARNING and above: the summary is not wanted
        record.msg = (
            "Kafka answered %s to %d produce request(s) since the last such line; retried. "
            "Kafka 3.9 reports a transaction that starts while the previous one on the "
            "partition completes this way: normal under load, not a replication problem"
        )
        record.args = (error.removesuffix("Error"), self.suppressed)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        self.suppressed = 0
        self._last = now
        return True


def install() -> CalmRetries:
    """Put the filter on aiokafka's sender logger (once per process); returns it."""
    logger = logging.getLogger(SENDER_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, CalmRetries):
            return existing
    calm = CalmRetries()
    logger.addFilter(calm)
    return calm
