"""A coordinator replica: a hot standby that tails the journal, and leads when it holds the lease.

Standby: apply the journal continuously (read_committed) and try the lease
every ``acquire_interval``. Leader: renew the lease every ttl/3 in the
background and run one ``Leader`` term. When the term ends (lease lost,
fenced, any transaction error) the replica drops the producer, the leader's
view and its state, rebuilds from the journal and goes on as a standby. A
journal it cannot read stops the replica (``JournalError``): never guess.

SIGTERM (``stop()``) while leading ends the term and releases the lease at
once, so a standby takes over without waiting for the ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from coordinator.ha.lease import LeaseConfig, RedisLease
from coordinator.runtime import machine
from coordinator.runtime.journal import JournalError, JournalFollower
from coordinator.runtime.leader import Leader, LeaderConfig
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.events import ReplicaRole
from schemas.settings import ClusterSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaConfig:
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    domain: machine.Config = field(default_factory=machine.Config)
    acquire_interval_ms: int = 100
    check_topics: bool = True


class Replica:
    def __init__(
        self,
        settings: ClusterSettings,
        replica_id: str,
        config: ReplicaConfig | None = None,
        on_role: Callable[[ReplicaRole], None] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = Catalog(settings.cluster_id)
        self.replica_id = replica_id
        self.config = config or ReplicaConfig()
        self.role = ReplicaRole.STARTING
        self.terms = 0
        self.leader: Leader | None = None
        self.follower = JournalFollower(settings.bootstrap_servers, self.catalog)
        self._stopping = asyncio.Event()
        self._on_role = on_role
        timeout = self.config.lease.ttl_ms / 3 / 1000
        self._redis = Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.lease = RedisLease(
            self._redis, self.catalog.leader_lease_key, replica_id, self.config.lease
        )

    def _set_role(self, role: ReplicaRole) -> None:
        if role != self.role:
            log.info("%s: %s -> %s", self.replica_id, self.role, role)
            self.role = role
            if self._on_role is not None:
                self._on_role(role)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if self.config.check_topics:
            await kafkaio.check_topics(self.settings.bootstrap_servers, self.catalog)
        await self.follower.start()
        try:
            await self.follower.catch_up()
            self._set_role(ReplicaRole.STANDBY)
            while not self._stopping.is_set():
                if await self.lease.try_acquire():
                    await self._lead()
                    if self._stopping.is_set():
                        break
                    self._set_role(ReplicaRole.STANDBY)
                    self.follower.reset()
                    await self.follower.catch_up()
                else:
                    await self.follower.poll(self.config.acquire_interval_ms)
        finally:
            self._set_role(ReplicaRole.STOPPED)
            await self.lease.release()
            await self.follower.stop()
            await self._redis.aclose()

    async def _lead(self) -> None:
        self.terms += 1
        self._set_role(ReplicaRole.LEADER)
        leader = Leader(
            self.settings.bootstrap_servers,
            self.catalog,
            self.replica_id,
            self.follower,
            lambda: self.lease.held,
            self.config.leader,
            self.config.domain,
        )
        self.leader = leader
        renewing = asyncio.create_task(self._renew())
        term = asyncio.create_task(leader.run())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({term, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if term in done:
                err = term.exception()
                if isinstance(err, JournalError):
                    raise err  # the journal cannot be trusted: stop, never guess
                if err is not None:
                    log.warning("%s steps down: %s: %s", self.replica_id, type(err).__name__, err)
        finally:
            for task in (term, renewing, stopping):
                task.cancel()
            for task in (term, renewing, stopping):
                # The term's outcome was inspected above; here we only wait for it to end.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.lease.release()  # compare-and-delete: a no-op if it is no longer ours
            self.leader = None

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease.renew_interval_s)
            if not await self.lease.renew():
                log.warning("%s could not renew its lease", self.replica_id)
                return
