"""Snapshots of the folded state in ``jm.snapshots``: recovery = latest readable snapshot + tail.

A snapshot is the state's canonical dict (``state_to_dict``), JSON, zlib, cut
into chunks of at most ``SNAPSHOT_CHUNK_BYTES``; each chunk is a
``SnapshotChunk`` event carrying the snapshot id, the state format version and
the journal offset the state covers. The leader writes the chunks and a
``SnapshotTaken`` journal event in one transaction, so a snapshot exists iff
the journal says so, and a fenced leader's snapshot is never read.

Reading picks the complete snapshot with the highest covered offset whose
format this code reads. Anything unreadable (missing chunks, another format,
bad bytes) is skipped with a warning: a snapshot only saves replay time, it is
never needed for correctness.

Reading goes backwards: the newest snapshot's chunks are the last records of
the partition, so ``load_latest`` reads a window at the end (16 offsets, then
4 times more each round) until it holds a readable snapshot or reaches the
start; it never loads the whole partition to use its end. A point in the past
(a ``StopAt``) whose snapshot is not in the first window is found by bisection:
probes of one record each halve the rest of the partition down to 16 offsets,
which are read (``_bisect``; 100 snapshots of 125 KB: 7 probes and 16 offsets
instead of every snapshot after the point). Old snapshots are
removed by compaction (fixed keys per rung and chunk index, ``segment.ms`` in
the catalog so that segments roll and compaction actually runs).

The ladder: a snapshot's chunks are keyed by its rung,
``(covered_offset // ladder_every) % ladder_rungs`` (``SnapshotPolicy``), so
compaction keeps the newest snapshot of each of the last ``ladder_rungs``
windows of ``ladder_every`` offsets, not only the newest one. A point-in-time
read (``restore`` with a ``StopAt``) starts from the newest snapshot that lies
wholly before the stop and replays only the journal between the two.

``restore`` is recovery in one call, for every reader of the state (a replica
rebuilding, ``jm list`` and ``jm status``): the latest readable snapshot into a
``JournalFollower``, then only the journal after the offset it covers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from coordinator.domain import (
    STATE_FORMAT_VERSION,
    State,
    UnsupportedSnapshot,
    serde,
    state_from_dict,
    state_to_dict,
)
from coordinator.domain.digest import json_pieces, plain_digest
from coordinator.runtime.journal import JournalFollower, StopAt
from schemas import codecache, kafkaio
from schemas import events as ev
from schemas.catalog import SNAPSHOT_CHUNK_BYTES, Catalog
from schemas.codec import DecodeError, default_codec
from schemas.signing import KeyRing

log = logging.getLogger(__name__)

serde.use_compiler(codecache.compiled)  # the state's decoders compiled once per machine

#: A fetch holds at least one whole chunk record (up to the topic's 4 MiB).
FETCH_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class SnapshotPolicy:
    """Write a snapshot after this many applied events or this long, whichever first.

    Ladder: compaction keeps the newest snapshot of each window of `ladder_every`
    journal offsets, for the last `ladder_rungs` windows (``jm replay --until`` /
    ``--to-offset`` start from the newest one before their target)."""

    every_events: int = 10_000
    every_ms: int = 60_000
    ladder_every: int = 10_000
    ladder_rungs: int = 100

    def rung(self, covered_offset: int) -> int:
        """The ladder rung (the compaction key's part) of a snapshot covering `covered_offset`."""
        return (max(0, covered_offset) // max(1, self.ladder_every)) % max(1, self.ladder_rungs)


@dataclass
class LoadedSnapshot:
    """records_read: records fetched to find it (the tail window, not the partition)."""

    snapshot_id: str
    covered_offset: int
    state: State
    skipped: list[str] = field(default_factory=list)
    records_read: int = 0


#: First window read from the end of jm.snapshots, in offsets; grows 4x per round.
FIRST_WINDOW: Final = 16
#: A point-in-time read bisects the partition before the first window down to this many
#: offsets (``_bisect``), then reads them.
BISECT_WINDOW: Final = 16


def encode_state(state: State) -> bytes:
    return _encode_plain(state_to_dict(state))


def _encode_plain(plain: dict[str, Any]) -> bytes:
    # Keys stay in the state's order (not sorted): where evolve prunes the oldest
    # entries of a dict, a restored state must prune exactly as a replayed one.
    # In pieces (json_pieces): one C call over a large state would hold the interpreter
    # lock, and the lease renewer thread with it, for as long as it runs.
    # Compressed piece by piece: the whole text is never held at once.
    z = zlib.compressobj(level=1)
    out = [z.compress(piece.encode()) for piece in json_pieces(plain, False)]
    out.append(z.flush())
    return b"".join(out)


def decode_state(payload: bytes) -> State:
    return state_from_dict(json.loads(zlib.decompress(payload)))


def chunks(
    state: State, snapshot_id: str, covered_offset: int, epoch: int, now: int
) -> list[ev.SnapshotChunk]:
    return _chunks(encode_state(state), snapshot_id, covered_offset, epoch, now)


def chunks_and_digest(
    state: State, snapshot_id: str, covered_offset: int, epoch: int, now: int
) -> tuple[list[ev.SnapshotChunk], str]:
    """``chunks`` and the state's digest (``state_digest``), from one conversion of the
    state to plain data (the leader's snapshot: the larger part of its cost)."""
    plain = state_to_dict(state)
    parts = _chunks(_encode_plain(plain), snapshot_id, covered_offset, epoch, now)
    return parts, plain_digest(plain)


def _chunks(
    payload: bytes, snapshot_id: str, covered_offset: int, epoch: int, now: int
) -> list[ev.SnapshotChunk]:
    pieces = [
        payload[i : i + SNAPSHOT_CHUNK_BYTES] for i in range(0, len(payload), SNAPSHOT_CHUNK_BYTES)
    ] or [b""]
    return [
        ev.SnapshotChunk(
            event_id=f"{snapshot_id}:{index}",
            event_time=now,
            snapshot_id=snapshot_id,
            format_version=STATE_FORMAT_VERSION,
            covered_offset=covered_offset,
            chunk_index=index,
            chunk_count=len(pieces),
            payload=piece,
            epoch=epoch,
        )
        for index, piece in enumerate(pieces)
    ]


def decode_chunks(
    records: list[ConsumerRecord[bytes, bytes]], catalog: Catalog
) -> list[ev.SnapshotChunk]:
    """The readable chunks among `records`, in log order (unreadable ones logged)."""
    codec = default_codec()
    found: list[ev.SnapshotChunk] = []
    for record in records:
        try:
            chunk = codec.decode(record.value or b"", catalog.snapshots.allowed)
        except DecodeError as err:
            log.warning("snapshot record at offset %d unreadable: %s", record.offset, err)
            continue
        assert isinstance(chunk, ev.SnapshotChunk)
        found.append(chunk)
    return found


def usable_for(stop: StopAt | None) -> Callable[[ev.SnapshotChunk], bool]:
    """Whether a snapshot (by its first chunk) lies wholly before `stop`: it covers
    offsets before ``stop.offset``, and every event it covers is stamped at or before
    ``stop.until_ms`` (a chunk's event time is the leader's clock when it wrote it,
    never earlier than an event it covers: ``LeaderClock``). Then the replay from it
    reaches exactly where a replay from offset 0 would."""
    if stop is None:
        return lambda chunk: True
    offset, until = stop.offset, stop.until_ms
    return lambda chunk: (
        (offset is None or chunk.covered_offset < offset)
        and (until is None or chunk.event_time <= until)
    )


def assemble(
    found: list[ev.SnapshotChunk], usable: Callable[[ev.SnapshotChunk], bool] | None = None
) -> LoadedSnapshot | None:
    """The newest snapshot that is complete, readable and `usable`; the skipped
    ones (not those past a stop) are listed."""
    by_id: dict[str, dict[int, ev.SnapshotChunk]] = {}
    for chunk in found:
        if usable is None or usable(chunk):
            by_id.setdefault(chunk.snapshot_id, {})[chunk.chunk_index] = chunk
    candidates = sorted(
        by_id.items(), key=lambda item: max(c.covered_offset for c in item[1].values()),
        reverse=True,
    )  # fmt: skip
    skipped: list[str] = []
    for snapshot_id, parts in candidates:
        first = next(iter(parts.values()))
        if first.format_version != STATE_FORMAT_VERSION:
            skipped.append(f"{snapshot_id}: format {first.format_version}, "
                           f"this code reads {STATE_FORMAT_VERSION}")  # fmt: skip
            continue
        if sorted(parts) != list(range(first.chunk_count)):
            skipped.append(f"{snapshot_id}: {len(parts)} of {first.chunk_count} chunks")
            continue
        payload = b"".join(parts[i].payload for i in range(first.chunk_count))
        try:
            state = decode_state(payload)
        except (zlib.error, ValueError, KeyError, TypeError, UnsupportedSnapshot) as err:
            skipped.append(f"{snapshot_id}: unreadable ({type(err).__name__}: {err})")
            continue
        return LoadedSnapshot(snapshot_id, first.covered_offset, state, skipped)
    for reason in skipped:
        log.warning("snapshot skipped: %s", reason)
    return None


async def load_latest(
    bootstrap: str, catalog: Catalog, keys: KeyRing | None = None, before: StopAt | None = None
) -> LoadedSnapshot | None:
    """The newest readable snapshot (wholly before `before`: ``usable_for``), read
    from the end of the partition backwards. With `keys`, chunks without a valid
    journal signature are skipped (logged)."""
    usable = usable_for(before)
    tp = TopicPartition(catalog.snapshots.name, 0)
    reader = kafkaio.consumer(bootstrap, max_partition_fetch_bytes=FETCH_BYTES)
    await reader.start()
    try:
        reader.assign([tp])
        begin = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        window, probed = FIRST_WINDOW, 0
        while True:
            start = max(begin, end - window)
            records = await _read_range(reader, tp, start, end)
            if keys is not None:
                records = _signed(records, keys)
            loaded = assemble(decode_chunks(records, catalog), usable)
            if loaded is not None or start == begin:
                break
            if before is not None and window == FIRST_WINDOW and start - begin > BISECT_WINDOW:
                # A point in the past: its snapshot is found by bisection, not by reading
                # every newer snapshot (the backward scan stays for what it cannot find).
                loaded, records, probed, read_from = await _bisect(
                    bootstrap, reader, tp, (begin, start), catalog, keys, usable
                )
                if loaded is not None or read_from == begin:
                    break  # found, or read from the start: no older snapshot to scan for
            window *= 4
    finally:
        await reader.stop()
    if loaded is not None:
        loaded.records_read = len(records) + probed
        for reason in loaded.skipped:
            log.warning("snapshot skipped: %s", reason)
    return loaded


async def _bisect(
    bootstrap: str,
    reader: AIOKafkaConsumer,
    tp: TopicPartition,
    span: tuple[int, int],
    catalog: Catalog,
    keys: KeyRing | None,
    usable: Callable[[ev.SnapshotChunk], bool],
) -> tuple[LoadedSnapshot | None, list[ConsumerRecord[bytes, bytes]], int, int]:
    """(the newest usable snapshot in `span` found by bisection, the records read
    around it, records probed, the offset the read began at). Snapshots follow the
    journal in the partition's order, so once one is past the stop, so is every later
    one: probes of one record halve the span down to BISECT_WINDOW offsets, then those
    (and the earlier chunks of the snapshot there) are read and assembled like the
    backward scan's. Should that order not hold, an older usable snapshot is found (or
    none, and the caller scans): the state after the tail is the same."""
    lo, hi = span
    probe = kafkaio.consumer(bootstrap, max_partition_fetch_bytes=1)  # one batch a fetch
    await probe.start()
    probes = 0
    try:
        probe.assign([tp])
        while hi - lo > BISECT_WINDOW:
            mid = (lo + hi) // 2
            found = await _first_chunk(probe, tp, mid, hi, catalog, keys)
            probes += 1
            if found is None or not usable(found[1]):
                hi = mid
            else:
                lo = found[0]
    finally:
        await probe.stop()
    read_from = max(span[0], lo - BISECT_WINDOW)
    records = await _read_range(reader, tp, read_from, hi)
    if keys is not None:
        records = _signed(records, keys)
    return assemble(decode_chunks(records, catalog), usable), records, probes, read_from


async def _first_chunk(
    probe: AIOKafkaConsumer,
    tp: TopicPartition,
    at: int,
    end: int,
    catalog: Catalog,
    keys: KeyRing | None,
) -> tuple[int, ev.SnapshotChunk] | None:
    """(offset, chunk) of the first readable chunk at or after `at` and before `end`."""
    probe.seek(tp, at)
    while await probe.position(tp) < end:
        for record in (await probe.getmany(tp, timeout_ms=500, max_records=1)).get(tp, []):
            if record.offset >= end:
                return None
            kept = [record] if keys is None else _signed([record], keys)
            chunks = decode_chunks(kept, catalog)
            if chunks:
                return record.offset, chunks[0]
    return None


def _signed(
    records: list[ConsumerRecord[bytes, bytes]], keys: KeyRing
) -> list[ConsumerRecord[bytes, bytes]]:
    kept = []
    for r in records:
        problem = keys.problem("snapshots", r.topic, r.key, r.value, r.headers)
        if problem is None:
            kept.append(r)
        else:
            log.error("snapshot record at offset %d skipped: %s", r.offset, problem)
    return kept


async def _read_range(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed records of [start, end) (end: the read_committed end seen before)."""
    reader.seek(tp, start)
    records: list[ConsumerRecord[bytes, bytes]] = []
    while await reader.position(tp) < end:
        batch = (await reader.getmany(tp, timeout_ms=500)).get(tp, [])
        records.extend(r for r in batch if r.offset < end)
    return records


async def restore(
    follower: JournalFollower,
    bootstrap: str,
    catalog: Catalog,
    *,
    use_snapshot: bool = True,
    stop: StopAt | None = None,
    keys: KeyRing | None = None,
    start: bool = False,
) -> LoadedSnapshot | None:
    """Reset `follower` to the newest readable snapshot wholly before `stop` (or to
    an empty state at offset 0: none, or `use_snapshot` false) and apply the journal
    after it, up to its end or `stop`. Returns the snapshot used. `start`: start the
    follower too, while the snapshot is read (two connections made at once)."""
    if start and use_snapshot:
        loaded, _ = await asyncio.gather(load_latest(bootstrap, catalog, keys, stop),
                                         follower.start())  # fmt: skip
    else:
        if start:
            await follower.start()
        loaded = await load_latest(bootstrap, catalog, keys, stop) if use_snapshot else None
    if loaded is None:
        follower.reset()
    else:
        follower.reset(loaded.state, loaded.covered_offset + 1)
    await follower.catch_up(stop)
    return loaded
