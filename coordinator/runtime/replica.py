"""A coordinator replica: a hot standby that tails the journal, and leads when it holds the lease.

Standby: apply the journal continuously (read_committed) and try the lease
every ``acquire_interval``. Leader: renew the lease every ttl/3 in the
background and run one ``Leader`` term. When the term ends (lease lost,
fenced, any transaction error) the replica drops the producer, the leader's
view and its state, rebuilds from the journal and goes on as a standby, trying
the lease again only after ``rejoin_delay_ms`` (a standby first). A
journal it cannot read stops the replica (``JournalError``): never guess.

SIGTERM (``stop()``) while leading ends the term and releases the lease at
once, so a standby takes over without waiting for the ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from coordinator.ha.lease import LeaseConfig, LeaseRenewer, Progress, RedisLease
from coordinator.runtime import machine, memory, snapshots
from coordinator.runtime.clock import Clock, SystemClock
from coordinator.runtime.heartbeat_feed import HeartbeatFeed
from coordinator.runtime.holder import StateHolder
from coordinator.runtime.journal import JournalError, JournalFollower
from coordinator.runtime.leader import Leader, LeaderConfig
from coordinator.runtime.metrics import MetricsStore
from coordinator.runtime.telemetry import CoordinatorInstruments, LeaderTelemetry
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import default_codec
from schemas.events import ReplicaRole
from schemas.settings import ClusterSettings
from schemas.telemetry.providers import Telemetry

log = logging.getLogger(__name__)

#: How long a replica waits for an ended term to close before it goes on as a standby.
TERM_CLOSE_S = 15.0


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a finished task's outcome as seen (its exception was handled, or is moot)."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class ReplicaConfig:
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    domain: machine.Config = field(default_factory=machine.Config)
    acquire_interval_ms: int = 100
    status_interval_ms: int = 1_000
    check_topics: bool = True
    use_snapshots: bool = True
    # While Redis cannot be used, try again after this long, doubling up to the max.
    redis_retry_ms: int = 200
    redis_retry_max_ms: int = 5_000
    # After its term ends (not by stop), a replica contends for the lease again only
    # after this long (None: the lease's ttl), so a standby takes over first: a leader
    # that stepped down for a stuck step, polling right as its own lease ran out, won the
    # lease back term after term (a test saw it three times in a row). Like Flink's
    # ZooKeeper election, where a revoked contender rejoins at the back of the queue.
    rejoin_delay_ms: int | None = None


class Replica:
    def __init__(
        self,
        settings: ClusterSettings,
        replica_id: str,
        config: ReplicaConfig | None = None,
        on_role: Callable[[ReplicaRole], None] | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = Catalog(settings.cluster_id)
        self.replica_id = replica_id
        self.config = config or ReplicaConfig()
        self.role = ReplicaRole.STARTING
        self.terms = 0
        self.leader: Leader | None = None
        self.clock = clock or SystemClock()
        self.refused_inputs = 0  # over all terms
        self.unknown_heartbeats = 0  # over all terms
        # Raises SigningKeysError without keys unless told to run unsigned.
        self.keys = settings.keyring("coordinator")
        log.info("%s: signing keys %s", replica_id, self.keys.describe())
        self.follower = JournalFollower(settings.bootstrap_servers, self.catalog, keys=self.keys)
        self._stopping = asyncio.Event()
        self._on_role = on_role
        self._status = StatusPublisher(settings.bootstrap_servers, self.catalog, self)
        #: volatile worker and task metrics from jm.heartbeats, whatever the role
        #: (never in the state: replay stays deterministic).
        self.metrics = MetricsStore()
        self.heartbeat_feed = HeartbeatFeed(
            settings.bootstrap_servers,
            self.catalog,
            self.metrics,
            lambda: self.follower.state.workers,
            self.clock,
            keys=self.keys,
        )
        self.snapshot_used: str | None = None
        #: True while the state is rebuilt from the journal (telemetry reports nothing)
        self.replaying = False
        self.last_lag = 0  # the journal lag last published in the replica's status
        self.telemetry = telemetry
        self.instruments = None if telemetry is None else CoordinatorInstruments(telemetry, self)
        self._redis_error: str | None = None
        self._redis_failures = 0
        self._redis_logged = 0.0
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
            self._status.poke()
            if self._on_role is not None:
                self._on_role(role)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if self.config.check_topics:
            await kafkaio.check_topics(self.settings.bootstrap_servers, self.catalog)
        await self.follower.start()
        await self._status.start()
        try:
            await self.rebuild()
            # After the first rebuild: the feed keeps heartbeats of registered workers only.
            await self.heartbeat_feed.start()
            self._set_role(ReplicaRole.STANDBY)
            rejoin_at = 0.0
            while not self._stopping.is_set():
                if time.monotonic() < rejoin_at:
                    await self.follower.poll(self.config.acquire_interval_ms)
                elif await self.lease.try_acquire():
                    self._redis_ok()
                    await self._lead()
                    if self._stopping.is_set():
                        break
                    self._set_role(ReplicaRole.STANDBY)
                    await self.rebuild()
                    delay_ms = self.config.rejoin_delay_ms
                    if delay_ms is None:
                        delay_ms = self.lease.config.ttl_ms
                    rejoin_at = time.monotonic() + delay_ms / 1000
                    log.info("%s: contends for the lease again in %.1fs (a standby first)",
                             self.replica_id, delay_ms / 1000)  # fmt: skip
                elif self.lease.error is not None:
                    await self.follower.poll(self._redis_failed(self.lease.error))
                else:
                    self._redis_ok()
                    await self.follower.poll(self.config.acquire_interval_ms)
        finally:
            self._set_role(ReplicaRole.STOPPED)
            await self.lease.release()
            await self.heartbeat_feed.stop()
            await self._status.stop()
            await self.follower.stop()
            await self._redis.aclose()

    @property
    def problem(self) -> str | None:
        """What keeps this replica from working normally, for ``jm replicas``."""
        if self._redis_error is not None:
            return f"cannot use Redis ({self._redis_failures} attempts): {self._redis_error}"
        return None

    def _redis_failed(self, error: str) -> int:
        """Log why Redis cannot be used (at once, then when it changes or every 30 s);
        returns how long to wait before trying again (doubling backoff)."""
        self._redis_failures += 1
        now = time.monotonic()
        if error != self._redis_error or now - self._redis_logged >= 30:
            log.warning("%s: cannot use Redis for the leader lease, so it cannot lead: %s "
                        "(attempt %d; check the Redis URL, password and that Redis runs)",
                        self.replica_id, error, self._redis_failures)  # fmt: skip
            self._redis_logged = now
            if error != self._redis_error:
                self._redis_error = error
                self._status.poke()
        retry: int = self.config.redis_retry_ms * 2 ** min(self._redis_failures - 1, 10)
        return min(retry, self.config.redis_retry_max_ms)

    def _redis_ok(self) -> None:
        if self._redis_error is not None:
            log.info("%s: Redis usable again after %d failed attempts", self.replica_id,
                     self._redis_failures)  # fmt: skip
            self._status.poke()
        self._redis_error = None
        self._redis_failures = 0

    async def rebuild(self) -> None:
        """Fresh state from the latest readable snapshot plus the journal tail (or a full
        replay): what a standby does at start and after stepping down."""
        self.replaying = True
        try:
            loaded = await snapshots.restore(
                self.follower, self.settings.bootstrap_servers, self.catalog,
                use_snapshot=self.config.use_snapshots, keys=self.keys,
            )  # fmt: skip
        finally:
            self.replaying = False
        self.snapshot_used = None if loaded is None else loaded.snapshot_id
        if loaded is not None:
            log.info("%s: state from snapshot %s (covers offset %d)", self.replica_id,
                     loaded.snapshot_id, loaded.covered_offset)  # fmt: skip

    async def _lead(self) -> None:
        self.terms += 1
        self._set_role(ReplicaRole.LEADER)
        progress = Progress()
        leader = Leader(
            self.settings.bootstrap_servers,
            self.catalog,
            self.replica_id,
            self.follower,
            lambda: self.lease.held,
            self.config.leader,
            self.config.domain,
            clock=self.clock,
            progress=progress,
            keys=self.keys,
            telemetry=self._term_telemetry(),
        )
        self.leader = leader
        renewer = LeaseRenewer(self.lease, self.settings.redis_url, progress)
        renewer.start()
        term = asyncio.create_task(leader.run())
        stopping = asyncio.create_task(self._stopping.wait())
        lost = asyncio.create_task(self._lease_lost(leader))
        ticker = asyncio.create_task(self._tick(progress))
        try:
            done, _ = await asyncio.wait(
                {term, stopping, lost}, return_when=asyncio.FIRST_COMPLETED
            )
            if lost in done and term not in done:
                # The term did not notice on its own: it waits in an await (a Kafka call
                # after a SIGSTOP/SIGCONT) and would check the lease only after it. A
                # lost lease ends the term now; it writes nothing more (fenced anyway).
                log.warning("%s steps down: StepDown: lease lost (the term was waiting "
                            "after %r)", self.replica_id, progress.what)  # fmt: skip
            elif term in done:
                # A term that ended by a cancel nobody asked for (a library leaking
                # one while the term closed) is a step-down like any other, never
                # the end of the replica: exception() would raise that cancel here.
                err = asyncio.CancelledError("term ended cancelled") if term.cancelled() \
                    else term.exception()  # fmt: skip
                if isinstance(err, JournalError):
                    raise err  # the journal cannot be trusted: stop, never guess
                if err is not None:
                    log.warning("%s steps down: %s: %s", self.replica_id, type(err).__name__, err)
        finally:
            tasks = (term, stopping, lost, ticker)
            for task in tasks:
                task.cancel()
                # The term's outcome was inspected above; here we only wait for it to end.
                task.add_done_callback(_retrieve)
            # At most TERM_CLOSE_S for the term: one resumed by SIGCONT after its lease
            # was lost once stayed in its close past a minute (a drill saw it), the
            # replica stuck as LEADER. Its producer is fenced by the new leader and its
            # close said nothing more first (Leader._close): it is left to end alone.
            await asyncio.wait(tasks, timeout=TERM_CLOSE_S)
            if not term.done():
                log.error("%s: the ended term did not close within %.0fs; left to end on "
                          "its own (fenced: it writes nothing more)", self.replica_id,
                          TERM_CLOSE_S)  # fmt: skip
            await asyncio.to_thread(renewer.stop)
            await self.lease.release()  # compare-and-delete: a no-op if it is no longer ours
            self.refused_inputs += leader.counters.refused_inputs
            self.unknown_heartbeats += leader.unknown_heartbeats
            self.leader = None

    async def _tick(self, progress: Progress) -> None:
        """Shows the renewer that the loop runs while a step waits on Kafka (a loop
        blocked in code stops this too)."""
        every = min(0.25, self.lease.config.renew_interval_s / 4)
        while True:
            progress.tick()
            await asyncio.sleep(every)

    async def _lease_lost(self, leader: Leader) -> None:
        """Returns once the lease is no longer held (never, while the leader's hooks
        skip the lease check: a test of Kafka's fencing on its own)."""
        every = min(0.1, self.lease.config.renew_interval_s / 4)
        while leader.hooks.skip_lease_check or self.lease.held:  # noqa: ASYNC110 - a deadline, no event
            await asyncio.sleep(every)

    def _term_telemetry(self) -> LeaderTelemetry | None:
        if self.telemetry is None or self.instruments is None:
            return None
        return LeaderTelemetry(
            self.telemetry, self.instruments, self.catalog.cluster_id, self.replica_id
        )


class CommittedDigest:
    """(offset, digest) of a holder's committed state, recomputed only when it changed.
    While the leader has decided events waiting for their commit, the last committed
    pair is repeated: a digest always matches the journal up to its offset.

    The digest walks the whole state (every subtask of every job): it runs in a
    thread, so the event loop (the leader's decisions and its progress beats) is
    never blocked by it. A walk during which the state changed is thrown away and
    the last pair repeated; the next publish tries again."""

    def __init__(self) -> None:
        self._cache: tuple[int, int, str] = (-2, -1, "")
        self.discarded = 0

    def _key(self, holder: StateHolder) -> tuple[int, int]:
        return holder.last_offset, holder.version

    async def of(self, holder: StateHolder) -> tuple[int, str]:
        key = self._key(holder)
        if self._cache[:2] != key and holder.committed:
            state = holder.state
            try:
                digest = await asyncio.to_thread(machine.digest, state)
            except RuntimeError:  # a dict changed size under the walk
                digest = None
            memory.release_free_memory()
            if digest is not None and self._key(holder) == key and holder.committed:
                self._cache = (*key, digest)
            else:
                self.discarded += 1
        return self._cache[0], self._cache[2]


class StatusPublisher:
    """Publishes the replica's ReplicaStatus to the compacted replicas topic every
    interval and at once on every role change (``poke``)."""

    def __init__(self, bootstrap: str, catalog: Catalog, replica: Replica) -> None:
        self.catalog = catalog
        self.replica = replica
        self._producer = kafkaio.producer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._digests = CommittedDigest()
        self._stopped = False
        self.published = 0

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self._producer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with contextlib.suppress(Exception):
                await self.publish()  # the final STOPPED status
        await self._producer.stop()

    async def _run(self) -> None:
        interval = self.replica.config.status_interval_ms / 1000
        while not self._stopped:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
            # that arrives as the awaited event is set (gh-86296), and stop() does both.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            if self._stopped:
                return
            self._wake.clear()
            try:
                await self.publish()
            except Exception:  # status is best effort; the replica's work goes on
                log.warning("replica status not published", exc_info=True)

    async def publish(self) -> None:
        replica = self.replica
        follower = replica.follower
        leading = replica.role == ReplicaRole.LEADER
        # The leader writes the journal: it is never behind it. A standby is behind by
        # end offset minus position (offsets, not events: markers make them gappy).
        lag = 0 if leading else await follower.lag()
        replica.last_lag = lag
        applied_offset, digest = await self._digests.of(follower.holder)
        leader = replica.leader
        foreign = follower.foreign_count
        refused = replica.refused_inputs
        unknown_heartbeats = replica.unknown_heartbeats
        if leader is not None:
            foreign += leader.counters.foreign_journal_records
            refused += leader.counters.refused_inputs
            unknown_heartbeats += leader.unknown_heartbeats
        status = ev.ReplicaStatus(
            event_id=f"status:{replica.replica_id}:{self.published}",
            event_time=replica.clock.wall_ms(),
            replica_id=replica.replica_id,
            role=replica.role,
            epoch=machine.epoch(follower.state),
            applied_offset=applied_offset,
            lag=lag,
            digest=digest,
            foreign_records=foreign,
            refused_inputs=refused,
            problem=replica.problem,
            unknown_heartbeats=unknown_heartbeats,
        )
        value, headers = default_codec().encode(status)
        topic, key = self.catalog.replicas.name, self.catalog.key_for(status)
        headers = replica.keys.sign("replicas", topic, key, value, headers)
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        self.published += 1
