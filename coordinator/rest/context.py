"""What the REST handlers read: one replica's folded state, metrics and role.

Handlers only read what the replica already holds (its ``StateHolder``, kept
current by the journal follower; its ``MetricsStore``, fed by heartbeats), so
a read never replays the journal. The few answers that need Kafka (the
replicas topic for ``/cluster/leader``, a job's events, a point-in-time
state) go through the callables here, so the handlers stay testable apart.
"""

from __future__ import annotations

import time
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
    from coordinator.runtime.replica import Replica

#: ``/readyz`` says ready while the replica is this many journal offsets or
#: fewer behind the journal's end (a standby tailing it is within a poll).
READY_MAX_LAG: Final = 100


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
    log_path: the file ``/jobmanager/log`` serves (None: not known).
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
    log_path: str | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    ready_max_lag: int = READY_MAX_LAG

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
        log_path: str | None = None,
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
            log_path=log_path,
        )
