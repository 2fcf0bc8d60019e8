"""Runs one task attempt inside a slot process: operator lifecycle and states.

INITIALIZING while the operator is built and opened, RUNNING while it runs,
then FINISHED when a bounded input is exhausted, FAILED when it raises (with
the exception's name and stack), CANCELED when the asyncio task is cancelled.
DEPLOYING is reported by the TaskManager before the spec reaches the slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from schemas import events as ev
from worker.errors import TaskError
from worker.operators.api import (
    Operator,
    Output,
    Record,
    RecordOperator,
    SourceOperator,
    TaskContext,
    TaskSpec,
)
from worker.operators.registry import OperatorRegistry

ES = ev.ExecutionState

#: (state, error name, error stack) -> None; sends a state report to the TaskManager.
Report = Callable[[ES, str | None, str | None], None]


class CountingSink:
    """The end of the chain until edges exist: counts what reaches it."""

    def __init__(self) -> None:
        self.records = 0
        self.last: Record | None = None

    async def emit(self, record: Record) -> None:
        self.records += 1
        self.last = record


@dataclass
class ChainedOutput:
    """Feeds records into the next operator of a chain (Flink's chaining)."""

    operator: RecordOperator
    next: Output

    async def emit(self, record: Record) -> None:
        await self.operator.process(record, self.next)


class EdgesNotSupportedError(TaskError):
    """A record operator needs an input edge; edges arrive with the Kafka data plane."""


async def run_task(spec: TaskSpec, registry: OperatorRegistry, report: Report) -> None:
    """Run `spec` to its end, reporting every state; never raises except
    CancelledError (after reporting CANCELED)."""
    log = logging.getLogger(f"worker.task.{spec.describe()}")
    sink = CountingSink()
    operator: Operator | None = None
    began = time.monotonic()
    try:
        report(ES.INITIALIZING, None, None)
        operator = registry.factory(spec.operator)()
        ctx = TaskContext(spec, log)
        if isinstance(operator, RecordOperator):
            raise EdgesNotSupportedError(
                f"operator {spec.operator!r} consumes records; input edges are not supported yet"
            )
        if not isinstance(operator, SourceOperator):
            raise TaskError(f"operator {spec.operator!r} built a {type(operator).__name__}")
        await operator.open(ctx)
        report(ES.RUNNING, None, None)
        await operator.run(ctx, sink)
    except asyncio.CancelledError:
        log.info("canceled after %d records", sink.records)
        await _close(operator, log)
        report(ES.CANCELED, None, None)
        raise
    except Exception as error:
        log.info("failed after %d records: %r", sink.records, error)
        await _close(operator, log)
        report(ES.FAILED, type(error).__name__, traceback.format_exc())
        return
    await _close(operator, log)
    log.info("finished: %d records in %.3f s", sink.records, time.monotonic() - began)
    report(ES.FINISHED, None, None)


async def _close(operator: Operator | None, log: logging.Logger) -> None:
    # A failing close must not hide how the task ended.
    if operator is None:
        return
    try:
        await operator.close()
    except Exception:
        log.exception("close failed")
