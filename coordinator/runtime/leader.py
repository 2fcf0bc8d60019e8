"""The leader: fence, take over, then turn inputs into journaled decisions exactly once.

Takeover (``_take_over``; DESIGN.md, "Leadership and fencing"):
1. fence: initialise the transactional producer (the cluster's fixed
   ``transactional.id``); this aborts the old leader's open transaction and
   makes its next write fail. Only the lease holder ever gets here.
2. read the journal to its last stable offset;
3. epoch = highest seen + 1; journal ``LeaderElected`` (with the keepalive
   that announces the epoch to every worker partition) and check it is the next
   record after what was read;
4. resume inputs from the offsets committed under the leader group;
5. start the keepalive sender, then the steady loop.

The steady loop (``_loop``) repeats three steps:
- ``_poll``: read a batch of inputs (read_committed) and the clock: a ``Step``;
- ``_decide``: no I/O. Feed the heartbeats to the view, decide each input
  (pure), check that every record the decision produces fits its topic, and
  apply its journal events (``decode(encode(e))``, the very bytes a standby
  applies) to the ``StateHolder`` before the next input is decided. A decision
  that raises, or that would produce an oversized record, is replaced by a
  rejection of that one input with the reason: the input's offset is
  committed with its rejection and the leader carries on in the same epoch;
- ``_commit``: ONE transaction with the journal events, the worker commands,
  the dead letters and the consumed input offsets (``send_offsets_to_transaction``
  under the cluster's group id, without group membership). Every step of it
  has a timeout. Any error once a transaction began: the state is tainted, so
  the caller drops producer and state and rebuilds from the journal.

Time comes from a ``LeaderClock`` read once per step (monotonic durations,
see coordinator/runtime/clock.py). Each step ``beat``s the lease's progress:
the lease is renewed only while the loop moves. Keepalives go out from a
thread of their own (coordinator/runtime/keepalive.py), so a busy loop cannot
starve them; they stop with the lease.

Batching: ``getmany`` returns as soon as records are there (the broker answers a
waiting fetch when records come: ``kafkaio.CONTROL_FETCH_WAIT_MS``),
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
from aiokafka.errors import KafkaError
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from coordinator.domain import SavepointWritten
from coordinator.ha.lease import Progress
from coordinator.runtime import edge_topics, machine, memory, snapshots
from coordinator.runtime.clock import Clock, LeaderClock, SystemClock
from coordinator.runtime.edge_topics import EdgeTopics
from coordinator.runtime.holder import ApplyError, StateHolder
from coordinator.runtime.hooks import TestHooks
from coordinator.runtime.journal import ForeignRecord, JournalError, JournalFollower
from coordinator.runtime.keepalive import KeepaliveInfo, KeepaliveSender, keepalive
from coordinator.runtime.outbox import Outbox, Record, RecordTooLarge
from coordinator.runtime.ratelog import RateLimitedLog
from coordinator.runtime.snapshots import SnapshotPolicy
from coordinator.runtime.stateio import StateIO
from coordinator.runtime.telemetry import LeaderTelemetry
from schemas import events as ev
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import Codec, default_codec
from schemas.signing import KeyRing

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
    # Every transaction step (begin, the sends, the offsets, commit) must finish
    # within this; a step that does not ends the term (the state is tainted).
    step_timeout_ms: int = 10_000
    retry_backoff_ms: int = 5
    # Input offsets of steps that decided nothing (acknowledgements of a checkpoint
    # still waiting for others, repeated reports) ride the next transaction that
    # carries something, or are committed alone once they are this old: a transaction
    # per such step would keep the leader committing while the inputs it waits for
    # arrive. A new leader re-reads at most this much of them, to the same effect
    # (nothing; an acknowledgement of an older term's checkpoint is refused anyway).
    offset_commit_delay_ms: int = 100
    snapshots: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    # Where checkpoint state is (the workers' setting): savepoints are exported
    # from it, discarded state is deleted from it (coordinator/runtime/stateio.py).
    state_checkpoints_dir: str = "kafka"
    # How long a user-code artifact outlives the last job using it before it is
    # deleted from the blob store (coordinator/domain/artifact_gc.py).
    artifact_retention_ms: int = 3_600_000
    # Ended runs' edge topics are deleted once no run was decided for this long (or
    # the oldest waited the second): deleting competes with deploys on the broker.
    edge_delete_quiet_ms: int = edge_topics.DELETE_QUIET_MS
    edge_delete_max_wait_ms: int = edge_topics.DELETE_MAX_WAIT_MS


@dataclass
class Step:
    """One turn of the loop: the inputs read and the time they are decided at."""

    now: int
    batch: kafkaio.InputBatch


@dataclass
class Counters:
    """What the leader contained instead of stepping down (logged, in ``jm replicas``)."""

    refused_inputs: int = 0  # decisions that raised or did not fit: input rejected
    failed_ticks: int = 0
    dropped_heartbeats: int = 0
    foreign_journal_records: int = 0


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
        *,
        clock: Clock | None = None,
        progress: Progress | None = None,
        hooks: TestHooks | None = None,
        keys: KeyRing,
        telemetry: LeaderTelemetry | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.replica_id = replica_id
        self.follower = follower
        self.holder: StateHolder = follower.holder  # the one owner of the state
        self.lease_held = lease_held
        self.config = config or LeaderConfig()
        self.domain_config = domain_config or machine.Config()
        self.codec = codec or default_codec()
        self.system_clock = clock or SystemClock()
        self.clock = LeaderClock(self.system_clock)
        self.progress = progress or Progress()
        self.hooks = hooks or TestHooks.from_env()
        self.keys = keys
        self.decoder = kafkaio.InputDecoder(catalog, self.codec, keys)
        self.outbox = Outbox(catalog, self.codec, keys)
        self.counters = Counters()
        self.epoch = 0
        self.elected = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._inputs = kafkaio.consumer(bootstrap, fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS)
        self._view: machine.View | None = None
        self._last_snapshot_ms = 0
        self._next_journal_offset = -1  # where our next journal record should land
        self._foreign_letters: list[ev.DeadLetter] = []
        self._deferred_offsets: dict[TopicPartition, int] = {}
        self._deferred_since: int | None = None
        self._keepalives: KeepaliveSender | None = None
        self._closing = False  # set when the term ends: nothing more is said for it
        self._said = RateLimitedLog(log)  # one INFO line per dead letter or rejection
        self.edges = EdgeTopics(bootstrap, catalog, edge_topics.DeletionSchedule(
            self.config.edge_delete_quiet_ms, self.config.edge_delete_max_wait_ms
        ))  # fmt: skip
        self.state_io: StateIO | None = None
        #: spans and counters of this term (None: telemetry off, nothing is recorded)
        self.telemetry = telemetry

    @property
    def unknown_heartbeats(self) -> int:
        """Heartbeats of this term from no registered worker incarnation (ignored)."""
        return self._view.ignored_heartbeats if self._view is not None else 0

    # ------------------------------------------------------------ takeover

    async def run(self) -> None:
        try:
            await self._take_over()
            await self._loop()
        finally:
            await self._close()

    async def _take_over(self) -> None:
        self._check_lease()
        steps = [("lease won", self.system_clock.wall_ms())]
        tune_aiokafka_transactions()
        producer = kafkaio.producer(
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
            # The largest record any topic takes (dead letters keep whole inputs).
            max_request_size=self.outbox.max_request_size,
        )
        await producer.start()  # InitProducerId: fences every earlier holder of the id
        self._producer = producer
        self.progress.beat("fenced")
        steps.append(("fenced", self.system_clock.wall_ms()))
        self.follower.on_progress = self.progress.beat
        try:
            await self.follower.catch_up()
        finally:
            self.follower.on_progress = None
        memory.release_free_memory()
        read_to = self.holder.last_offset
        steps.append(("journal read", self.system_clock.wall_ms()))
        previous_leader = self.holder.state.leader_replica_id
        self.epoch = machine.epoch(self.holder.state) + 1
        # The term's clock never stamps before the journal's latest event.
        self.clock = LeaderClock(self.system_clock, not_before_ms=self.holder.max_event_time)
        now = self.clock.now_ms()
        elected = ev.LeaderElected(
            event_id=machine.leader_elected_id(self.epoch, self.replica_id),
            event_time=now,
            epoch=self.epoch,
            replica_id=self.replica_id,
            previous_offset=read_to,
        )
        self.holder.watch_after(read_to)
        self.follower.on_progress = self.progress.beat
        async with self._transaction("LeaderElected"):
            sent = await self._send(self.outbox.journal(elected))
            for partition in range(self.catalog.commands.partitions):
                ping = keepalive(self._keepalive_info(), now, 0, partition)
                await self._send(self.outbox.keepalive(ping, partition))
        offset = (await sent).offset
        await self.follower.catch_up_to(offset)
        self.follower.on_progress = None
        first = self.holder.first_watched
        if first is None or first.offset != offset or first.event.event_id != elected.event_id:
            seen = first and (first.offset, first.event.event_id)
            raise StepDown(
                f"LeaderElected epoch {self.epoch} at offset {offset} is not the next journal "
                f"record after {read_to} (first read: {seen})"
            )
        steps.append(("LeaderElected committed", self.system_clock.wall_ms()))
        self._next_journal_offset = self.holder.last_offset + 2  # after the commit marker
        self._view = machine.new_view(self.epoch, self.replica_id, now, self.domain_config)
        await self._resume_inputs(now)
        self._last_snapshot_ms = now
        self.edges.start()
        self.edges.sweep(self.holder.state)
        self.state_io = StateIO(
            self.config.state_checkpoints_dir, self.catalog, self.bootstrap, self.epoch, self.keys
        )
        self.state_io.scan(self.holder.state)  # savepoints an older leader left unwritten
        self._keepalives = KeepaliveSender(
            self.bootstrap, self.catalog, self.outbox, self._keepalive_info(), self.clock,
            alive=self._alive,
        )  # fmt: skip
        self._keepalives.start()
        self.elected.set()
        self.progress.beat("elected")
        if self.telemetry is not None:
            self.telemetry.took_over(self.epoch, self.epoch - 1, previous_leader, steps,
                                     self.system_clock.wall_ms())  # fmt: skip
        log.info("%s leads with epoch %d from journal offset %d", self.replica_id, self.epoch,
                 self.follower.position)  # fmt: skip

    def _keepalive_info(self) -> KeepaliveInfo:
        return KeepaliveInfo(
            self.epoch, self.replica_id, self.domain_config.heartbeat_timeout_ms,
            self.config.keepalive_interval_ms,
        )  # fmt: skip

    def _alive(self) -> bool:
        return (
            not self._closing
            and self._producer is not None
            and (self.hooks.skip_lease_check or self.lease_held())
        )

    async def _resume_inputs(self, now: int) -> None:
        inputs = [self.catalog.submissions, self.catalog.reports]
        tps = [TopicPartition(t.name, p) for t in inputs for p in range(t.partitions)]
        heartbeat_tps = [
            TopicPartition(self.catalog.heartbeats.name, p)
            for p in range(self.catalog.heartbeats.partitions)
        ]
        await self._inputs.start()
        committed = await committed_offsets(self.bootstrap, self.catalog.leader_group_id)
        unread = [tp for tp in tps if tp not in committed]
        firsts = await self._inputs.beginning_offsets(unread) if unread else {}
        # Heartbeats are not journaled: only those of the last timeout matter.
        since = self.system_clock.wall_ms() - self.domain_config.heartbeat_timeout_ms
        found = await self._inputs.offsets_for_times({tp: since for tp in heartbeat_tps})
        quiet = [tp for tp in heartbeat_tps if found.get(tp) is None]
        ends = await self._inputs.end_offsets(quiet) if quiet else {}
        # Every position is known before assign(), and nothing is awaited from there
        # on: the first fetch starts from them. A seek while a fetch is in flight would
        # wait for that fetch to return (up to the fetch wait) before reading again.
        self._inputs.assign(tps + heartbeat_tps)
        for tp in tps:
            self._inputs.seek(tp, committed[tp] if tp in committed else firsts[tp])
        for tp in heartbeat_tps:
            hit = found.get(tp)
            self._inputs.seek(tp, hit.offset if hit is not None else ends[tp])

    # ---------------------------------------------------------------- loop

    async def _loop(self) -> None:
        last_tick = -self.config.tick_interval_ms
        ticks = 0
        while True:
            self._check_lease()
            step = await self._poll()
            assert self.state_io is not None and self._view is not None
            await self.state_io.check_submissions(
                (e for _, e in step.batch.events), self.holder.state, self._view
            )
            tick_id = None
            if step.now - last_tick >= self.config.tick_interval_ms:
                last_tick = step.now
                ticks += 1
                tick_id = f"tick:{self.epoch}:{ticks}"
                self.state_io.collect_artifacts(
                    self.holder.state, step.now, self.config.artifact_retention_ms
                )
            out = self._decide(step, tick_id)
            for written in self.state_io.take_results():
                self._decide_input(written, step.now, out)
            self._view.savepoint_checks.clear()
            self._view.artifact_checks.clear()
            out.dead_letters.extend(self.outbox.dead_letter(d) for d in self._take_foreign())
            if self._ready_to_commit(out, step.now):
                await self._commit(out)
                await self._maybe_snapshot(step.now)
            self.progress.beat("step")
            if self.hooks.block_loop_ms:
                self._block_loop_for_tests()

    async def _poll(self) -> Step:
        batch = await kafkaio.poll_inputs(
            self._inputs, self.decoder, self.config.idle_poll_ms, self.config.max_batch
        )
        return Step(self.clock.now_ms(), batch)

    def _decide(self, step: Step, tick_id: str | None) -> Outgoing:
        """Everything that follows from one step, applied to the state; no I/O."""
        view = self._view
        assert view is not None
        out = Outgoing()
        for record, event in step.batch.events:
            if isinstance(event, ev.TaskManagerHeartbeat):
                try:
                    machine.note_heartbeat(view, event, step.now, self.holder.state)
                except Exception as err:  # a heartbeat never stops the leader
                    self.counters.dropped_heartbeats += 1
                    log.warning("heartbeat %s dropped: %s: %s", record.offset,
                                type(err).__name__, err)  # fmt: skip
                continue
            self._decide_input(event, step.now, out)
            self.progress.beat("decide")
        for dead in step.batch.dead_letters:
            out.dead_letters.append(self.outbox.dead_letter(dead))
            self._said("dead-lettered %s:%d@%d: %s: %s", dead.source_topic, dead.partition,
                       dead.offset, dead.error_kind, machine.clip(dead.reason, 300))  # fmt: skip
        for tp, offset in step.batch.next_offsets.items():
            if tp.topic != self.catalog.heartbeats.name:
                out.offsets[tp] = offset
        if tick_id is not None:
            try:
                decision = machine.tick(self.holder.state, view, step.now, tick_id)
                self._accept(self._encode(decision), out)
            except Exception as err:  # a failed tick skips its deadlines this once
                self.counters.failed_ticks += 1
                log.error("tick %s failed (deadlines wait for the next tick): %s: %s",
                          tick_id, type(err).__name__, err, exc_info=True)  # fmt: skip
        return out

    def _decide_input(self, event: ev.Event | SavepointWritten, now: int, out: Outgoing) -> None:
        """Decide one input; a decision that fails or does not fit becomes its rejection."""
        view = self._view
        assert view is not None
        state = self.holder.state
        try:
            records = self._encode(machine.decide(state, view, event, now))
        except Exception as err:
            self.counters.refused_inputs += 1
            reason = refusal_reason(err)
            log.warning("input %s (%s) refused: %s", machine.clip(event.event_id, 200),
                        type(event).__name__, reason)  # fmt: skip
            try:
                records = self._encode(machine.refuse(state, view, event, reason, now))
            except Exception as again:  # even the rejection does not fit: log it, go on
                log.error("rejection of input %s cannot be journaled either: %s",
                          machine.clip(event.event_id, 200), refusal_reason(again))  # fmt: skip
                return
        self._accept(records, out)

    def _encode(self, decision: machine.Decision) -> tuple[list[Record], list[Record]]:
        """Encode and size-check every record of a decision (RecordTooLarge if one does not fit)."""
        events, commands = decision
        traced = self.telemetry
        return (
            [self.outbox.journal(e) for e in events],
            [
                self.outbox.command(
                    c, machine.command_target(c), traced.headers(c) if traced else None
                )
                for c in commands
            ],
        )

    def _accept(self, records: tuple[list[Record], list[Record]], out: Outgoing) -> None:
        """Apply a checked decision's events to the state, in order, through the codec."""
        journal, commands = records
        for record in journal:
            decoded = self.codec.decode(record.value)
            assert isinstance(decoded, ev.JournalEvent)
            try:
                self.holder.apply_decided(decoded)
            except ApplyError as err:  # decide applied it to its fork: the state is tainted
                raise StepDown(f"own decision {decoded.event_id} does not apply: {err}") from err
            out.journal.append(record)
            self.edges.decided(decoded, self.holder.state)
            if isinstance(decoded, ev.JobRejected | ev.InputRejected):
                self._said("rejected %s: %s", machine.clip(decoded.input_event_id, 80),
                           machine.clip(decoded.reason, 300))  # fmt: skip
        out.commands.extend(commands)

    def _ready_to_commit(self, out: Outgoing, now: int) -> bool:
        """True when `out` is to be committed now; input offsets of a step that decided
        nothing are kept back (``LeaderConfig.offset_commit_delay_ms``) and merged into
        the transaction that commits them."""
        if out.offsets:
            self._deferred_offsets.update(out.offsets)  # offsets only grow per partition
            if self._deferred_since is None:
                self._deferred_since = now
        if not self._deferred_offsets:
            return bool(out)
        since = self._deferred_since if self._deferred_since is not None else now
        carries = bool(out.journal or out.commands or out.dead_letters)
        if carries or now - since >= self.config.offset_commit_delay_ms:
            out.offsets, self._deferred_offsets = self._deferred_offsets, {}
            self._deferred_since = None
            return True
        return False

    def _block_loop_for_tests(self) -> None:
        """Test hook: block the event loop (a stuck leader) once, right after the first step."""
        blocked, self.hooks = self.hooks.block_loop_ms, self.hooks.without_block()
        log.warning("blocking the leader loop for %d ms (test hook)", blocked)
        time.sleep(blocked / 1000)

    async def _maybe_snapshot(self, now: int) -> None:
        policy = self.config.snapshots
        # Journal offsets since the latest snapshot, whoever wrote it: a leader that
        # takes over keeps the cadence (offsets count markers too, close enough).
        since = self.holder.last_offset - self.holder.snapshot_offset
        due = since >= policy.every_events or now - self._last_snapshot_ms >= policy.every_ms
        if since > 0 and due:
            await self.snapshot(now)

    async def snapshot(self, now: int) -> ev.SnapshotTaken:
        """Write the state (as of the last committed journal record) and journal SnapshotTaken.

        Encoding runs in a thread: the loop (keepalive-free since they have their
        own thread, but still serving status and edges) stays responsive. The
        state does not change meanwhile: the loop itself waits here."""
        state = self.holder.state
        covered = self.holder.last_offset
        snapshot_id = f"snapshot-{self.epoch}-{covered}"
        parts, digest = await asyncio.to_thread(
            snapshots.chunks_and_digest, state, snapshot_id, covered, self.epoch, now
        )
        memory.release_free_memory()
        taken = ev.SnapshotTaken(
            event_id=snapshot_id, event_time=now, epoch=self.epoch, snapshot_id=snapshot_id,
            covered_offset=covered, format_version=parts[0].format_version,
            chunk_count=len(parts), digest=digest,
        )  # fmt: skip
        record = self.outbox.journal(taken)
        began = time.monotonic()
        rung = self.config.snapshots.rung(covered)
        async with self._transaction("snapshot transaction"):
            for part in parts:
                await self._send(self.outbox.snapshot_chunk(part, rung))
            sent = await self._send(record)
        decoded = self.codec.decode(record.value)
        assert isinstance(decoded, ev.JournalEvent)
        self.holder.apply_decided(decoded)
        await self._confirm([sent], snapshot=True)
        if self.telemetry is not None:
            self.telemetry.transaction("snapshot", (time.monotonic() - began) * 1000)
        self._last_snapshot_ms = now
        log.info("snapshot %s: %d chunks, covers journal offset %d", snapshot_id, len(parts),
                 covered)  # fmt: skip
        return taken

    async def _commit(self, out: Outgoing) -> None:
        began = time.monotonic()
        async with self._transaction("transaction") as producer:
            sent = [await self._send(record) for record in out.journal]
            for record in (*out.commands, *out.dead_letters):
                await self._send(record)
            if out.offsets:
                await producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(o, "") for tp, o in out.offsets.items()},
                    self.catalog.leader_group_id,
                )
            if self.hooks.hold_transaction_ms and (out.journal or out.offsets):
                await producer.flush()  # the records are in the log, uncommitted
                log.info("holding an open transaction for %d ms (test hook)",
                         self.hooks.hold_transaction_ms)  # fmt: skip
                await asyncio.sleep(self.hooks.hold_transaction_ms / 1000)
        await self._confirm(sent)
        if self.telemetry is not None:
            self.telemetry.transaction("decisions", (time.monotonic() - began) * 1000)
            self.telemetry.committed(out.journal, out.commands, out.dead_letters)
        for record in out.journal:
            assert isinstance(record.event, ev.JournalEvent)
            self.edges.observe(record.event)
        if self.state_io is not None:
            self.state_io.discard(record.event for record in out.journal)
            self.state_io.scan(self.holder.state)

    async def _confirm(
        self, sent: list[asyncio.Future[RecordMetadata]], snapshot: bool = False
    ) -> None:
        """The transaction committed: the holder's pending events are in the journal.
        Offsets our records did not take were written by someone else: report them."""
        if not sent:
            return
        offsets = [(await future).offset for future in sent]
        expected = [self._next_journal_offset, *(o + 1 for o in offsets[:-1])]
        gaps = [(want, got) for want, got in zip(expected, offsets, strict=True) if got > want]
        self.holder.confirm(offsets[-1], snapshot=snapshot)
        self.follower.seek(offsets[-1] + 1)
        self._next_journal_offset = offsets[-1] + 2  # after the commit marker
        for start, end in gaps:
            await self._inspect_foreign(start, end)

    async def _inspect_foreign(self, start: int, end: int) -> None:
        """Journal offsets in [start, end) were not ours: committed records there were
        written by someone else (aborted ones are invisible and harmless)."""
        for offset, found in await self.follower.read_range(start, end):
            self.counters.foreign_journal_records += 1
            reason = found.reason if isinstance(found, ForeignRecord) else (
                f"{type(found).__name__} {machine.clip(found.event_id, 200)} was not written "
                f"by the leader of epoch {self.epoch}"
            )  # fmt: skip
            log.error("journal record at offset %d was not written by this leader: %s "
                      "(a copy goes to the dead-letter topic)", offset, reason)  # fmt: skip
            value = found.value if isinstance(found, ForeignRecord) else None
            self._foreign_letters.append(ev.DeadLetter(
                event_id=f"deadletter:{self.catalog.journal.name}:0:{offset}",
                event_time=self.clock.now_ms(), source_topic=self.catalog.journal.name,
                partition=0, offset=offset, original_key=None, original_value=value,
                reason=f"not written by the leader: {reason}", error_kind="ForeignJournalRecord",
            ))  # fmt: skip

    def _take_foreign(self) -> list[ev.DeadLetter]:
        letters, self._foreign_letters = self._foreign_letters, []
        return letters

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[AIOKafkaProducer]:
        """One Kafka transaction, checked against the lease before it begins and before
        it commits, each step under ``step_timeout_ms``. Any failure inside is a
        StepDown: the state is tainted, never retry (the producer is dropped, which
        aborts the transaction; the next leader's fencing does in any case)."""
        producer = self._producer
        assert producer is not None
        timeout = self.config.step_timeout_ms / 1000
        self._check_lease()
        step = "begin"
        try:
            async with asyncio.timeout(timeout):
                await producer.begin_transaction()
            step = "sends"
            async with asyncio.timeout(timeout + self.hooks.hold_transaction_ms / 1000):
                yield producer
            self._check_lease()
            step = "commit"
            async with asyncio.timeout(timeout):
                await producer.commit_transaction()
        except StepDown:
            raise
        except TimeoutError as err:
            raise StepDown(f"{what}: {step} took longer than {timeout:.0f}s") from err
        except Exception as err:
            raise StepDown(f"{what} failed at {step}: {type(err).__name__}: {err}") from err
        self.progress.beat(what)

    # --------------------------------------------------------------- sends

    async def _send(self, record: Record) -> asyncio.Future[RecordMetadata]:
        assert self._producer is not None
        future: asyncio.Future[RecordMetadata] = await self._producer.send(
            record.topic, record.value, key=record.key, headers=record.headers,
            partition=record.partition,
        )  # fmt: skip
        # A failed transaction fails every send in it; the failure is handled once,
        # as a StepDown. Mark each future's exception as seen, so the sends nobody
        # awaits (commands, dead letters) are not logged again when collected.
        future.add_done_callback(_seen)
        return future

    def _check_lease(self) -> None:
        if not self.hooks.skip_lease_check and not self.lease_held():
            raise StepDown("lease lost")

    async def _close(self) -> None:
        # First, and before any await: this term says nothing more. A close cut short
        # (the replica cancels a term whose lease is lost) must not leave its keepalive
        # thread running: it would speak for this old epoch once the replica leads again.
        self._closing = True
        if self._keepalives is not None:
            self._keepalives.request_stop()
        try:
            if self.state_io is not None:
                await self.state_io.close()
        finally:
            if self._keepalives is not None:
                await asyncio.to_thread(self._keepalives.stop)
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


