"""Reading the journal: the only way any replica (or ``jm replay``) builds state.

Always read_committed, auto-commit off: a fenced leader's aborted transaction
must never be acted on. Lag and positions are offsets, never event counts:
transaction markers make journal offsets gappy.

The journal is never dead-lettered. A record that does not decode or apply
stops the reader with ``JournalError``: skipping it would fork the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from coordinator.runtime import machine
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import Codec, DecodeError, default_codec
from schemas.events import Event, SnapshotTaken


class JournalError(Exception):
    """The journal cannot be read or applied; the replica must stop (not retriable)."""

    retriable = False


@dataclass(frozen=True)
class StopAt:
    """Where a point-in-time replay stops: before this offset and/or after this time."""

    offset: int | None = None  # exclusive
    until_ms: int | None = None  # inclusive: events with event_time <= until_ms


class JournalFollower:
    """Folds the journal into a state; follows it as it grows."""

    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        codec: Codec | None = None,
        on_event: Callable[[int, Event], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.codec = codec or default_codec()
        self.tp = TopicPartition(catalog.journal.name, 0)
        self._consumer: AIOKafkaConsumer = kafkaio.consumer(
            bootstrap, fetch_max_wait_ms=10, max_partition_fetch_bytes=8 * 1024 * 1024
        )
        self._allowed = catalog.journal.allowed
        self._on_event = on_event
        self.state = machine.new_state()
        self.position = 0  # next offset to read
        self.last_offset = -1  # offset of the last record applied
        self.applied = 0
        self.first_after_mark: tuple[int, Event] | None = None
        # Journal offset covered by the latest snapshot this state knows of (-1: none),
        # so a new leader keeps the snapshot cadence of the old one.
        self.snapshot_offset = -1

    def mark(self) -> None:
        """Remember the next event applied (the leader checks its LeaderElected came next)."""
        self.first_after_mark = None

    async def start(self, from_offset: int = 0) -> None:
        await self._consumer.start()
        self._consumer.assign([self.tp])
        self._consumer.seek(self.tp, from_offset)
        self.position = from_offset

    async def stop(self) -> None:
        await self._consumer.stop()

    def reset(self, state: machine.State | None = None, from_offset: int = 0) -> None:
        """Start over (after stepping down): fresh state, or a snapshot's state and offset."""
        self.state = state if state is not None else machine.new_state()
        self._consumer.seek(self.tp, from_offset)
        self.position = from_offset
        self.last_offset = from_offset - 1
        self.snapshot_offset = from_offset - 1 if state is not None else -1
        self.applied = 0

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
            count, reached_stop = await self._poll(200, stop)
            applied += count
            if reached_stop:
                break
        return applied

    async def catch_up_to(self, offset: int, timeout_s: float = 30.0) -> None:
        """Apply at least up to the record at `offset` (known to be committed)."""
        deadline = time.monotonic() + timeout_s
        while self.last_offset < offset:
            if time.monotonic() > deadline:
                raise JournalError(f"journal offset {offset} not readable within {timeout_s:.0f}s")
            await self._poll(100, None)
        await self.catch_up()

    async def _poll(self, timeout_ms: int, stop: StopAt | None) -> tuple[int, bool]:
        batch = await self._consumer.getmany(self.tp, timeout_ms=timeout_ms, max_records=5_000)
        applied = 0
        for record in batch.get(self.tp, []):
            if stop is not None and stop.offset is not None and record.offset >= stop.offset:
                self.position = stop.offset
                return applied, True
            event = self._decode(record.offset, record.value)
            if stop is not None and stop.until_ms is not None and event.event_time > stop.until_ms:
                self.position = record.offset
                return applied, True
            self._apply(record.offset, event)
            applied += 1
        self.position = await self._consumer.position(self.tp)
        return applied, False

    def _decode(self, offset: int, value: bytes | None) -> Event:
        try:
            if value is None:
                raise DecodeError("journal record without value")
            return self.codec.decode(value, self._allowed)
        except DecodeError as err:
            raise JournalError(
                f"journal record at offset {offset} cannot be decoded ({type(err).__name__}: "
                f"{err}); refusing to continue: skipping it would fork the state"
            ) from err

    def _apply(self, offset: int, event: Event) -> None:
        try:
            machine.apply(self.state, event)
        except machine.InconsistentJournal as err:
            raise JournalError(
                f"journal record at offset {offset} cannot be applied: {err}"
            ) from err
        self.last_offset = offset
        self.applied += 1
        if isinstance(event, SnapshotTaken):
            # SnapshotTaken changes nothing: the state at its own offset is the snapshot's.
            self.snapshot_offset = offset
        if self.first_after_mark is None:
            self.first_after_mark = (offset, event)
        if self._on_event is not None:
            self._on_event(offset, event)

    # The leader applies its own decisions before they are committed (and never
    # reads them back): it knows their offsets from the produce responses.

    def apply_live(self, event: Event) -> None:
        """Apply an event the leader decided (already passed through the codec)."""
        try:
            machine.apply(self.state, event)
        except machine.InconsistentJournal as err:
            raise JournalError(f"the leader's own decision cannot be applied: {err}") from err
        self.applied += 1

    def advance_to(self, last_offset: int) -> None:
        """After a commit: the journal holds everything up to `last_offset` (ours)."""
        self.last_offset = last_offset
        self.position = last_offset + 1
        self._consumer.seek(self.tp, self.position)
