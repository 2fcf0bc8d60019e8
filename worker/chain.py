"""Operator chains: several vertices' subtasks run as one task, records passed by call.

The coordinator decides the chains (coordinator/domain/chaining.py) and deploys a chain as
one ``DeployTask`` of its first subtask whose ``chained`` lists the others. In the slot
process each operator of the chain is a ``Link``: its own ``TaskSpec`` (its own task
attempt, so states, metrics and checkpoints stay per vertex), its own
``CheckpointControl`` and its own ``TaskCounters``. Between two links there is no edge
topic: a ``ChainedOutput`` hands each record to the next operator's ``process`` and
each barrier to the next link's ``CheckpointControl.aligned`` (one input, so aligned at
once), which snapshots that operator and forwards the barrier on:

    head operator --ChainedOutput--> operator 2 --ChainedOutput--> ... last --> EdgeWriter

The head reads the chain's input edges, the last link writes its output edges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from schemas import events as ev
from worker.checkpointing import CheckpointControl
from worker.metrics import TaskCounters
from worker.operators.api import Operator, Output, Record, RecordOperator, TaskSpec


def link_specs(spec: TaskSpec) -> list[TaskSpec]:
    """The spec of every operator of the chain `spec` starts, head first. A spec
    without ``chained`` is a chain of one: ``[spec]``."""
    specs = [spec]
    for member in spec.chained:
        previous = specs[-1]
        forward = ev.Edge(source=previous.task.vertex_id, target=member.task.vertex_id)
        specs.append(
            replace(
                spec,
                task=member.task,
                operator=member.operator,
                vertex_name=member.vertex_name,
                max_parallelism=member.max_parallelism,
                config=dict(member.config),
                inputs=(forward,),
                outputs=member.outputs,
                restore_state_handle=member.restore_state_handle,
                chained=(),
            )
        )
    return specs


def io_specs(spec: TaskSpec) -> tuple[TaskSpec, TaskSpec]:
    """(the spec whose ``inputs`` the task reads, the spec whose ``outputs`` it writes)."""
    specs = link_specs(spec)
    return specs[0], specs[-1]


@dataclass
class Link:
    """One operator of a chain, with its own checkpoints and counters."""

    spec: TaskSpec
    checkpoints: CheckpointControl
    counters: TaskCounters
    operator: Operator | None = None


class ChainedOutput:
    """The output of a link that feeds the next one by function call."""

    def __init__(self, upstream: Link, downstream: Link, out: Output) -> None:
        operator = downstream.operator
        if not isinstance(operator, RecordOperator):
            what = downstream.spec.operator
            raise TypeError(f"{what!r} cannot be chained: not a record operator")
        self._operator = operator
        self._upstream = upstream.counters
        self._downstream = downstream.counters
        self._next = downstream.checkpoints
        self._out = out
        self.records = 0

    async def emit(self, record: Record) -> None:
        self.records += 1
        self._upstream.write_records += 1
        self._downstream.read_records += 1
        await self._operator.process(record, self._out)

    async def emit_batch(self, records: list[Record]) -> None:
        n = len(records)
        self.records += n
        self._upstream.write_records += n
        self._downstream.read_records += n
        await self._operator.process_batch(records, self._out)

    async def barrier(self, checkpoint_id: int) -> None:
        """The upstream operator snapshotted: the next one does, then passes it on."""
        await self._next.aligned(checkpoint_id, time.monotonic())


async def end_of_input(links: list[Link], outputs: list[Output]) -> None:
    """The head's input ended: every later operator ends, in chain order, each one's
    end-of-input output reaching the next before that one ends."""
    for link, out in zip(links[1:], outputs[1:], strict=True):
        assert isinstance(link.operator, RecordOperator)
        await link.operator.end_of_input(out)
