"""A task's side of checkpoints: barriers in and out, snapshots, acknowledgements.

docs/checkpoints.md ("Barriers and alignment", "Restore") is the design; here:

- ``CheckpointControl``: one per task attempt. The slot process hands it the
  ``TriggerCheckpoint``\\ s of a source task (``trigger``); a non-source task's
  ``EdgeReader`` calls ``aligned`` once a barrier has arrived on every input.
  Either way the task captures its operator's snapshot at a record boundary,
  forwards the barrier on every output partition, then writes the snapshot to
  the state store in the background (processing goes on) and reports an
  ``Acked`` (or a ``Declined`` with the reason) to the TaskManager, which turns
  it into ``CheckpointAcknowledged`` / ``CheckpointDeclined``.
- ``BarrierOutput``: what a source emits to. Each emit holds a lock, so a
  checkpoint of a source is taken between two records: the position it
  snapshots and the barrier it injects agree.
- ``restore``: read a snapshot back from the store into a fresh operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from schemas import events as ev
from schemas.limits import FINISHED_TASK_HANDLE
from schemas.savepoint import read_state
from schemas.snapshot import TaskSnapshot, decode_snapshot, encode_snapshot
from schemas.statestore import StateStore, StateStoreError
from schemas.validation import SAVEPOINT_HANDLE_PREFIX
from worker.errors import TaskError
from worker.operators.api import Operator, Output, Record, TaskSpec, emit_batch


@dataclass(frozen=True, slots=True)
class Acked:
    """The task wrote its part of a checkpoint (slot process -> TaskManager)."""

    task: ev.TaskRef
    checkpoint_id: int
    handle: str
    state_size: int
    duration_ms: int
    alignment_ms: int


@dataclass(frozen=True, slots=True)
class Declined:
    """The task cannot take part in a checkpoint, and why."""

    task: ev.TaskRef
    checkpoint_id: int
    reason: str


CheckpointReport = Acked | Declined


class BarrierWriter(Protocol):
    """An output that can carry barriers (``EdgeWriter``; a sink has nowhere to send them)."""

    async def barrier(self, checkpoint_id: int) -> None: ...


class RestoreError(TaskError):
    """The task was deployed to restore state it cannot have."""


def state_name(task: ev.TaskRef) -> str:
    """The task's state name in a checkpoint (``schemas.statestore.NAME_PATTERN``)."""
    return f"{task.vertex_id}-{task.subtask_index}"


class BarrierOutput:
    """A source's output: records and barriers never interleave mid-record."""

    def __init__(self, inner: Output) -> None:
        self.inner = inner
        self.lock = asyncio.Lock()

    async def emit(self, record: Record) -> None:
        async with self.lock:
            await self.inner.emit(record)

    async def emit_batch(self, records: list[Record]) -> None:
        """A barrier goes before or after the whole batch, never inside it."""
        async with self.lock:
            await emit_batch(self.inner, records)


def _ms_since(began: float) -> int:
    return max(0, round((time.monotonic() - began) * 1000))


