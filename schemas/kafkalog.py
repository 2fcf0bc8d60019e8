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

A broker outage (killed, restarting, unreachable) is told in three kinds of line on
``jm.kafka``: one when Kafka stops answering, a summary every 30 s while it stays away,
one when it answers again; aiokafka's per-attempt connection errors in between are
counted, not written, and a broker that refused a connection is tried again after a
backoff that doubles up to 2 s (``install_outage``).
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
#: Produce retries to a partition whose leader is still being elected or just moved (an
#: edge topic a task created a moment before, on a busy broker): retried by aiokafka.
PRODUCE_LEADER_RETRIES: Final = Rule(
    SENDER_LOGGER, logging.WARNING, "retrying",
    ("NotLeaderForPartitionError", "LeaderNotAvailableError"),
    "Kafka answered %s to %d produce request(s) since the last such line; retried. "
    "A partition just created or whose leader just moved has no leader for a moment: "
    "normal, not a failure",
)  # fmt: skip
#: A consumer's offset lookup for a partition whose leader is still being elected (a
#: topic just created, on a busy broker): aiokafka logs it as an ERROR, then retries.
OFFSET_RETRIES: Final = Rule(
    FETCHER_LOGGER, logging.ERROR, "Failed fetch offsets",
    ("NotLeaderForPartitionError", "UnknownTopicOrPartitionError", "LeaderNotAvailableError"),
    "Kafka answered %s to %d offset lookup(s) since the last such line; retried. "
    "A partition just created has no leader for a moment: normal, not a failure",
)  # fmt: skip
RULES: Final = (PRODUCE_RETRIES, PRODUCE_LEADER_RETRIES, OFFSET_RETRIES)


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
    """Put a filter for each of RULES on its logger (once per process), and the outage
    filter and reconnect backoff (``install_outage``); returns the RULES' filters."""
    install_outage()
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


# ------------------------------------------------------------------ outages

#: Text in an aiokafka record that says a broker did not answer (refused, reset, timed
#: out, or not connected): during an outage every client says so many times a second.
OUTAGE_MARKERS: Final = (
    "Unable connect to", "Unable to update metadata", "Unable to request metadata",
    "NodeNotReadyError", "KafkaConnectionError", "Connect call failed", "Connection refused",
    "Connection reset", "ConnectionError", "RequestTimedOutError", "CoordinatorNotAvailable",
    "NotCoordinatorError", "Coordinator dead", "marking coordinator dead",
)  # fmt: skip
#: How often a summary line is written while an outage lasts.
OUTAGE_SUMMARY_EVERY_S: Final = 30.0
#: A broker that refused a connection is tried again after this long, then twice as
#: long each time it refuses again, up to RECONNECT_BACKOFF_MAX_S (like Kafka's own
#: clients' reconnect.backoff.ms / reconnect.backoff.max.ms, which aiokafka lacks).
RECONNECT_BACKOFF_S: Final = 0.05
RECONNECT_BACKOFF_MAX_S: Final = 2.0
#: The outage ends once a connection works and no error came for this long (clients
#: whose backoff has not run out yet still fail for a moment after the broker is back).
OUTAGE_QUIET_S: Final = 3.0
#: The logger the outage lines are written on.
OUTAGE_LOGGER: Final = "jm.kafka"


