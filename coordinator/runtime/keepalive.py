"""Leader keepalives from a thread of their own, so a busy leader loop cannot starve them.

Every ``interval`` the sender writes one ``LeaderKeepalive`` per commands
partition: workers learn the epoch and that a leader lives. It runs its own
event loop and producer in a thread, which gets the interpreter every few
milliseconds whatever the leader's loop does, so the gaps stay near the
interval on a busy host. It sends only while ``alive()`` (the lease is held:
the lease is itself renewed only while the leader loop makes progress, so a
stuck leader's keepalives stop within the lease ttl and workers stop trusting
it). Keepalives are not transactional: a deposed leader's late keepalive
carries an older epoch, which workers drop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.runtime.clock import LeaderClock
from coordinator.runtime.outbox import Outbox
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeepaliveInfo:
    """Who sends keepalives, and the timing workers check their own against
    (schemas/timing.py)."""

    epoch: int
    replica_id: str
    heartbeat_timeout_ms: int
    keepalive_interval_ms: int


def keepalive(info: KeepaliveInfo, now: int, seq: int, partition: int) -> ev.LeaderKeepalive:
    return ev.LeaderKeepalive(
        event_id=f"keepalive:{info.epoch}:{seq}:{partition}",
        event_time=now,
        epoch=info.epoch,
        leader_replica_id=info.replica_id,
        heartbeat_timeout_ms=info.heartbeat_timeout_ms,
        keepalive_interval_ms=info.keepalive_interval_ms,
    )


class KeepaliveSender:
    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        outbox: Outbox,
        info: KeepaliveInfo,
        clock: LeaderClock,
        alive: Callable[[], bool],
    ) -> None:
        self.bootstrap = bootstrap
        self.outbox = outbox  # the leader's: keepalives are signed like every command
        self.partitions = catalog.commands.partitions
        self.info = info
        self.interval_s = info.keepalive_interval_ms / 1000
        self.clock = clock
        self.alive = alive
        self.sent = 0  # rounds sent (one keepalive per partition each)
        self.failed = 0
        self.max_gap_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"keepalive-{info.replica_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """No round after this one (does not wait for the thread)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        producer = kafkaio.producer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await producer.start()
        try:
            seq = 0
            last = time.monotonic()
            while not self._stop.is_set():
                await asyncio.sleep(min(0.05, self.interval_s))
                if time.monotonic() - last < self.interval_s:
                    continue
                if not self.alive():
                    continue  # the lease is gone: the leader steps down at its next check
                gap, last = time.monotonic() - last, time.monotonic()
                self.max_gap_s = max(self.max_gap_s, gap)
                seq += 1
                now = self.clock.now_ms()
                try:
                    futures = []
                    for partition in range(self.partitions):
                        record = self.outbox.keepalive(
                            keepalive(self.info, now, seq, partition), partition
                        )
                        futures.append(await producer.send(
                            record.topic, record.value, key=record.key, headers=record.headers,
                            partition=record.partition,
                        ))  # fmt: skip
                    await asyncio.gather(*futures)
                    self.sent += 1
                except Exception as err:  # the next round tries again
                    self.failed += 1
                    log.warning("keepalive round %d not sent: %s: %s", seq, type(err).__name__, err)
        finally:
            try:
                await asyncio.wait_for(producer.stop(), timeout=5)
            except Exception:
                log.debug("keepalive producer stop failed", exc_info=True)
