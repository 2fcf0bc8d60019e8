"""Built-in operators.

Sources: ``sequence`` and ``fault`` (fault injection for tests), both emitting
``{"value": n}`` for n = start, start + 1, ...; ``kafka_source`` (``kafka_io``).

Record operators, each applying a registered function (``worker.functions``)
named by config ``function``: ``map``, ``filter``, ``flat_map``, ``key_by``;
keyed state in memory: ``keyed_count``, ``keyed_reduce``; ``kafka_sink``
(``kafka_io``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any, Final

from schemas.edges import key_string
from schemas.snapshot import TaskSnapshot
from worker.errors import TaskError
from worker.operators import kafka_io
from worker.operators.api import (
    OperatorFactory,
    Output,
    Record,
    RecordOperator,
    SourceOperator,
    TaskContext,
    emit_batch,
)

# A source that never awaits would keep the task's event loop from ever
# noticing a cancel; yield to it every this many records.
_YIELD_EVERY: Final = 256
#: Records per batch of an unpaced ``sequence`` (and at most per batch of a paced one).
SOURCE_BATCH: Final = 1000
#: A paced ``sequence`` emits what is due once per tick (s): at 10,000 records/s, 50
#: records a batch, instead of one record and one sleep each.
PACED_TICK_S: Final = 0.005
CRASH_EXIT_CODE: Final = 70


class InjectedFault(Exception):
    """Raised by ``fault`` after ``fail_after`` records: a stand-in for a user bug."""


def _emitted_of(snapshot: TaskSnapshot, operator: str) -> int:
    state = snapshot.operator_state
    emitted = state.get("emitted") if not isinstance(state, bytes) else None
    if not isinstance(emitted, int) or emitted < 0:
        raise TaskError(f"{operator}: restored state has no valid 'emitted' position: {state!r}")
    return emitted


class _Counted:
    """Counts what reaches `out` into the source's position (after each emit)."""

    def __init__(self, source: Sequence | Fault, out: Output) -> None:
        self.source, self.out = source, out

    async def emit(self, record: Record) -> None:
        await self.out.emit(record)
        self.source.emitted += 1

    async def emit_batch(self, records: list[Record]) -> None:
        await emit_batch(self.out, records)
        self.source.emitted += len(records)


