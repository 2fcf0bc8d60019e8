"""Reading the journal: the only way any replica (or ``jm replay``) builds state.

Always read_committed, auto-commit off: a fenced leader's aborted transaction
must never be acted on. Lag and positions are offsets, never event counts:
transaction markers make journal offsets gappy.

A record a leader wrote and that does not decode or apply stops the reader
with ``JournalError``: skipping it would fork the state. A record that no
leader could have written is skipped, counted and reported (``foreign``):
every leader decodes and applies its own records before it sends them, and
stamps them with its epoch, so a record without a value, not in the Avro
single-object encoding, truncated, oversized, of an event type the journal
does not carry, or stamped with an epoch no leader held at that point, was
written by someone else. Every replica applies the same rule to the same
bytes, so skipping it forks nothing. A record of an unknown schema version
still stops the reader: a newer leader may have written it.

With a key ring (every replica has one), a record without a valid signature of
the ``journal`` role is foreign too, whatever it says: only coordinator
replicas hold that key (schemas/signing.py). Skipped records are counted,
logged as errors and shown by ``jm replicas``; the leader copies the ones it
finds between its own writes to the dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from coordinator.runtime import machine
from coordinator.runtime.holder import ApplyError, StateHolder
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import Codec, DecodeError, UnknownFingerprintError, default_codec
from schemas.events import Event, JournalEvent, LeaderElected, SnapshotTaken
from schemas.signing import KeyRing

log = logging.getLogger(__name__)

#: The most one fetch of the journal brings: a full replay reads on, 8 MiB at a time.
FETCH_BYTES: Final = 8 * 1024 * 1024
#: A fold that stops at a point (``jm replay --until`` / ``--to-offset``, the REST API's
#: point-in-time view) reads a tail of a few thousand records after a snapshot: fetches
#: of 1 MiB bring it in 0.08 s where one of 8 MiB took 0.15 s (parsing what lies past it).
BOUNDED_FETCH_BYTES: Final = 1024 * 1024
#: How many records after the stop time a point-in-time replay looks ahead for an
#: earlier-stamped event. A leader stamps with a clock that never goes back, nor
#: before the latest event of the journal it took over (LeaderClock), so a journal
#: its leaders wrote has no such event; the look-ahead is for one written otherwise
#: (by hand, by another tool). Every record of it is read and decoded by every
#: ``--until`` replay: 10,000 cost about 0.1 s a query.
UNTIL_LOOKAHEAD: Final = 1_000
#: Skipped foreign records kept for reporting (all are counted).
FOREIGN_KEPT: Final = 16
#: Records folded between two turns of the event loop: one poll hands over whole
#: record batches of up to a fetch's size (8 MiB), which a replica must not fold
#: in one go (its REST reads, status and lease tasks share the loop).
FOLD_SLICE: Final = 5_000
#: How long one poll of ``catch_up`` waits for records. A journal ends with a transaction's
#: commit marker, which moves the position but is no record: a poll that reads only the
#: marker waits its whole timeout (200 ms before: every ``jm replay``, every takeover's
#: catch-up paid it), so the loop polls briefly and checks the position in between.
#: Records that are there come back at once whatever the timeout.
CATCH_UP_POLL_MS: Final = 20

#: What the reading paths need of a record: offset, value, key, headers.
Record = kafkaio.LightRecord


class JournalError(Exception):
    """The journal cannot be read or applied; the replica must stop (not retriable)."""

    retriable = False


@dataclass(frozen=True)
class StopAt:
    """Where a point-in-time replay stops: before this offset and/or after this time."""

    offset: int | None = None  # exclusive
    # Inclusive: the journal up to the last record stamped at or before until_ms
    # (records stamped later that come before it are part of that prefix).
    until_ms: int | None = None


@dataclass(frozen=True)
class ForeignRecord:
    """A journal record no leader could have written, skipped."""

    offset: int
    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str

    @classmethod
    def of(cls, record: Record, reason: str) -> ForeignRecord:
        offset, value, key, headers = record
        kept = tuple((k, None if v is None else bytes(v)) for k, v in headers)
        return cls(offset, value, key, kept, reason)


class JournalFollower:
    """Reads the journal and folds it into its ``StateHolder``; follows it as it grows."""

    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        codec: Codec | None = None,
        on_event: Callable[[int, Event], None] | None = None,
        holder: StateHolder | None = None,
        keys: KeyRing | None = None,
        fetch_bytes: int = FETCH_BYTES,
    ) -> None:
        """`keys`: verify every record's journal signature (None: read unverified,
        for tools without the journal key). `fetch_bytes`: the most one fetch brings
        (``BOUNDED_FETCH_BYTES`` for a fold that stops at a point)."""
        self.catalog = catalog
        self.keys = keys
        self.codec = codec or default_codec()
        self.tp = TopicPartition(catalog.journal.name, 0)
        self._consumer: AIOKafkaConsumer = kafkaio.consumer(
            bootstrap,
            fetch_max_wait_ms=kafkaio.CONTROL_FETCH_WAIT_MS,
            max_partition_fetch_bytes=fetch_bytes,
        )
        self._allowed = catalog.journal.allowed
        self._decode_journal = self.codec.decoder(self._allowed)
        self._on_event = on_event
        self._handler_for = machine.in_epoch_handlers()
        # The consumer hands over whole record batches of (offset, value, key, headers)
        # (kafkaio.read_batches): no per-record objects. Headers are read only to
        # verify signatures; a skipped record is reported without them otherwise.
        self._verifier = None if keys is None else keys.verifier("journal", self.tp.topic)
        self.holder = holder or StateHolder()
        self.position = 0  # next offset to read
        self.foreign: list[ForeignRecord] = []  # skipped since start (the latest few kept)
        self.foreign_count = 0
        self._held_back: list[tuple[int, Event]] = []  # see StopAt.until_ms
        # Called after every poll (the leader's takeover counts reading as progress).
        self.on_progress: Callable[[str], None] | None = None

    # Read-only views of the holder, for callers that only read.
    @property
    def state(self) -> machine.State:
        return self.holder.state

    @property
    def last_offset(self) -> int:
        return self.holder.last_offset

    @property
    def applied(self) -> int:
        return self.holder.applied

    async def start(self, from_offset: int = 0) -> None:
        await self._consumer.start()
        # A cluster id with no journal (a typo, topics never created): say so now. An
        # offset lookup of a missing topic waits out the request timeout (40 s) and
        # fails as a Kafka timeout. The first look is at the metadata fetched to start.
        topic = self.tp.topic
        if self._consumer.partitions_for_topic(topic) is None and topic not in (
            await self._consumer.topics()
        ):
            await self._consumer.stop()
            raise JournalError(
                f"Kafka has no journal topic {topic!r}: is the cluster id "
                f"{self.catalog.cluster_id!r} right (--cluster-id, $JM_CLUSTER_ID), and were "
                f"its topics created (jm topics create)?"
            )
        kafkaio.read_batches(self._consumer, headers=self.keys is not None)
        self._consumer.assign([self.tp])
        self.seek(from_offset)

    async def stop(self) -> None:
        await self._consumer.stop()

    def pause(self, paused: bool = True) -> None:
        """Stop (or resume) fetching: a follower fed records another consumer read
        (``feed``) would otherwise keep fetching at the journal's end."""
        if paused:
            self._consumer.pause(self.tp)
        else:
            self._consumer.resume(self.tp)

    def seek(self, offset: int) -> None:
        """Read on from `offset` (the leader, after committing records up to offset - 1)."""
        self._consumer.seek(self.tp, offset)
        self.position = offset
        self._held_back.clear()

    def reset(self, state: machine.State | None = None, from_offset: int = 0) -> None:
        """Start over (after stepping down): fresh state, or a snapshot's state and offset."""
        self.holder.reset(state, from_offset)
        self.seek(from_offset)

    async def end_offset(self) -> int:
        """The last stable offset: under read_committed, the end of what is committed."""
        return int((await self._consumer.end_offsets([self.tp]))[self.tp])

    async def lag(self) -> int:
        return max(0, await self.end_offset() - self.position)

    async def poll(self, timeout_ms: int) -> int:
        """Apply what arrives within `timeout_ms`; returns how many events were applied."""
        applied, _ = await self._poll(timeout_ms, None)
        return applied

    async def catch_up(self, stop: StopAt | None = None, timeout_s: float = 120.0) -> int:
        """Apply everything up to the end offset seen now, or up to `stop`; returns the count."""
        end = await self.end_offset()
        if stop is not None and stop.offset is not None:
            end = min(end, stop.offset)
        deadline = time.monotonic() + timeout_s
        applied = 0
        while self.position < end:
            if time.monotonic() > deadline:
                raise JournalError(f"journal not read to {end} within {timeout_s:.0f}s")
            count, reached_stop = await self._poll(CATCH_UP_POLL_MS, stop)
            applied += count
            if reached_stop:
                break
        if self._held_back:
            # Stamped after `until_ms` with nothing earlier-stamped behind them: the
            # replay ends before the first of them.
            self.position = self._held_back[0][0]
            self._held_back.clear()
        return applied

    async def catch_up_to(self, offset: int, timeout_s: float = 30.0) -> None:
        """Apply at least up to the record at `offset` (known to be committed)."""
        deadline = time.monotonic() + timeout_s
        while self.last_offset < offset:
            if time.monotonic() > deadline:
                raise JournalError(f"journal offset {offset} not readable within {timeout_s:.0f}s")
            await self._poll(100, None)
        await self.catch_up()

    async def read_range(
        self, start: int, end: int, key: bytes | None = None
    ) -> list[tuple[int, Event | ForeignRecord]]:
        """The committed records in [start, end) without applying them (the leader
        inspects records it did not write; ``jm status`` looks back for a job's
        events, `key` keeping only records with that key, undecoded otherwise).
        Restores the read position."""
        here = self.position
        self._consumer.seek(self.tp, start)
        found: list[tuple[int, Event | ForeignRecord]] = []
        try:
            while await self._consumer.position(self.tp) < end:
                batch = await self._consumer.getmany(self.tp, timeout_ms=200, max_records=500)
                for record in self._records(batch.get(self.tp, [])):
                    if record[0] >= end:
                        break
                    if key is not None and record[2] != key:
                        continue
                    found.append((record[0], self._decode(*record)))
        finally:
            self.seek(here)
        return found

    async def _poll(self, timeout_ms: int, stop: StopAt | None) -> tuple[int, bool]:
        batch = await self._consumer.getmany(self.tp, timeout_ms=timeout_ms, max_records=5_000)
        fetched = batch.get(self.tp, [])
        if stop is None:
            applied = await self._fold_slices(fetched)
        elif stop.until_ms is None and stop.offset is not None:
            # A stop at an offset only (``--to-offset``, the REST view's ``offset=``):
            # the batches cut before it, folded as without a stop.
            limit = stop.offset
            kept = [b if b[-1][0] < limit else [r for r in b if r[0] < limit] for b in fetched]
            applied = await self._fold_slices(kept)
            if any(b[-1][0] >= limit for b in fetched):
                self.position = limit
                return applied, True
        else:
            applied, rest = 0, fetched
            if not self._held_back and stop.offset is None and stop.until_ms is not None:
                # Stamped in time (most of a point-in-time replay): the batch path, up
                # to the first event stamped after the stop; the general path from it.
                applied, resume = self._fold_batch(fetched, stop.until_ms)
                rest = [] if resume is None else [fetched[resume[0]][resume[1] :],
                                                  *fetched[resume[0] + 1 :]]  # fmt: skip
            more, reached = self._fold_records(self._records(rest), stop)
            applied += more
            if reached:
                return applied, True
        self.position = await self._consumer.position(self.tp)
        if self.on_progress is not None:
            self.on_progress("journal read")
        return applied, False

    @staticmethod
    def _records(fetched: list[list[kafkaio.LightRecord]]) -> Iterable[Record]:
        """(offset, value, key, headers) of each record of one poll."""
        return (record for batch in fetched for record in batch)

    async def _fold_slices(self, batches: list[list[kafkaio.LightRecord]]) -> int:
        """``_fold_batch`` of one poll's batches, FOLD_SLICE records at a time with a
        turn of the event loop between two slices."""
        applied = 0
        start = size = 0
        for end, batch in enumerate(batches, 1):
            size += len(batch)
            if size >= FOLD_SLICE and end < len(batches):
                applied += self._fold_batch(batches[start:end])[0]
                start, size = end, 0
                await asyncio.sleep(0)
        return applied + self._fold_batch(batches[start:])[0]

    def _fold_batch(
        self, batches: list[list[kafkaio.LightRecord]], until_ms: int | None = None
    ) -> tuple[int, tuple[int, int] | None]:
        """``_fold_records`` for the common case (no stop): what a full replay and a
        following replica spend their time in, so it takes whole record batches and
        the per-record work is bound to locals. An event of the state's epoch goes
        straight to its ``evolve`` handler, the holder's counters are brought up to
        date once per run of such events (``StateHolder.note_folded``). A record that
        does not decode, whose signature the verifier does not accept at once, or an
        event out of epoch, takes the general path (``_decode``, ``_apply``): the same
        rules either way. `until_ms`: stops before the first event stamped after it and
        returns (applied, (batch index, record index) of that record); the caller goes on
        from there with ``_fold_records`` (which holds such events back)."""
        decode, holder = self._decode_journal, self.holder
        state, on_event = holder.state, self._on_event
        valid = None if self._verifier is None else self._verifier.valid
        # While the holder waits for its first watched record, apply_record notes it: every
        # event of this call takes the general path then (rare: a takeover's catch-up).
        handler_for = None if holder.watch_pending else self._handler_for
        applied = run = 0  # run: folded here, not yet counted by the holder
        last, latest = -1, holder.max_event_time
        for b, batch in enumerate(batches):
            for r, (offset, value, key, headers) in enumerate(batch):
                try:
                    event = decode(value)  # type: ignore[arg-type]  # None: raises
                except Exception:  # None, foreign or unknown: the general path says which
                    event = None
                if event is None or (valid is not None and not valid(key, value, headers)):
                    decoded = self._decode(offset, value, key, headers)
                    if isinstance(decoded, ForeignRecord):
                        self._skip(decoded)
                        continue
                    event = decoded
                if until_ms is not None and event.event_time > until_ms:
                    if run:
                        holder.note_folded(run, last, latest)
                    return applied + run, (b, r)
                handler = (
                    handler_for(type(event))
                    if handler_for is not None
                    and event.epoch == state.epoch  # type: ignore[attr-defined]
                    and type(event) is not LeaderElected
                    else None
                )
                if handler is not None:
                    try:
                        handler(state, event)
                    except machine.InconsistentJournal as err:
                        holder.note_folded(run, last, latest)
                        holder.version += 1  # as apply_record counts a failed fold
                        raise self._cannot_apply(offset, ApplyError(str(err))) from err
                    run += 1
                    last = offset
                    if event.event_time > latest:  # noqa: PLR1730  (no call per event)
                        latest = event.event_time
                    if type(event) is SnapshotTaken:
                        holder.snapshot_offset = offset
                    if on_event is not None:
                        on_event(offset, event)
                    continue
                if run:
                    holder.note_folded(run, last, latest)
                    applied += run
                    run = 0
                applied += self._apply(offset, event)
                latest = holder.max_event_time
        if run:
            holder.note_folded(run, last, latest)
        return applied + run, None

    def _fold_records(self, records: Iterable[Record], stop: StopAt | None) -> tuple[int, bool]:
        applied = 0
        until = stop.until_ms if stop is not None else None
        for record in records:
            if stop is not None and stop.offset is not None and record[0] >= stop.offset:
                self.position = stop.offset
                return applied, True
            decoded = self._decode(*record)
            if isinstance(decoded, ForeignRecord):
                self._skip(decoded)
                continue
            if until is not None:
                if decoded.event_time > until:
                    if len(self._held_back) >= UNTIL_LOOKAHEAD:
                        self.position = self._held_back[0][0]
                        self._held_back.clear()
                        return applied, True
                    self._held_back.append((record[0], decoded))
                    continue
                # Stamped in time: everything held back before it belongs to the prefix.
                for offset, event in self._held_back:
                    applied += self._apply(offset, event)
                self._held_back.clear()
            applied += self._apply(record[0], decoded)
        return applied, False

    def feed(self, record: ConsumerRecord[bytes, bytes]) -> int:
        """Fold one committed record another consumer read (the history server's faust
        stream) by the same rules as ``poll``; returns 1 if it was applied. The read
        position moves past it; ``seek(position)`` before polling again."""
        decoded = self._decode(record.offset, record.value, record.key, record.headers)
        self.position = record.offset + 1
        if isinstance(decoded, ForeignRecord):
            self._skip(decoded)
            return 0
        return self._apply(record.offset, decoded)

    def _decode(
        self,
        offset: int,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> Event | ForeignRecord:
        try:
            if value is None:
                raise DecodeError("journal record without value")
            event = self.codec.decode(value, self._allowed)
        except UnknownFingerprintError as err:
            raise JournalError(
                f"journal record at offset {offset} has a schema version unknown here "
                f"({err}); refusing to continue: a newer leader may have written it, and "
                f"skipping it would fork the state (upgrade this replica)"
            ) from err
        except DecodeError as err:
            return ForeignRecord.of((offset, value, key, headers), f"{type(err).__name__}: {err}")
        if self._verifier is not None:
            problem = self._verifier.problem(key, value, headers)
            if problem is not None:
                return ForeignRecord.of((offset, value, key, headers), f"SignatureError: {problem}")
        return event

    def _epoch_problem(self, event: Event) -> str | None:
        """Why no leader could have stamped `event` here (None: one could)."""
        if not isinstance(event, JournalEvent):
            return f"{type(event).__name__} is not a journal event"
        current = machine.epoch(self.holder.state)
        if isinstance(event, LeaderElected):
            if event.epoch <= current:
                return f"LeaderElected epoch {event.epoch} does not raise epoch {current}"
        elif event.epoch > current:
            return f"epoch {event.epoch} above the current {current} without a LeaderElected"
        return None

    def _apply(self, offset: int, event: Event) -> int:
        problem = self._epoch_problem(event)
        if problem is not None:
            self._skip(ForeignRecord(offset, None, None, (), f"{event.event_id}: {problem}"))
            return 0
        try:
            self.holder.apply_record(offset, event)
        except ApplyError as err:
            raise self._cannot_apply(offset, err) from err
        if self._on_event is not None:
            self._on_event(offset, event)
        return 1

    @staticmethod
    def _cannot_apply(offset: int, err: ApplyError) -> JournalError:
        return JournalError(
            f"journal record at offset {offset} cannot be applied: {err}; refusing to "
            f"continue: skipping it would fork the state"
        )

    def _skip(self, foreign: ForeignRecord) -> None:
        self.foreign_count += 1
        self.foreign = [*self.foreign[-(FOREIGN_KEPT - 1) :], foreign]
        log.error("journal record at offset %d skipped: no leader wrote it (%s)",
                    foreign.offset, foreign.reason[:500])  # fmt: skip
