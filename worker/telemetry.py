"""The worker's spans (docs/observability.md): children of the leader's spans.

A DeployTask or TriggerCheckpoint record carries the W3C ``traceparent`` of the
leader's ``task.deploy`` or ``checkpoint`` span; the commands port hands each
record's headers here (``note``) before the TaskManager sees the command.
Spans: ``worker.deploy`` from the DeployTask read until the slot reports the
task RUNNING (or it ends), ``worker.checkpoint`` from the trigger until the
task acknowledges or declines. Every entry point contains its own exceptions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from schemas import events as ev
from schemas.telemetry import ids
from schemas.telemetry.contained import contained
from schemas.telemetry.process import resident_bytes
from schemas.telemetry.providers import Telemetry

#: Trace contexts kept for commands not handled yet (older ones are forgotten).
MAX_PENDING_CONTEXTS = 4_096

TaskKey = tuple[str, str, int, int]


def _key(task: ev.TaskRef) -> TaskKey:
    return task.job_id, task.vertex_id, task.subtask_index, task.attempt


class WorkerTelemetry:
    def __init__(self, otel: Telemetry, tm_id: str) -> None:
        self.tracer = otel.tracer
        self.tm_id = tm_id
        self._contexts: OrderedDict[str, Context] = OrderedDict()
        self._deploys: dict[TaskKey, Span] = {}
        self._checkpoints: dict[tuple[TaskKey, int], Span] = {}
        self.deployments = otel.meter.create_counter(
            "jm.worker.deployments", unit="{task}", description="DeployTask commands accepted"
        )
        otel.meter.create_observable_gauge(
            "jm.process.memory", callbacks=[self._memory], unit="By",
            description="resident memory of this process (its slot processes not counted)",
        )  # fmt: skip

    def _memory(self, _: CallbackOptions) -> list[Observation]:
        try:
            return [Observation(resident_bytes(), {"jm.worker": self.tm_id})]
        except Exception:
            return []

    @contained
    def note(self, command: ev.WorkerCommand,
             headers: Iterable[tuple[str, bytes | None]] | None) -> None:  # fmt: skip
        """Keep the trace context of a command that starts traced work here."""
        if not isinstance(command, ev.DeployTask | ev.TriggerCheckpoint):
            return
        context = ids.extract(headers)
        if context is None:
            return
        self._contexts[command.event_id] = context
        while len(self._contexts) > MAX_PENDING_CONTEXTS:
            self._contexts.popitem(last=False)

    def _attributes(self, task: ev.TaskRef) -> dict[str, str | int]:
        return {"jm.worker": self.tm_id, "jm.job.id": task.job_id,
                "jm.task.vertex": task.vertex_id, "jm.task.subtask": task.subtask_index,
                "jm.task.attempt": task.attempt}  # fmt: skip

    @contained
    def deploy_received(self, command: ev.DeployTask) -> None:
        self.deployments.add(1, {"jm.worker": self.tm_id})
        parent = self._contexts.pop(command.event_id, None)
        if parent is None or _key(command.task) in self._deploys:
            return
        attributes = {**self._attributes(command.task), "jm.slot": command.slot_index}
        self._deploys[_key(command.task)] = self.tracer.start_span(
            "worker.deploy", context=parent, attributes=attributes
        )

    @contained
    def task_state(self, task: ev.TaskRef, state: ev.ExecutionState) -> None:
        span = self._deploys.get(_key(task))
        if span is None:
            return
        span.add_event(f"task {state}")
        if state is ev.ExecutionState.RUNNING or state.is_terminal:
            if state is ev.ExecutionState.FAILED:
                span.set_status(Status(StatusCode.ERROR, "task failed before running"))
            del self._deploys[_key(task)]
            span.end()

    @contained
    def checkpoint_triggered(self, command: ev.TriggerCheckpoint) -> None:
        parent = self._contexts.pop(command.event_id, None)
        if parent is None:
            return
        for task in command.tasks():
            key = (_key(task), command.checkpoint_id)
            if key not in self._checkpoints:
                attributes = {**self._attributes(task), "jm.checkpoint.id": command.checkpoint_id}
                self._checkpoints[key] = self.tracer.start_span(
                    "worker.checkpoint", context=parent, attributes=attributes
                )

    @contained
    def checkpoint_reported(self, task: ev.TaskRef, checkpoint_id: int, acked: bool) -> None:
        span = self._checkpoints.pop((_key(task), checkpoint_id), None)
        if span is None:
            return
        if not acked:
            span.set_status(Status(StatusCode.ERROR, "declined"))
        span.set_attribute("jm.checkpoint.outcome", "ACKNOWLEDGED" if acked else "DECLINED")
        span.end()
