"""Runs one task attempt inside a slot process: operator lifecycle and states.

INITIALIZING while the operator, its input and its output are opened and restored
(the edge topics are made sure of in the background: the first send and the first
fetch wait for them); RUNNING while it runs; then FINISHED when a bounded
input is exhausted (and, with outgoing edges, once the end-of-stream markers
and every record before them are acknowledged), FAILED when it raises (with
the exception's name and stack, bounded by ``worker.failures``), CANCELED when
the asyncio task is cancelled.
DEPLOYING is reported by the TaskManager before the spec reaches the slot.

A task runs one vertex, or a chain of vertices whose records pass by function call
(worker/chain.py, docs/dataplane.md "Operator chaining"):

    source operator ------------------\
                                        +--> [chained operators] --> EdgeWriter (edges)
    EdgeReader --> record operator ----/                              or CountingSink (none)
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from schemas import events as ev
from schemas.limits import FINISHED_TASK_HANDLE
from schemas.validation import protected_topic_problems
from worker.chain import ChainedOutput, Link, end_of_input, link_specs
from worker.checkpointing import CheckpointControl
from worker.edges import EdgeClients, EdgeReader, EdgeWriter, create_edge_topics
from worker.errors import NonRecoverableError, ProtectedTopicError, TaskError
from worker.failures import describe
from worker.functions import FunctionRegistry
from worker.metrics import TaskCounters
from worker.operators.api import (
    KafkaEnv,
    Output,
    Record,
    RecordOperator,
    SourceOperator,
    TaskContext,
    TaskSpec,
)
from worker.operators.registry import OperatorRegistry

ES = ev.ExecutionState

#: (state, error name, error stack, non-recoverable) -> None; sends a state report to
#: the TaskManager. Non-recoverable: a ``NonRecoverableError`` failed the task.
Report = Callable[[ES, str | None, str | None, bool], None]


class CountingSink:
    """The output of a vertex without outgoing edges: counts what reaches it."""

    def __init__(self) -> None:
        self.records = 0
        self.last: Record | None = None

    async def emit(self, record: Record) -> None:
        self.records += 1
        self.last = record

    async def emit_batch(self, records: list[Record]) -> None:
        if records:
            self.records += len(records)
            self.last = records[-1]


class NoInputEdgesError(TaskError):
    """A record operator's vertex has no input edge: it would never see a record."""


class SourceWithInputsError(TaskError):
    """A source operator's vertex has input edges: nobody would read them."""


class _Resources:
    """What a task opened, closed in reverse order however it ends."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._closers: list[Callable[[], object]] = []

    def push(self, close: Callable[[], object]) -> None:
        self._closers.append(close)

    async def close(self) -> None:
        # A failing close must not hide how the task ended.
        while self._closers:
            close = self._closers.pop()
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                self._log.exception("close failed")


async def _run_operator(
    links: list[Link],
    ctxs: list[TaskContext],
    outputs: list[Output],
    reader: EdgeReader | None,
    resources: _Resources,
    report: Report,
    timings: dict[str, float],
) -> None:
    """Open and restore every operator of the chain (the last first, so each is ready
    before anything reaches it), then run the head to the end of its input (or of its
    source) and end the others in order."""
    head, ctx = links[0], ctxs[0]
    operator, checkpoints, output = head.operator, head.checkpoints, outputs[0]
    t1 = time.monotonic()
    for link, link_ctx, out in reversed(list(zip(links, ctxs, outputs, strict=True))):
        assert link.operator is not None
        resources.push(link.operator.close)
        await link.operator.open(link_ctx)
        await link.checkpoints.restore(link.operator)
        resources.push(link.checkpoints.close)
        link.checkpoints.attach(link.operator, out)
    for link in links:
        link.counters.start()
    report(ES.RUNNING, None, None, False)
    timings["operator_open"] = time.monotonic() - t1
    log_startup(ctx.log, timings)
    if isinstance(operator, SourceOperator):
        await operator.run(ctx, checkpoints.source_output(output))
        await checkpoints.source_done()
    else:
        assert reader is not None and isinstance(operator, RecordOperator)
        process_batch = operator.process_batch

        async def process(records: list[Record]) -> None:
            await process_batch(records, output)

        await reader.start()
        await reader.run(process, checkpoints.aligned, checkpoints.abandoned)
        await operator.end_of_input(output)
    await end_of_input(links, outputs)


async def _settle(task: asyncio.Task[list[str]]) -> None:
    """The edge topics' check, at the task's end: stopped if still under way; a failure
    nobody waited for (the task ended first) is no news."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def log_startup(log: logging.Logger, timings: dict[str, float]) -> None:
    """One line of start-up stage times (ms), read by the deploy-path benchmark."""
    log.info("startup ms: %s", " ".join(f"{k}={v * 1000:.1f}" for k, v in timings.items()))


def refuse_protected_topics(spec: TaskSpec, kafka: KafkaEnv | None) -> None:
    """ProtectedTopicError when the task's config names a topic no job may use
    (docs/security.md). The coordinator rejects such a job; this stops one deployed
    by a coordinator older than that rule, or by another writer of the commands."""
    if kafka is None:  # no Kafka, no topic to reach
        return
    where = f"vertex {spec.task.vertex_id!r} config"
    found = list(protected_topic_problems(spec.config, kafka.protected_prefixes(), where))
    if found:
        raise ProtectedTopicError("; ".join(found))