@dataclass
class Outgoing:
    """What one step sends in its transaction."""

    journal: list[Record] = field(default_factory=list)
    commands: list[Record] = field(default_factory=list)
    dead_letters: list[Record] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.journal or self.commands or self.dead_letters or self.offsets)


def _seen(future: asyncio.Future[RecordMetadata]) -> None:
    """Retrieve a send's outcome so that an unawaited failure is not logged again."""
    if not future.cancelled():
        future.exception()


def refusal_reason(err: BaseException) -> str:
    """Why a decision was refused, bounded (an exception may quote the whole input)."""
    if isinstance(err, RecordTooLarge):
        return machine.clip(str(err), 1_000)
    return machine.clip(f"decision failed: {type(err).__name__}: {err}", 1_000)


async def committed_offsets(
    bootstrap: str, group_id: str, timeout_s: float = 15.0
) -> dict[TopicPartition, int]:
    """Input offsets committed by earlier leaders' transactions under the leader group.

    Retries retriable errors: on a new cluster the offsets topic is created by the
    first lookup of a group coordinator, which answers "not available" meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    admin = kafkaio.admin_client(bootstrap_servers=bootstrap)
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


__all__ = [
    "JournalError",
    "Leader",
    "LeaderConfig",
    "StepDown",
    "committed_offsets",
    "refusal_reason",
]