class BrokerOutage(logging.Filter):
    """One line when Kafka stops answering, a summary every `every_s` while it stays away,
    one line when it answers again; aiokafka's per-attempt connection errors in between
    are counted, not written. `failed`/`answered` come from the clients' connection
    attempts (``install_backoff``), the records from aiokafka's loggers."""

    def __init__(self, every_s: float = OUTAGE_SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.log = logging.getLogger(OUTAGE_LOGGER)
        self.since: float | None = None  # when the outage started; None: Kafka answers
        self.nodes: set[object] = set()  # the brokers that did not answer
        self.suppressed = 0  # aiokafka records dropped since the last line
        self.total = 0  # ... since the outage started
        self._last = 0.0  # when the last line was written
        self._error = 0.0  # when the last connection error came
        self.latest = ""  # its text

    def _start(self, what: str) -> None:
        now = self.clock()
        self.since, self._last, self.suppressed, self.total = now, now, 0, 0
        self.log.warning("Kafka does not answer (%s); retrying with a backoff up to %.0f s, "
                         "a summary every %.0f s until it answers again", what,
                         RECONNECT_BACKOFF_MAX_S, self.every_s)  # fmt: skip

    def _summary(self) -> None:
        now = self.clock()
        if self.since is not None and now - self._last >= self.every_s:
            self.log.warning("Kafka still does not answer after %.0f s (broker(s) %s); "
                             "%d connection errors since the last line, the latest: %s",
                             now - self.since, _names(self.nodes), self.suppressed,
                             self.latest)  # fmt: skip
            self.suppressed, self._last = 0, now

    def failed(self, node: object, err: object) -> None:
        """A connection attempt to broker `node` failed."""
        self.nodes.add(node)
        self._error, self.latest = self.clock(), f"broker {node}: {err}"
        if self.since is None:
            self._start(self.latest)
        self._summary()

    def answered(self, node: object) -> None:
        """A connection to broker `node` was made."""
        self.nodes.discard(node)
        if self.since is None or self.nodes or self.clock() - self._error < OUTAGE_QUIET_S:
            return
        self.log.warning("Kafka answers again after %.1f s; %d connection errors were not "
                         "written", self._error - self.since, self.total)  # fmt: skip
        self.since = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name == OUTAGE_LOGGER:
            return True
        text = record.getMessage()
        if not any(marker in text for marker in OUTAGE_MARKERS):
            return True
        self._error, self.latest = self.clock(), f"{record.name}: {text[:200]}"
        if self.since is None:
            self._start(text[:200])
        self.suppressed += 1
        self.total += 1
        self._summary()
        return False


def _names(nodes: set[object]) -> str:
    return ", ".join(sorted(str(n) for n in nodes)) or "-"


#: aiokafka's loggers that report connection failures.
OUTAGE_LOGGERS: Final = (
    "aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.producer.sender",
    "aiokafka.producer.producer", "aiokafka.consumer.fetcher", "aiokafka.consumer.consumer",
    "aiokafka.consumer.group_coordinator", "aiokafka.admin.client", "aiokafka.util",
)  # fmt: skip


def install_outage(every_s: float = OUTAGE_SUMMARY_EVERY_S) -> BrokerOutage:
    """The process's BrokerOutage filter on aiokafka's loggers and the growing reconnect
    backoff on its client (once per process); returns the filter."""
    first = logging.getLogger(OUTAGE_LOGGERS[0])
    outage = next((f for f in first.filters if isinstance(f, BrokerOutage)), None)
    if outage is None:
        outage = BrokerOutage(every_s=every_s)
        for name in OUTAGE_LOGGERS:
            logging.getLogger(name).addFilter(outage)
        install_backoff(outage)
    return outage


def install_backoff(outage: BrokerOutage) -> None:
    """Wrap aiokafka's ``AIOKafkaClient._get_conn``: a broker that refused a connection
    is not tried again before its backoff ends (RECONNECT_BACKOFF_S, doubling up to
    RECONNECT_BACKOFF_MAX_S; reset by a connection that works). In between the caller
    sees no connection, as it would after a refusal, and retries on its own schedule."""
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._get_conn
    if getattr(original, "_jm_backoff", False):
        return

    async def get_conn(self: AIOKafkaClient, node_id: object, **kw: object) -> object:
        waits: dict[object, tuple[float, float]] = self.__dict__.setdefault("_jm_waits", {})
        now = time.monotonic()
        delay, until = waits.get(node_id, (0.0, 0.0))
        if now < until:
            return None
        conn = await original(self, node_id, **kw)
        if conn is None:
            delay = min(RECONNECT_BACKOFF_MAX_S, max(RECONNECT_BACKOFF_S, delay * 2))
            waits[node_id] = (delay, time.monotonic() + delay)
            outage.failed(node_id, "no connection")
        else:
            waits.pop(node_id, None)
            outage.answered(node_id)
        return conn

    get_conn._jm_backoff = True  # type: ignore[attr-defined]
    AIOKafkaClient._get_conn = get_conn
