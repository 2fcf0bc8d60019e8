"""The snapshot ladder's choice (issue 18, item 2), on a generated journal in memory:
at 20 random points, by offset and by time, the newest snapshot wholly before the
point plus the events after it fold to the state of a replay from the start."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random

from coordinator.domain import State, evolve, state_digest
from coordinator.runtime import snapshots
from coordinator.runtime.journal import StopAt
from schemas import events as ev
from schemas.catalog import Catalog
from schemas.codec import default_codec
from tests.bench.workload import JournalGenerator

EVENTS = 3_000
EVERY = 250


@functools.cache
def _journal() -> tuple[list[ev.JournalEvent], list[ev.SnapshotChunk]]:
    """The generated events (offset = index) and a snapshot after every batch that
    crosses EVERY events, stamped with the generator's clock as the leader stamps one."""
    gen = JournalGenerator(Catalog("ladder"))
    codec = default_codec()
    events: list[ev.JournalEvent] = []
    chunks: list[ev.SnapshotChunk] = []
    for batch in gen.batches(EVENTS):
        for _, value, _ in batch:
            event = codec.decode(value)
            assert isinstance(event, ev.JournalEvent)
            events.append(event)
        covered = len(events) - 1
        if covered // EVERY != (covered - len(batch)) // EVERY:
            chunks += snapshots.chunks(gen.state, f"s-{covered}", covered, 1, gen.now)
    return events, chunks


def _fold(events: list[ev.JournalEvent], state: State, start: int, end: int) -> str:
    for event in itertools.islice(events, start, end):
        evolve(state, event)
    return state_digest(state)


def test_newest_snapshot_before_a_point_plus_tail_equals_full_replay() -> None:
    events, chunks = _journal()
    covered = sorted({c.covered_offset for c in chunks})
    assert len(covered) >= 8
    rng = random.Random(18)
    for point in rng.sample(range(len(events)), 20):
        full = _fold(events, State(), 0, point + 1)
        loaded = snapshots.assemble(chunks, snapshots.usable_for(StopAt(offset=point + 1)))
        before = [c for c in covered if c <= point]
        if not before:
            assert loaded is None
            continue
        assert loaded is not None and loaded.covered_offset == before[-1]
        assert _fold(events, loaded.state, loaded.covered_offset + 1, point + 1) == full

        # By time: the prefix stamped at or before the point's stamp (the generator's
        # clock never goes back, so the prefix is contiguous).
        until = events[point].event_time
        prefix = sum(1 for e in events if e.event_time <= until)
        by_time = snapshots.assemble(chunks, snapshots.usable_for(StopAt(until_ms=until)))
        if by_time is None:
            continue
        assert by_time.covered_offset < prefix
        tail = _fold(events, by_time.state, by_time.covered_offset + 1, prefix)
        assert tail == _fold(events, State(), 0, prefix)


def test_an_unreadable_newest_snapshot_falls_back_to_an_older_one() -> None:
    events, chunks = _journal()
    newest = max(c.covered_offset for c in chunks)
    broken = [
        c if c.covered_offset != newest else dataclasses.replace(c, payload=b"x") for c in chunks
    ]
    loaded = snapshots.assemble(broken)
    assert loaded is not None and loaded.covered_offset < newest
    assert loaded.skipped and "unreadable" in loaded.skipped[0]
    tail = _fold(events, loaded.state, loaded.covered_offset + 1, len(events))
    assert tail == _fold(events, State(), 0, len(events))


def test_the_leaders_snapshot_and_digest_from_one_conversion_are_the_separate_ones() -> None:
    events, _ = _journal()
    state = State()
    for event in events:
        evolve(state, event)
    parts, digest = snapshots.chunks_and_digest(state, "s", 7, 1, 9)
    assert parts == snapshots.chunks(state, "s", 7, 1, 9)
    assert digest == state_digest(state)