class CheckpointControl:
    """The checkpoints of one task attempt (see the module docstring)."""

    def __init__(
        self,
        spec: TaskSpec,
        store: StateStore | None,
        send: Callable[[CheckpointReport], None],
        log: logging.Logger | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self._send = send
        self._log = log or logging.getLogger(__name__)
        self._operator: Operator | None = None
        self._output: object = None
        self._source: BarrierOutput | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._notified: asyncio.Task[None] | None = None  # the latest notification
        self._returned = False
        #: ids acknowledged so far (tests and logs).
        self.acked: list[int] = []
        #: the controls of the operators chained after this one (worker/chain.py): a
        #: trigger that reaches a finished chain is acknowledged for each of them too.
        self.followers: list[CheckpointControl] = []

    # ------------------------------------------------------------- wiring

    def for_chained(self, spec: TaskSpec) -> CheckpointControl:
        """The control of an operator chained after this one (worker/chain.py): the same
        store and reports, its own task attempt, state and acknowledgements."""
        name = f"worker.task.{spec.describe()}"
        return CheckpointControl(spec, self.store, self._send, logging.getLogger(name))

    def attach(self, operator: Operator, output: object) -> None:
        """The task runs `operator` writing to `output` (an EdgeWriter or a sink)."""
        self._operator, self._output = operator, output

    def source_output(self, output: Output) -> BarrierOutput:
        """Wrap a source's output; triggers are accepted from now until `source_done`."""
        self._source = BarrierOutput(output)
        return self._source

    async def source_done(self) -> None:
        """The source returned: the checkpoints already triggered send their
        barriers (before the end markers), later triggers are acknowledged as
        finished (docs/checkpoints.md, "Finished tasks")."""
        source = self._source
        if source is not None:
            async with source.lock:  # after the triggers queued before us
                self._source = None
                self._returned = True

    # ------------------------------------------------------------ sources

    def trigger(self, checkpoint_id: int) -> None:
        """A TriggerCheckpoint for this task (called on the task's event loop)."""
        if self._source is None and self._finished():
            self.finished(checkpoint_id)
            return
        if self._source is None:
            if self._operator is None:
                why = "task not running yet"
            else:
                why = "not a source task (its barriers come through its input edges)"
            self._decline(checkpoint_id, why)
            return
        task = asyncio.create_task(self._source_checkpoint(checkpoint_id, self._source))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _finished(self) -> bool:
        """A source that returned, or a task restored as finished."""
        return self._returned or self.spec.restore_state_handle == FINISHED_TASK_HANDLE

    def finished(self, checkpoint_id: int) -> None:
        """Acknowledge a trigger that reached a finished task (FLIP-147): it emits
        no barrier (its end markers follow, or went out, after its last record),
        so the downstream tasks align without it and their snapshots hold all of
        its output; its state is FINISHED_TASK_HANDLE, restored as finished."""
        self._log.info("checkpoint %d: task finished, acknowledged as finished", checkpoint_id)
        self.acked.append(checkpoint_id)
        self._send(Acked(self.spec.task, checkpoint_id, FINISHED_TASK_HANDLE, 0, 0, 0))
        for follower in self.followers:
            follower.finished(checkpoint_id)

    async def _source_checkpoint(self, checkpoint_id: int, out: BarrierOutput) -> None:
        began = time.monotonic()
        try:
            async with out.lock:  # between two records
                data = await self._capture(checkpoint_id)
                await self._forward(checkpoint_id)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._decline(checkpoint_id, f"snapshot failed: {type(err).__name__}: {err}")
            return
        await self._write(checkpoint_id, data, began, 0)

    # -------------------------------------------------------- non-sources

    async def aligned(self, checkpoint_id: int, alignment_began: float) -> None:
        """Barrier `checkpoint_id` arrived on every input (EdgeReader): snapshot,
        forward the barrier, write the snapshot in the background."""
        alignment_ms = _ms_since(alignment_began)
        try:
            data = await self._capture(checkpoint_id)
        except Exception as err:
            self._decline(checkpoint_id, f"snapshot failed: {type(err).__name__}: {err}")
            await self._forward(checkpoint_id)  # downstream must not wait for it
            return
        await self._forward(checkpoint_id)
        task = asyncio.create_task(self._write(checkpoint_id, data, alignment_began, alignment_ms))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def abandoned(self, checkpoint_id: int, reason: str) -> None:
        """An alignment given up (a newer barrier overtook it)."""
        self._decline(checkpoint_id, reason)

    # ------------------------------------------------------ notifications

    def notify(self, checkpoint_id: int, *, completed: bool) -> None:
        """NotifyCheckpointComplete / NotifyCheckpointAborted for this task (called on
        the task's event loop): passed on to the operator in the background, in the
        order they arrive. A failing hook is logged; the operator fails its task
        itself (the exactly-once sink raises at its next record or at the end)."""
        if self._operator is None:
            self._log.info("checkpoint %d outcome before the task runs: ignored", checkpoint_id)
            return
        operator = self._operator
        previous = self._notified

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            try:
                if completed:
                    await operator.notify_checkpoint_complete(checkpoint_id)
                else:
                    await operator.notify_checkpoint_aborted(checkpoint_id)
            except Exception:
                what = "complete" if completed else "aborted"
                self._log.exception("checkpoint %d %s: the operator failed", checkpoint_id, what)

        task = asyncio.create_task(run())
        self._notified = task
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ------------------------------------------------------------- common

    async def _capture(self, checkpoint_id: int) -> bytes:
        assert self._operator is not None
        snapshot = await self._operator.snapshot_state_at(checkpoint_id)
        # Edges are per attempt (docs/checkpoints.md, "Restore"): a restored
        # task reads fresh edge topics from their start, so input positions
        # would never be used and are not stored.
        return encode_snapshot(
            TaskSnapshot(
                operator_state=snapshot.operator_state,
                source_positions=snapshot.source_positions,
            )
        )

    async def _forward(self, checkpoint_id: int) -> None:
        barrier = getattr(self._output, "barrier", None)
        if barrier is not None:
            await barrier(checkpoint_id)

    async def _write(
        self, checkpoint_id: int, data: bytes, began: float, alignment_ms: int
    ) -> None:
        task = self.spec.task
        try:
            # What came before the snapshot must be durable first (a sink's records).
            await self._operator_durable(checkpoint_id)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._decline(checkpoint_id, f"output before the barrier not delivered: {err!r}")
            return
        if self.store is None:
            self._decline(checkpoint_id, "this worker has no state store")
            return
        try:
            handle = await self.store.put(task.job_id, checkpoint_id, state_name(task), data)
        except StateStoreError as err:
            self._decline(checkpoint_id, f"writing state failed: {err.reason}")
            return
        except Exception as err:  # a broken store: the checkpoint fails, not the task
            self._decline(checkpoint_id, f"writing state failed: {type(err).__name__}: {err}")
            return
        duration = _ms_since(began)
        self._log.info(
            "checkpoint %d: %d bytes at %s in %d ms (alignment %d ms)",
            checkpoint_id, len(data), handle, duration, alignment_ms,
        )  # fmt: skip
        self.acked.append(checkpoint_id)
        self._send(Acked(task, checkpoint_id, handle, len(data), duration, alignment_ms))

    async def _operator_durable(self, checkpoint_id: int) -> None:
        operator = self._operator
        durable = getattr(operator, "snapshot_durable", None)
        if durable is not None:
            await durable(checkpoint_id)

    def _decline(self, checkpoint_id: int, reason: str) -> None:
        self._log.info("checkpoint %d declined: %s", checkpoint_id, reason)
        self._send(Declined(self.spec.task, checkpoint_id, reason))

    async def drain(self) -> None:
        """Wait for the snapshots still being written (before the task reports its end)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        """Stop writing (the task is cancelled or failed)."""
        for task in list(self._writes):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    # ------------------------------------------------------------ restore

    async def restore(self, operator: Operator) -> TaskSnapshot | None:
        """Restore `operator` from the DeployTask's state handle, if it has one."""
        handle = self.spec.restore_state_handle
        if handle is None:
            return None
        if self.store is None and not handle.startswith(SAVEPOINT_HANDLE_PREFIX):
            raise RestoreError(f"cannot restore {handle}: this worker has no state store")
        try:
            # A job submitted from a savepoint reads its first state from the savepoint.
            snapshot = decode_snapshot(await read_state(self.store, handle))
        except StateStoreError as err:
            raise RestoreError(
                f"restoring checkpoint {self.spec.restore_checkpoint_id} from {handle}: "
                f"{err.reason}"
            ) from err
        await operator.restore_state(snapshot)
        self._log.info("restored checkpoint %s from %s", self.spec.restore_checkpoint_id, handle)
        return snapshot
