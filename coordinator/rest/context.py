"""What the REST handlers read: one replica's folded state, metrics and role.

Handlers only read what the replica already holds (its ``StateHolder``, kept
current by the journal follower; its ``MetricsStore``, fed by heartbeats), so
a read never replays the journal. The few answers that need Kafka (the
replicas topic for ``/cluster/leader``, a job's events, a point-in-time
state) go through the callables here, so the handlers stay testable apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from coordinator.runtime import machine
from coordinator.runtime.clock import Clock, SystemClock
from coordinator.runtime.holder import StateHolder
from coordinator.runtime.metrics import MetricsStore
from schemas.events import ReplicaRole
from schemas.settings import ClusterSettings

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from coordinator.rest.history import JournalReader
    from coordinator.runtime.replica import Replica
    from schemas.events import ReplicaStatus

#: ``/readyz`` says ready while the replica is this many journal offsets or
#: fewer behind the journal's end (a standby tailing it is within a poll).
READY_MAX_LAG: Final = 100
#: ``/cluster/leader`` reads the replicas topic at most this often (replicas
#: publish their status every second).
REPLICAS_CACHE_MS: Final = 1_000
#: Log lines ``/jobmanager/log`` keeps (the latest).
LOG_TAIL_LINES: Final = 2_000


class LogTail(logging.Handler):
    """The latest log lines of the process, for ``/jobmanager/log``."""

    def __init__(self, lines: int = LOG_TAIL_LINES) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=lines)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line that does not format is not worth a failure
            self.handleError(record)

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


async def _no_lag() -> int:
    return 0


@dataclass
class RestContext:
    """One replica as the REST API sees it.

    holder: the replica's state holder (``holder.state``, ``holder.last_offset``).
    replica_id / role: who answers and whether it leads (a callable: it changes).
    lag: how many journal offsets the replica is behind (0 for the leader).
    metrics: the latest heartbeat and task metrics of every worker.
    settings: the cluster (Kafka, Redis, cluster id), to produce events and
        read topics; never shown with the Redis password.
    token: the bearer token mutating requests need (None: no token).
    options: the replica's configuration as ``/jobmanager/config`` lists it.
    log_tail: the latest log lines, served by ``/jobmanager/log`` (None: none kept).
    """

    holder: StateHolder
    replica_id: str
    settings: ClusterSettings
    role: Callable[[], ReplicaRole] = lambda: ReplicaRole.STANDBY
    lag: Callable[[], Awaitable[int]] = _no_lag
    metrics: MetricsStore = field(default_factory=MetricsStore)
    token: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    options: dict[str, str] = field(default_factory=dict)
    ready_max_lag: int = READY_MAX_LAG
    log_tail: LogTail | None = None
    #: execution.checkpointing.interval: filled into submissions that set no interval.
    checkpoint_interval_ms: int = 0
    #: historyserver.web.url (no trailing /): the archive ``/history/...`` relays ("": none).
    history_url: str = ""
    #: historyserver.web.timeout: how long a relayed request may take.
    history_timeout_ms: int = 5_000
    _journal: JournalReader | None = field(default=None, init=False, repr=False)
    _history: ClientSession | None = field(default=None, init=False, repr=False)
    _replicas: tuple[float, dict[str, ReplicaStatus]] | None = field(
        default=None, init=False, repr=False
    )
    _replicas_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _started_monotonic_ms: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._started_monotonic_ms = self.clock.monotonic_ms()

    def uptime_ms(self) -> int:
        """Time since this context was made (the monotonic clock: a duration)."""
        return self.clock.monotonic_ms() - self._started_monotonic_ms

    @property
    def journal(self) -> JournalReader:
        """The journal reader of ``/jobs/{id}/events`` and ``/jobs/{id}/state``."""
        from coordinator.rest.history import JournalReader

        if self._journal is None:
            self._journal = JournalReader(self.settings)
        return self._journal

    async def replicas(self) -> dict[str, ReplicaStatus]:
        """Every live replica's latest published status (read at most once a second)."""
        from coordinator.commands.replica import read_replicas

        async with self._replicas_lock:
            now = time.monotonic()
            if self._replicas is None or now - self._replicas[0] > REPLICAS_CACHE_MS / 1000:
                self._replicas = (now, await read_replicas(self.settings))
            return self._replicas[1]

    def history_session(self) -> ClientSession:
        """The HTTP client of the ``/history/...`` relay (made on first use)."""
        from aiohttp import ClientSession

        if self._history is None:
            self._history = ClientSession()
        return self._history

    async def close(self) -> None:
        if self._journal is not None:
            await self._journal.close()
        if self._history is not None:
            await self._history.close()
            self._history = None

    @property
    def state(self) -> machine.State:
        return self.holder.state

    @property
    def offset(self) -> int:
        """The last journal offset the state reflects (-1: none yet)."""
        return self.holder.last_offset

    @property
    def epoch(self) -> int:
        return machine.epoch(self.holder.state)

    def now_ms(self) -> int:
        return self.clock.wall_ms()

    @classmethod
    def of_replica(
        cls,
        replica: Replica,
        metrics: MetricsStore,
        *,
        token: str | None = None,
        options: dict[str, str] | None = None,
        log_tail: LogTail | None = None,
    ) -> RestContext:
        """The context of a running ``Replica`` (``jm coordinator``)."""

        async def lag() -> int:
            if replica.role is ReplicaRole.LEADER:
                return 0  # the leader writes the journal: never behind it
            return await replica.follower.lag()

        return cls(
            holder=replica.follower.holder,
            replica_id=replica.replica_id,
            settings=replica.settings,
            role=lambda: replica.role,
            lag=lag,
            metrics=metrics,
            token=token,
            clock=replica.clock,
            options=dict(options or {}),
            log_tail=log_tail,
        )
