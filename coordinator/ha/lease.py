"""The leader lease in Redis: ``SET key token NX PX ttl``, compare-and-extend, compare-and-delete.

Redis only says who *should* lead; Kafka's transactional fencing refuses every
other writer. The lease is still what keeps two replicas from trying at once,
so a holder trusts it only until a local deadline: the moment the request that
set or extended it was *sent*, plus the ttl, minus a safety margin for clock
rate differences. Past that deadline, or after any failed renewal, the holder
must stop deciding at once, whatever Redis says later.

The token is random per acquisition; it identifies the holder to Redis, it is
not a fencing token (the leader epoch in the journal is).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] = lease key, ARGV[1] = token, ARGV[2] = ttl ms. Extends only our own lease.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] = lease key, ARGV[1] = token. Deletes only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease(Protocol):
    """The port the replica uses; RedisLease is its adapter."""

    @property
    def held(self) -> bool: ...

    async def try_acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...


@dataclass(frozen=True)
class LeaseConfig:
    ttl_ms: int = 3_000
    # Trust the lease for ttl * (1 - margin) after the request was sent.
    safety_margin: float = 0.1
    # Renew only while the holder's loop has made progress within this long: a
    # leader whose loop is stuck lets the lease lapse (None: ttl_ms, at least 2 s).
    progress_timeout_ms: int | None = None
    # Renew only while the holder's steps end within this long (a step may wait on
    # Kafka, each wait bounded by the leader's step timeout): a leader whose loop runs
    # but whose step never ends lets the lease lapse (None: 4 x ttl, at least 12 s).
    step_timeout_ms: int | None = None

    @property
    def progress_timeout_s(self) -> float:
        """Explicit, else the ttl but at least 2 s: a tiny ttl must not turn one slow
        step of a healthy leader into a failover."""
        if self.progress_timeout_ms is not None:
            return self.progress_timeout_ms / 1000
        return max(self.ttl_ms, 2_000) / 1000

    @property
    def step_timeout_s(self) -> float:
        """Explicit, else 4 x the ttl but at least 12 s (a commit on a loaded broker)."""
        if self.step_timeout_ms is not None:
            return self.step_timeout_ms / 1000
        return max(4 * self.ttl_ms, 12_000) / 1000

    @property
    def renew_interval_s(self) -> float:
        return self.ttl_ms / 3 / 1000


class RedisLease:
    """One holder's view of the lease key. One object per holder, never shared."""

    def __init__(self, client: Redis, key: str, holder: str, config: LeaseConfig) -> None:
        self._client = client
        self.key = key
        self.holder = holder
        self.config = config
        self._token: str | None = None
        self._valid_until = 0.0
        self.error: str | None = None  # why the last attempt could not reach a verdict
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def held(self) -> bool:
        """True while the lease is ours and its local deadline has not passed."""
        return self._token is not None and time.monotonic() < self._valid_until

    def remaining_s(self) -> float:
        return max(0.0, self._valid_until - time.monotonic()) if self._token else 0.0

    def _trust_until(self, sent_at: float) -> float:
        return sent_at + self.config.ttl_ms / 1000 * (1 - self.config.safety_margin)

    async def try_acquire(self) -> bool:
        """SET NX PX: take the lease if nobody holds it. Errors count as 'not acquired'
        and are kept in ``error`` (None after an attempt Redis answered)."""
        token = f"{self.holder}:{uuid.uuid4().hex}"
        sent_at = time.monotonic()
        try:
            ok = await self._client.set(self.key, token, nx=True, px=self.config.ttl_ms)
        except RedisError as err:
            self.error = f"{type(err).__name__}: {err}"
            return False
        self.error = None
        if ok:
            self._token = token
            self._valid_until = self._trust_until(sent_at)
        return bool(ok)

    def extended(self, token: str, ok: bool | None, sent_at: float) -> bool:
        """Record the outcome of a compare-and-extend of `token` sent at `sent_at`
        (by ``renew`` or a ``LeaseRenewer``); drops the lease unless it is still ours.

        ``ok`` None: Redis did not answer (a timeout, a broken connection). The lease
        is kept, untouched, while its local deadline (set by the last answered
        renewal) has not passed, so one slow reply on a loaded host does not cost
        the leadership; the caller tries again. Only a refusal or the deadline
        drops it."""
        if ok is None and self._token == token and time.monotonic() < self._valid_until:
            return True
        if ok and self._token == token and time.monotonic() < self._valid_until:
            self._valid_until = self._trust_until(sent_at)
            return True
        if self._token == token:
            self.drop()
        return False

    async def renew(self) -> bool:
        """Compare-and-extend. False (and the lease is dropped locally) if it is not ours."""
        token = self._token
        if token is None:
            return False
        sent_at = time.monotonic()
        try:
            extended: bool | None = bool(
                await self._extend(keys=[self.key], args=[token, self.config.ttl_ms])
            )
        except RedisError:
            extended = None
        return self.extended(token, extended, sent_at)

    def drop(self) -> None:
        """Forget the lease locally (lost, or stepping down)."""
        self._token = None
        self._valid_until = 0.0

    async def release(self) -> None:
        """Compare-and-delete so a standby can take over at once (graceful handover)."""
        token, self._token = self._token, None
        self._valid_until = 0.0
        if token is None:
            return
        with contextlib.suppress(RedisError):  # if Redis is gone it expires within the ttl
            await self._release(keys=[self.key], args=[token])

    async def current_holder(self) -> str | None:
        value = await self._client.get(self.key)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.rsplit(":", 1)[0]


