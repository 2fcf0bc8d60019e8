"""Built-in operators: ``sequence`` (a source) and ``fault`` (fault injection for tests).

Both emit ``{"value": n}`` for n = start, start + 1, ...
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Final

from worker.operators.api import OperatorFactory, Output, SourceOperator, TaskContext

# A source that never awaits would keep the task's event loop from ever
# noticing a cancel; yield to it every this many records.
_YIELD_EVERY: Final = 256
CRASH_EXIT_CODE: Final = 70


class InjectedFault(Exception):
    """Raised by ``fault`` after ``fail_after`` records: a stand-in for a user bug."""


class Sequence(SourceOperator):
    """Emits count integers from start (count absent or 0: unbounded), at `rate`
    records per second (0: as fast as possible)."""

    async def open(self, ctx: TaskContext) -> None:
        self.start = ctx.config_int("start", 0)
        self.count = ctx.config_int("count", 0)
        self.rate = ctx.config_float("rate", 0.0)

    async def run(self, ctx: TaskContext, out: Output) -> None:
        await emit_sequence(out, self.start, self.count, self.rate)


class Fault(SourceOperator):
    """A sequence source that misbehaves on purpose.

    fail_after: raise InjectedFault after emitting this many records.
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
        self.hang = ctx.config_bool("hang", False)
        self.crash = ctx.config_bool("crash", False)
        self.slow_s = ctx.config_int("slow_ms", 0) / 1000
        self.start = ctx.config_int("start", 0)
        self.count = ctx.config_int("count", 0)
        self.rate = ctx.config_float("rate", 0.0)

    async def run(self, ctx: TaskContext, out: Output) -> None:
        if self.crash:
            os._exit(CRASH_EXIT_CODE)
        if self.hang:
            ctx.log.info("fault: hanging, ignoring cancellation")
            while True:
                time.sleep(3600)  # noqa: ASYNC251 -- blocking on purpose: ignores cancel
        emitted = 0
        n = self.start
        while self.count <= 0 or emitted < self.count:
            if emitted == self.fail_after:
                raise InjectedFault(f"fault injected after {emitted} records")
            if self.slow_s:
                await asyncio.sleep(self.slow_s)
            await out.emit({"value": n})
            emitted += 1
            n += 1
            if self.rate > 0:
                await asyncio.sleep(1 / self.rate)
            elif emitted % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if emitted == self.fail_after:
            raise InjectedFault(f"fault injected after {emitted} records")


async def emit_sequence(out: Output, start: int, count: int, rate: float) -> None:
    """Emit count integers from start (0: forever), paced at `rate` per second
    against the start time so that slow emits do not make the rate drift."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    emitted = 0
    while count <= 0 or emitted < count:
        await out.emit({"value": start + emitted})
        emitted += 1
        if rate > 0:
            delay = began + emitted / rate - loop.time()
            await asyncio.sleep(max(delay, 0))
        elif emitted % _YIELD_EVERY == 0:
            await asyncio.sleep(0)


BUILTINS: Final[dict[str, OperatorFactory]] = {"sequence": Sequence, "fault": Fault}