class Sequence(SourceOperator):
    """Emits the integers start, start + 1, ... (count of them; absent or 0:
    unbounded), split across the vertex's subtasks: subtask i of p emits
    start + i, start + i + p, ... At `rate` records per second per subtask
    (0: as fast as possible). Its checkpointed state is how many it emitted:
    a restored subtask goes on with the next number."""

    async def open(self, ctx: TaskContext) -> None:
        self.start = ctx.config_int("start", 0)
        self.count = ctx.config_int("count", 0)
        self.rate = ctx.config_float("rate", 0.0)
        self.stamp = ctx.config_str("stamp", "") or None
        self.emitted = 0

    async def snapshot_state(self) -> TaskSnapshot:
        return TaskSnapshot(operator_state={"emitted": self.emitted})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        self.emitted = _emitted_of(snapshot, "sequence")

    async def run(self, ctx: TaskContext, out: Output) -> None:
        p, i = ctx.spec.parallelism, ctx.spec.task.subtask_index
        if self.count > 0:
            mine = max(0, (self.count - i + p - 1) // p) - self.emitted
            if mine <= 0:
                return
        else:
            mine = 0
        first = self.start + i + self.emitted * p
        out = _Counted(self, out)
        await emit_sequence(out, first, mine, self.rate, step=p, stamp=self.stamp)


class Fault(SourceOperator):
    """A sequence source that misbehaves on purpose.

    fail_after: raise InjectedFault after emitting this many records.
    fail_attempts: only attempts below this number fail (default: every
      attempt), so a restarted job can get through.
    fail_message_bytes: pad the failure's message to this many bytes (a user
      exception quoting a huge record).
    hang: "true" blocks the task forever in a way no cancel can interrupt (a
      blocking sleep that never returns to the event loop), so the worker has
      to kill the slot process.
    slow_ms: sleep this long before each record.
    crash: "true" ends the whole slot process at once (os._exit), as a crash in
      native code would: the worker reports FAILED and replaces the process.
    count, start, rate: as for ``sequence`` (count 0: unbounded).
    """

    async def open(self, ctx: TaskContext) -> None:
        self.fail_after = ctx.config_int("fail_after", -1)
        self.fail_message_bytes = ctx.config_int("fail_message_bytes", 0)
        if ctx.spec.task.attempt >= ctx.config_int("fail_attempts", ctx.spec.task.attempt + 1):
            self.fail_after = -1
        self.hang = ctx.config_bool("hang", False)
        self.crash = ctx.config_bool("crash", False)
        self.slow_s = ctx.config_int("slow_ms", 0) / 1000
        self.start = ctx.config_int("start", 0)
        self.count = ctx.config_int("count", 0)
        self.rate = ctx.config_float("rate", 0.0)
        self.emitted = 0

    async def snapshot_state(self) -> TaskSnapshot:
        return TaskSnapshot(operator_state={"emitted": self.emitted})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        self.emitted = _emitted_of(snapshot, "fault")

    def _fail(self, message: str) -> None:
        padding = self.fail_message_bytes - len(message)
        raise InjectedFault(message + (f" {'x' * (padding - 1)}" if padding > 1 else ""))

    async def run(self, ctx: TaskContext, out: Output) -> None:
        if self.crash:
            os._exit(CRASH_EXIT_CODE)
        if self.hang:
            ctx.log.info("fault: hanging, ignoring cancellation")
            while True:
                time.sleep(3600)  # noqa: ASYNC251 -- blocking on purpose: ignores cancel
        counted = _Counted(self, out)
        while self.count <= 0 or self.emitted < self.count:
            if self.emitted == self.fail_after:
                self._fail(f"fault injected after {self.emitted} records")
            if self.slow_s:
                await asyncio.sleep(self.slow_s)
            await counted.emit({"value": self.start + self.emitted})
            if self.rate > 0:
                await asyncio.sleep(1 / self.rate)
            elif self.emitted % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if self.emitted == self.fail_after:
            raise InjectedFault(f"fault injected after {self.emitted} records")


async def emit_sequence(
    out: Output, start: int, count: int, rate: float, step: int = 1, stamp: str | None = None
) -> None:
    """Emit count integers start, start + step, ... (count 0: forever). Unpaced: in
    batches of `SOURCE_BATCH`. Paced at `rate` per second: record k is due at
    k / rate s after the start, and every `PACED_TICK_S` (or when the next record is
    due, if later) what is due by then leaves as one batch, at most `SOURCE_BATCH`
    at a time, so slow emits do not make the rate drift. `stamp`: a field set to
    each record's time in ms since the epoch (latency measurements): when it was
    due when paced (it leaves at most a tick later), when it left when unpaced."""
    if rate <= 0:
        emitted = 0
        while count <= 0 or emitted < count:
            n = SOURCE_BATCH if count <= 0 else min(SOURCE_BATCH, count - emitted)
            first = start + emitted * step
            values = range(first, first + n * step, step)
            if stamp is None:
                await emit_batch(out, [{"value": v} for v in values])
            else:
                t = int(time.time() * 1000)
                await emit_batch(out, [{"value": v, stamp: t} for v in values])
            emitted += n
            await asyncio.sleep(0)  # a cancel, a checkpoint trigger get their turn
        return
    await emit_sequence_paced(out, start, count, rate, step, stamp)


async def emit_sequence_paced(
    out: Output, start: int, count: int, rate: float, step: int, stamp: str | None
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    began_ms = time.time() * 1000  # the wall clock of record 0's due time
    ms_per_record = 1000 / rate
    emitted = 0
    while count <= 0 or emitted < count:
        due = int((loop.time() - began) * rate) + 1  # record 0 is due at once
        if count > 0:
            due = min(due, count)
        n = min(due - emitted, SOURCE_BATCH)
        if n > 0:
            first = start + emitted * step
            values = range(first, first + n * step, step)
            if stamp is None:
                await emit_batch(out, [{"value": v} for v in values])
            else:
                ks = range(emitted, emitted + n)
                await emit_batch(
                    out,
                    [
                        {"value": v, stamp: int(began_ms + k * ms_per_record)}
                        for v, k in zip(values, ks, strict=True)
                    ],
                )
            emitted += n
        if emitted < due:  # behind (more was due than one batch): no sleep
            await asyncio.sleep(0)
            continue
        next_due = began + emitted / rate
        await asyncio.sleep(max(next_due - loop.time(), PACED_TICK_S))


class MissingFieldError(TaskError):
    """A record lacks the field an operator's config names."""


def _get(record: Record, name: str, operator: str) -> Any:
    try:
        return record[name]
    except KeyError:
        raise MissingFieldError(f"{operator}: record has no field {name!r}: {record}") from None


class Map(RecordOperator):
    """Emits ``function(record)`` for every record."""

    async def open(self, ctx: TaskContext) -> None:
        self.fn: Callable[[Record], Record] = ctx.function()

    async def process(self, record: Record, out: Output) -> None:
        await out.emit(self.fn(record))

    async def process_batch(self, records: list[Record], out: Output) -> None:
        fn = self.fn
        await emit_batch(out, [fn(r) for r in records])


class Filter(RecordOperator):
    """Emits the records for which ``function(record)`` is true."""

    async def open(self, ctx: TaskContext) -> None:
        self.fn: Callable[[Record], bool] = ctx.function()

    async def process(self, record: Record, out: Output) -> None:
        if self.fn(record):
            await out.emit(record)

    async def process_batch(self, records: list[Record], out: Output) -> None:
        fn = self.fn
        kept = [r for r in records if fn(r)]
        if kept:
            await emit_batch(out, kept)


class FlatMap(RecordOperator):
    """Emits every record of the iterable ``function(record)`` returns."""

    async def open(self, ctx: TaskContext) -> None:
        self.fn: Callable[[Record], Any] = ctx.function()

    async def process(self, record: Record, out: Output) -> None:
        for produced in self.fn(record):
            await out.emit(produced)

    async def process_batch(self, records: list[Record], out: Output) -> None:
        fn = self.fn
        produced = [p for r in records for p in fn(r)]
        if produced:
            await emit_batch(out, produced)


class KeyBy(RecordOperator):
    """Sets field `key_field` (default ``key``) to ``function(record)``; a HASH
    edge on that field then sends each key to one downstream subtask."""

    async def open(self, ctx: TaskContext) -> None:
        self.fn: Callable[[Record], Any] = ctx.function()
        self.key_field = ctx.config_str("key_field", "key")

    async def process(self, record: Record, out: Output) -> None:
        await out.emit({**record, self.key_field: self.fn(record)})

    async def process_batch(self, records: list[Record], out: Output) -> None:
        fn, k = self.fn, self.key_field
        await emit_batch(out, [{**r, k: fn(r)} for r in records])


def _fields(raw: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in raw.split(",") if f.strip())


def _keyed_of(snapshot: TaskSnapshot, name: str, operator: str) -> dict[str, Any]:
    state = snapshot.operator_state
    keyed = state.get(name) if not isinstance(state, bytes) else None
    if not isinstance(keyed, dict):
        raise TaskError(f"{operator}: restored state has no {name!r} mapping: {state!r}")
    return keyed


class KeyedCount(RecordOperator):
    """Counts records per `key_field` (default ``key``) and emits
    ``{key_field: key, "count": n}`` on every update. The counts are its
    checkpointed state: a task restored from a checkpoint counts on from them."""

    async def open(self, ctx: TaskContext) -> None:
        self.key_field = ctx.config_str("key_field", "key")
        self.carry = _fields(ctx.config_str("carry", ""))
        self.counts: dict[str, int] = {}

    async def snapshot_state(self) -> TaskSnapshot:
        return TaskSnapshot(operator_state={"counts": dict(self.counts)})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        self.counts = dict(_keyed_of(snapshot, "counts", "keyed_count"))

    async def process(self, record: Record, out: Output) -> None:
        key = _get(record, self.key_field, "keyed_count")
        name = key if isinstance(key, str) else key_string(key)
        count = self.counts.get(name, 0) + 1
        self.counts[name] = count
        update = {self.key_field: key, "count": count}
        for f in self.carry:
            if f in record:
                update[f] = record[f]
        await out.emit(update)

    async def process_batch(self, records: list[Record], out: Output) -> None:
        """The batch's updates in one pass over the state (one emit of them all)."""
        counts, k, carry = self.counts, self.key_field, self.carry
        updates: list[Record] = []
        append = updates.append
        for record in records:
            try:
                key = record[k]
            except KeyError:
                raise MissingFieldError(
                    f"keyed_count: record has no field {k!r}: {record}"
                ) from None
            kind = type(key)  # inline: a call per record is a tenth of this loop
            name = key if kind is str else str(key) if kind is int else key_string(key)
            count = counts[name] = counts.get(name, 0) + 1
            update = {k: key, "count": count}
            if carry:
                for f in carry:
                    if f in record:
                        update[f] = record[f]
            append(update)
        await emit_batch(out, updates)


class KeyedReduce(RecordOperator):
    """Folds `value_field` (default ``value``) per `key_field` (default ``key``)
    with the registered reduce `function` (e.g. ``sum``, ``max``) and emits
    ``{key_field: key, value_field: result}`` on every update."""

    async def open(self, ctx: TaskContext) -> None:
        self.fn: Callable[[Any, Any], Any] = ctx.function()
        self.key_field = ctx.config_str("key_field", "key")
        self.value_field = ctx.config_str("value_field", "value")
        self.state: dict[str, Any] = {}

    async def snapshot_state(self) -> TaskSnapshot:
        # Values are JSON (they come from records); the envelope copies them.
        return TaskSnapshot(operator_state={"state": dict(self.state)})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        self.state = dict(_keyed_of(snapshot, "state", "keyed_reduce"))

    async def process(self, record: Record, out: Output) -> None:
        key = _get(record, self.key_field, "keyed_reduce")
        value = _get(record, self.value_field, "keyed_reduce")
        name = key if isinstance(key, str) else key_string(key)
        if name in self.state:
            value = self.fn(self.state[name], value)
        self.state[name] = value
        await out.emit({self.key_field: key, self.value_field: value})

    async def process_batch(self, records: list[Record], out: Output) -> None:
        """The batch's updates in one pass over the state (one emit of them all)."""
        state, fn, k, v = self.state, self.fn, self.key_field, self.value_field
        updates: list[Record] = []
        for record in records:
            key = _get(record, k, "keyed_reduce")
            value = _get(record, v, "keyed_reduce")
            name = key if type(key) is str else key_string(key)
            if name in state:
                value = fn(state[name], value)
            state[name] = value
            updates.append({k: key, v: value})
        await emit_batch(out, updates)


BUILTINS: Final[dict[str, OperatorFactory]] = {
    "sequence": Sequence,
    "fault": Fault,
    "kafka_source": kafka_io.KafkaSource,
    "kafka_sink": kafka_io.KafkaSink,
    "map": Map,
    "filter": Filter,
    "flat_map": FlatMap,
    "key_by": KeyBy,
    "keyed_count": KeyedCount,
    "keyed_reduce": KeyedReduce,
}