class Progress:
    """When the holder's loop last ran and its work last moved (monotonic seconds).

    ``beat`` from the loop's work (a step, a decision, a transaction); ``tick`` from a
    task of the same loop that only shows the loop runs. A loop blocked in code stops
    both; a step that waits on Kafka stops only the beats."""

    def __init__(self) -> None:
        self.last = self.ticked = time.monotonic()
        self.what = "started"

    def beat(self, what: str = "loop") -> None:
        self.last = self.ticked = time.monotonic()
        self.what = what

    def tick(self) -> None:
        self.ticked = time.monotonic()

    def idle_s(self) -> float:
        """Since the work last moved."""
        return time.monotonic() - self.last

    def loop_idle_s(self) -> float:
        """Since the loop last ran (a beat or a tick)."""
        return time.monotonic() - self.ticked


#: How soon a renewal Redis did not answer is tried again (the lease's deadline is
#: at most a renew interval plus a socket timeout away by then).
RETRY_UNANSWERED_S: Final = 0.1


class LeaseRenewer:
    """Renews a held lease from a thread of its own, every ttl/3, while the leader
    loop makes progress.

    The leader's event loop can be busy for a while (a large batch, a takeover
    catching up); a renewal scheduled on that loop would run late and let a
    healthy leader's lease lapse. A thread gets the interpreter every few
    milliseconds whatever the loop does, so renewals stay on time. But a thread
    would also keep the lease of a leader whose loop is stuck (a blocked loop, a
    hung commit): so it renews only while the loop has run within
    ``progress_timeout`` and its work has moved within ``step_timeout``
    (``Progress``: a commit that waits on a loaded broker is not a stuck loop);
    otherwise it lets the lease run out, and a standby takes over. A refused
    renewal, or none answered before the deadline, drops the lease (``held``
    turns False) and the thread ends: the leader then steps down at once.
    """

    def __init__(self, lease: RedisLease, redis_url: str, progress: Progress | None = None) -> None:
        self.lease = lease
        self.progress = progress or Progress()
        timeout = lease.config.renew_interval_s
        self._client = SyncRedis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._extend = self._client.register_script(_EXTEND)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-renewer-{lease.holder}", daemon=True
        )
        self.renewals = 0
        self.withheld = 0
        self.unanswered = 0  # renewals Redis did not answer in time (the lease was kept)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease.config.renew_interval_s + 1)
        self._client.close()

    def stuck(self) -> str | None:
        """Why the holder is stuck (its loop blocked, or a step that does not end), or
        None while it moves."""
        config, progress = self.lease.config, self.progress
        loop_idle, step_idle = progress.loop_idle_s(), progress.idle_s()
        if loop_idle > config.progress_timeout_s:
            return f"leader loop stuck for {loop_idle:.1f}s"
        if step_idle > config.step_timeout_s:
            return f"leader step stuck for {step_idle:.1f}s (the loop runs)"
        return None

    def _run(self) -> None:
        interval = self.lease.config.renew_interval_s
        wait_s = interval
        while not self._stop.wait(wait_s):
            wait_s = interval
            token = self.lease.token
            if token is None:
                return
            stuck = self.stuck()
            if stuck:
                if self.withheld == 0:
                    log.warning("%s (last: %s): not renewing the lease", stuck,
                                self.progress.what)  # fmt: skip
                self.withheld += 1
                continue
            if self.withheld:
                log.info("leader loop moves again; renewing the lease")
                self.withheld = 0
            sent_at = time.monotonic()
            try:
                extended: bool | None = bool(
                    self._extend(keys=[self.lease.key], args=[token, self.lease.config.ttl_ms])
                )
            except RedisError as err:
                extended = None
                wait_s = min(interval, RETRY_UNANSWERED_S)  # soon: the deadline is near
                self.unanswered += 1
                log.info("lease renewal not answered (%s: %s); %.1fs of the lease left, retrying",
                         type(err).__name__, err, self.lease.remaining_s())  # fmt: skip
            if not self.lease.extended(token, extended, sent_at):
                return
            if extended:
                self.renewals += 1