def _check_kinds(links: list[Link]) -> None:
    """A source heads its chain and reads no edge; every other operator is a record
    operator with an input (an edge, or the previous operator of its chain)."""
    for i, link in enumerate(links):
        spec, operator = link.spec, link.operator
        if isinstance(operator, RecordOperator):
            if not spec.inputs:
                raise NoInputEdgesError(
                    f"operator {spec.operator!r} consumes records but vertex "
                    f"{spec.task.vertex_id!r} has no input edge"
                )
        elif isinstance(operator, SourceOperator):
            if spec.inputs or i > 0:
                sources = ", ".join(e.source for e in spec.inputs)
                raise SourceWithInputsError(
                    f"source operator {spec.operator!r} cannot take input edges (from {sources})"
                )
        else:
            raise TaskError(f"operator {spec.operator!r} built a {type(operator).__name__}")


def default_links(
    spec: TaskSpec, checkpoints: CheckpointControl, counters: TaskCounters
) -> list[Link]:
    """The links of `spec`'s chain, the head's checkpoints and counters those given,
    the others' new ones on the head's store and report function."""
    specs = link_specs(spec)
    links = [Link(specs[0], checkpoints, counters)]
    for member in specs[1:]:
        control = checkpoints.for_chained(member)
        links.append(Link(member, control, TaskCounters()))
    checkpoints.followers = [link.checkpoints for link in links[1:]]
    return links


async def run_task(
    spec: TaskSpec,
    registry: OperatorRegistry,
    report: Report,
    *,
    kafka: KafkaEnv | None = None,
    functions: FunctionRegistry | None = None,
    checkpoints: CheckpointControl | None = None,
    counters: TaskCounters | None = None,
    links: list[Link] | None = None,
    clients: EdgeClients | None = None,
) -> None:
    """Run `spec` to its end, reporting every state; never raises except
    CancelledError (after reporting CANCELED). `checkpoints` takes the task's
    snapshots and restores it (without one: no state store, nothing to report).
    `counters` counts its I/O and times while it runs (worker/metrics.py).
    A chain (``spec.chained``) runs every operator in this one task: `links` gives
    each its checkpoints and counters (worker/chain.py; by default new ones).
    `clients` gives the edges their Kafka clients (a slot's warm ones; by default each
    is made and started when needed)."""
    log = logging.getLogger(f"worker.task.{spec.describe()}")
    if counters is None:
        counters = TaskCounters()
    if checkpoints is None:
        checkpoints = CheckpointControl(spec, None, lambda _report: None, log)
    if links is None:
        links = default_links(spec, checkpoints, counters)
    resources = _Resources(log)
    output: EdgeWriter | CountingSink = CountingSink()
    began = time.monotonic()
    # Start-up stages (s), logged once RUNNING is reported: the deploy-path benchmark's breakdown.
    timings: dict[str, float] = {}
    reader: EdgeReader | None = None
    try:
        report(ES.INITIALIZING, None, None, False)
        for link in links:
            refuse_protected_topics(link.spec, kafka)
            link.operator = registry.factory(link.spec.operator)()
        _check_kinds(links)
        ctxs = [TaskContext(link.spec, log, kafka, functions) for link in links]
        first, last = links[0], links[-1]
        t_edges = time.monotonic()
        # The chain's edge topics are made sure of in the background: the leader created
        # them as it decided the run, and only the first send and the first fetch wait
        # for them, after RUNNING (as Flink's tasks ask for their input partitions once
        # running). The producer and the consumer are the slot's warm ones.
        topics: asyncio.Task[list[str]] | None = None
        edges = replace(first.spec, outputs=last.spec.outputs)
        if edges.inputs or edges.outputs:
            topics = asyncio.create_task(create_edge_topics(ctxs[0].kafka, edges, clients))
            resources.push(functools.partial(_settle, topics))
        setup: list[Awaitable[object]] = []
        if last.spec.outputs:
            output = EdgeWriter(
                ctxs[-1].kafka, last.spec, last.counters, clients=clients, topics=topics
            )
            resources.push(output.close)
            setup.append(output.start())
        if first.spec.inputs:
            reader = EdgeReader(ctxs[0].kafka, first.spec, first.counters, clients, topics)
            resources.push(reader.close)
            setup.append(reader.connect())
        await asyncio.gather(*setup)
        timings["edge_clients"] = time.monotonic() - t_edges
        outputs: list[Output] = [output]
        for upstream, downstream in reversed(list(itertools.pairwise(links))):
            outputs.insert(0, ChainedOutput(upstream, downstream, outputs[0]))
        if spec.restore_state_handle == FINISHED_TASK_HANDLE:
            # It had finished when its checkpoint was taken: everything it read
            # and wrote is in the other tasks' state. It only ends its outputs.
            log.info("restored as finished (checkpoint %s)", spec.restore_checkpoint_id)
            report(ES.RUNNING, None, None, False)
        else:
            await _run_operator(links, ctxs, outputs, reader, resources, report, timings)
        if isinstance(output, EdgeWriter):
            await output.finish()
        for link in links:
            await link.checkpoints.drain()  # acknowledgements go before FINISHED
        _stop(links)
    except asyncio.CancelledError:
        _stop(links)
        log.info("canceled after %d records", output.records)
        await resources.close()
        report(ES.CANCELED, None, None, False)
        raise
    except Exception as error:
        _stop(links)
        log.info("failed after %d records: %r", output.records, error)
        await resources.close()
        report(ES.FAILED, *describe(error), isinstance(error, NonRecoverableError))
        return
    await resources.close()
    read = f" ({reader.records} read from edges)" if reader is not None else ""
    log.info("finished: %d records in %.3f s%s", output.records, time.monotonic() - began, read)
    report(ES.FINISHED, None, None, False)


def _stop(links: list[Link]) -> None:
    for link in links:
        link.counters.stop()
