"""The leader: fence, take over, then turn inputs into journaled decisions exactly once.

Order on taking over (DESIGN.md, "Leadership and fencing"):
1. fence: initialise the transactional producer (the cluster's fixed
   ``transactional.id``); this aborts the old leader's open transaction and
   makes its next write fail. Only the lease holder ever gets here.
2. read the journal to its last stable offset;
3. epoch = highest seen + 1; journal ``LeaderElected`` (with the keepalive
   that announces the epoch to every worker partition) and check it is the next
   record after what was read;
4. resume inputs from the offsets committed under the leader group;
5. decide.

The loop: poll a batch of inputs (read_committed), ``decide`` each (pure), then
in ONE transaction produce the journal events, the worker commands, the dead
letters and the consumed input offsets (``send_offsets_to_transaction`` under
the cluster's group id, without group membership). Each event is applied as
``decode(encode(event))``, the very bytes a standby applies, before the next
input is decided. Any error once a transaction began: the state is tainted, so
the caller drops producer and state and rebuilds from the journal.

Batching: ``getmany`` returns as soon as records are there (fetch wait 5 ms),
so an idle leader answers one submission in one poll plus one commit. Under
load, records pile up during a commit and the next poll takes them all, up to
``max_batch`` (500): transactions amortise by themselves, without a linger that
would cost latency when idle. 500 bounds the work (and the replay) a failed
transaction throws away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from coordinator.runtime import machine, snapshots
from coordinator.runtime.edges_gc import EdgeCollector
from coordinator.runtime.journal import JournalError, JournalFollower
from coordinator.runtime.snapshots import SnapshotPolicy
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import Codec, default_codec

log = logging.getLogger(__name__)

# aiokafka 0.14 (pinned) sleeps a fixed 20 ms when AddPartitionsToTxn meets
# CONCURRENT_TRANSACTIONS, which every transaction begun right after a commit does
# (the broker is still writing the previous markers). On the leader's hot path that
# sleep is most of a decision's latency; a 2 ms retry costs one cheap request more.
# docs/benchmarks.md shows the effect (tests/bench/bench_txn.py).
CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002


def tune_aiokafka_transactions() -> None:
    if hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):
        aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_BACKOFF_S


class StepDown(Exception):
    """Leadership ended (lease lost, fenced, transaction failed); rebuild as a standby."""


@dataclass(frozen=True)
class LeaderConfig:
    max_batch: int = 500
    idle_poll_ms: int = 50
    keepalive_interval_ms: int = 1_000
    tick_interval_ms: int = 100
    transaction_timeout_ms: int = 10_000
    retry_backoff_ms: int = 5
    snapshots: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    # Test hook (issue drills): skip the lease check before commit so only Kafka's
    # fencing stands between a frozen leader and the journal. Never set in production.
    skip_lease_check: bool = False
    # Test hook: wait this long inside every input transaction before committing, so a
    # drill can freeze the leader (SIGSTOP) while a transaction is open.
    hold_transaction_ms: int = 0


def now_ms() -> int:
    return int(time.time() * 1000)


class Leader:
    """One term of leadership. Build, ``await run()``; it returns only by raising."""

    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        replica_id: str,
        follower: JournalFollower,
        lease_held: Callable[[], bool],
        config: LeaderConfig | None = None,
        domain_config: machine.Config | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.replica_id = replica_id
        self.follower = follower
        self.lease_held = lease_held
        self.config = config or LeaderConfig()
        self.domain_config = domain_config or machine.Config()
        self.codec = codec or default_codec()
        self.decoder = kafkaio.InputDecoder(catalog, self.codec)
        self.epoch = 0
        self.elected = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._inputs = kafkaio.consumer(bootstrap, fetch_max_wait_ms=5)
        self._view: machine.View | None = None
        self._last_snapshot_ms = 0
        self.edges = EdgeCollector(bootstrap, catalog)

    # ------------------------------------------------------------ takeover

    async def run(self) -> None:
        try:
            await self._take_over()
            await self._loop()
        finally:
            await self._close()

    async def _take_over(self) -> None:
        self._check_lease()
        tune_aiokafka_transactions()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=self.catalog.transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            transaction_timeout_ms=self.config.transaction_timeout_ms,
            # A transaction begun right after a commit meets CONCURRENT_TRANSACTIONS
            # while the broker writes the markers; aiokafka then waits retry_backoff
            # (100 ms by default) before AddOffsetsToTxn: the leader's main latency.
            retry_backoff_ms=self.config.retry_backoff_ms,
        )
        await producer.start()  # InitProducerId: fences every earlier holder of the id
        self._producer = producer
        await self.follower.catch_up()
        read_to = self.follower.last_offset
        self.epoch = machine.epoch(self.follower.state) + 1
        now = now_ms()
        elected = ev.LeaderElected(
            event_id=f"leader:{self.epoch}:{self.replica_id}",
            event_time=now,
            epoch=self.epoch,
            replica_id=self.replica_id,
            previous_offset=read_to,
        )
        self.follower.mark()
        async with self._transaction("LeaderElected"):
            sent = await self._send_journal(elected)
            await self._send_keepalives(now)
        offset = (await sent).offset
        await self.follower.catch_up_to(offset)
        first = self.follower.first_after_mark
        if first is None or first[0] != offset or first[1].event_id != elected.event_id:
            raise StepDown(
                f"LeaderElected epoch {self.epoch} at offset {offset} is not the next journal "
                f"record after {read_to} (first read: {first and (first[0], first[1].event_id)})"
            )
        self._view = machine.new_view(self.epoch, self.replica_id, now, self.domain_config)
        await self._resume_inputs(now)
        self._last_snapshot_ms = now
        self.edges.start()
        self.edges.sweep(self.follower.state)
        self.elected.set()
        log.info("%s leads with epoch %d from journal offset %d", self.replica_id, self.epoch,
                 self.follower.position)  # fmt: skip

    async def _resume_inputs(self, now: int) -> None:
        inputs = [self.catalog.submissions, self.catalog.reports]
        tps = [TopicPartition(t.name, p) for t in inputs for p in range(t.partitions)]
        heartbeat_tps = [
            TopicPartition(self.catalog.heartbeats.name, p)
            for p in range(self.catalog.heartbeats.partitions)
        ]
        await self._inputs.start()
        self._inputs.assign(tps + heartbeat_tps)
        committed = await committed_offsets(self.bootstrap, self.catalog.leader_group_id)
        for tp in tps:
            if tp in committed:
                self._inputs.seek(tp, committed[tp])
            else:
                await self._inputs.seek_to_beginning(tp)
        # Heartbeats are not journaled: only those of the last timeout matter.
        since = now - self.domain_config.heartbeat_timeout_ms
        found = await self._inputs.offsets_for_times({tp: since for tp in heartbeat_tps})
        for tp in heartbeat_tps:
            hit = found.get(tp)
            if hit is not None:
                self._inputs.seek(tp, hit.offset)
            else:
                await self._inputs.seek_to_end(tp)

    # ---------------------------------------------------------------- loop

    async def _loop(self) -> None:
        assert self._view is not None
        last_keepalive = last_tick = ticks = 0
        while True:
            self._check_lease()
            batch = await kafkaio.poll_inputs(
                self._inputs, self.decoder, self.config.idle_poll_ms, self.config.max_batch
            )
            now = now_ms()
            journal: list[ev.JournalEvent] = []
            commands: list[ev.WorkerCommand] = []
            offsets: dict[TopicPartition, int] = {}
            for _record, event in batch.events:
                if isinstance(event, ev.TaskManagerHeartbeat):
                    machine.note_heartbeat(self._view, event, now)
                    continue
                self._decide(machine.decide(self.follower.state, self._view, event, now),
                             journal, commands)  # fmt: skip
            for tp, offset in batch.next_offsets.items():
                if tp.topic != self.catalog.heartbeats.name:
                    offsets[tp] = offset
            if now - last_tick >= self.config.tick_interval_ms:
                last_tick = now
                ticks += 1
                tick_id = f"tick:{self.epoch}:{ticks}"
                self._decide(machine.tick(self.follower.state, self._view, now, tick_id),
                             journal, commands)  # fmt: skip
            keepalive = now - last_keepalive >= self.config.keepalive_interval_ms
            if not (journal or commands or offsets or batch.dead_letters or keepalive):
                continue
            if keepalive:
                last_keepalive = now
            await self._commit(journal, commands, batch.dead_letters, offsets, keepalive, now)
            await self._maybe_snapshot(now)

    async def _maybe_snapshot(self, now: int) -> None:
        policy = self.config.snapshots
        # Journal offsets since the latest snapshot, whoever wrote it: a leader that
        # takes over keeps the cadence (offsets count markers too, close enough).
        since = self.follower.last_offset - self.follower.snapshot_offset
        due = since >= policy.every_events or now - self._last_snapshot_ms >= policy.every_ms
        if since > 0 and due:
            await self.snapshot(now)

    async def snapshot(self, now: int) -> ev.SnapshotTaken:
        """Write the state (as of the last committed journal record) and journal SnapshotTaken."""
        state = self.follower.state
        covered = self.follower.last_offset
        snapshot_id = f"snapshot-{self.epoch}-{covered}"
        parts = snapshots.chunks(state, snapshot_id, covered, self.epoch, now)
        taken = ev.SnapshotTaken(
            event_id=snapshot_id, event_time=now, epoch=self.epoch, snapshot_id=snapshot_id,
            covered_offset=covered, format_version=parts[0].format_version,
            chunk_count=len(parts), digest=machine.digest(state),
        )  # fmt: skip
        async with self._transaction("snapshot transaction") as producer:
            for part in parts:
                value, headers = self.codec.encode(part)
                await producer.send(
                    self.catalog.snapshots.name, value, key=self.catalog.key_for(part),
                    headers=headers, partition=0,
                )  # fmt: skip
            sent = await self._send_journal(taken)
        value, _ = self.codec.encode(taken)
        self.follower.apply_live(self.codec.decode(value))
        self.follower.advance_to((await sent).offset)
        self.follower.snapshot_offset = self.follower.last_offset  # SnapshotTaken's own
        self._last_snapshot_ms = now
        log.info("snapshot %s: %d chunks, covers journal offset %d", snapshot_id, len(parts),
                 covered)  # fmt: skip
        return taken

    def _decide(
        self,
        decision: machine.Decision,
        journal: list[ev.JournalEvent],
        commands: list[ev.WorkerCommand],
    ) -> None:
        """Apply the decision's events (through the codec) before the next input is decided."""
        events, cmds = decision
        for event in events:
            value, _ = self.codec.encode(event)
            self.follower.apply_live(self.codec.decode(value))
            journal.append(event)
        commands.extend(cmds)

    async def _commit(
        self,
        journal: list[ev.JournalEvent],
        commands: list[ev.WorkerCommand],
        dead_letters: list[ev.DeadLetter],
        offsets: dict[TopicPartition, int],
        keepalive: bool,
        now: int,
    ) -> None:
        async with self._transaction("transaction") as producer:
            sent = [await self._send_journal(event) for event in journal]
            for command in commands:
                await self._send_command(command)
            if keepalive:
                await self._send_keepalives(now)
            await kafkaio.send_dead_letters(producer, self.catalog, dead_letters, self.codec)
            if offsets:
                await producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()},
                    self.catalog.leader_group_id,
                )
            if self.config.hold_transaction_ms and (journal or offsets):
                await producer.flush()  # the records are in the log, uncommitted
                log.info("holding an open transaction for %d ms (test hook)",
                         self.config.hold_transaction_ms)  # fmt: skip
                await asyncio.sleep(self.config.hold_transaction_ms / 1000)
        if sent:
            self.follower.advance_to((await sent[-1]).offset)
        for event in journal:
            self.edges.observe(event)

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[AIOKafkaProducer]:
        """One Kafka transaction, checked against the lease before it begins and before
        it commits. Any failure inside is a StepDown: the state is tainted, never retry."""
        producer = self._producer
        assert producer is not None
        self._check_lease()
        try:
            async with producer.transaction():
                yield producer
                self._check_lease()
        except StepDown:
            raise
        except Exception as err:
            raise StepDown(f"{what} failed: {type(err).__name__}: {err}") from err

    # --------------------------------------------------------------- sends

    async def _send_journal(self, event: ev.JournalEvent) -> asyncio.Future[RecordMetadata]:
        assert self._producer is not None
        value, headers = self.codec.encode(event)
        future: asyncio.Future[RecordMetadata] = await self._producer.send(
            self.catalog.journal.name, value, key=self.catalog.key_for(event), headers=headers,
            partition=0,
        )  # fmt: skip
        return future

    async def _send_command(self, command: ev.WorkerCommand) -> None:
        assert self._producer is not None
        value, headers = self.codec.encode(command)
        tm_id = machine.command_target(command)
        await self._producer.send(
            self.catalog.commands.name, value, key=tm_id.encode(), headers=headers,
            partition=self.catalog.commands_partition(tm_id),
        )  # fmt: skip

    async def _send_keepalives(self, now: int) -> None:
        """One keepalive per commands partition: workers learn the epoch and that a leader lives."""
        assert self._producer is not None
        for partition in range(self.catalog.commands.partitions):
            keepalive = ev.LeaderKeepalive(
                event_id=f"keepalive:{self.epoch}:{now}:{partition}",
                event_time=now,
                epoch=self.epoch,
                leader_replica_id=self.replica_id,
                # Workers check their own timeouts against these (schemas/timing.py).
                heartbeat_timeout_ms=self.domain_config.heartbeat_timeout_ms,
                keepalive_interval_ms=self.config.keepalive_interval_ms,
            )
            value, headers = self.codec.encode(keepalive)
            await self._producer.send(
                self.catalog.commands.name, value, key=self.catalog.cluster_id.encode(),
                headers=headers, partition=partition,
            )  # fmt: skip

    def _check_lease(self) -> None:
        if not self.config.skip_lease_check and not self.lease_held():
            raise StepDown("lease lost")

    async def _close(self) -> None:
        await self.edges.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=5)
            except Exception:  # a fenced producer may fail to stop cleanly; it is dropped anyway
                log.debug("producer stop failed", exc_info=True)
        try:
            await self._inputs.stop()
        except Exception:
            log.debug("input consumer stop failed", exc_info=True)


async def committed_offsets(
    bootstrap: str, group_id: str, timeout_s: float = 15.0
) -> dict[TopicPartition, int]:
    """Input offsets committed by earlier leaders' transactions under the leader group.

    Retries retriable errors: on a new cluster the offsets topic is created by the
    first lookup of a group coordinator, which answers "not available" meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            try:
                found = await admin.list_consumer_group_offsets(group_id)
                break
            except KafkaError as err:
                if not err.retriable or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0}


__all__ = ["JournalError", "Leader", "LeaderConfig", "StepDown", "committed_offsets"]
