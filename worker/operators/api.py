"""The operator API: what user code implements and what a task gives it.

Flink's split, reduced to what Python needs:

- a ``SourceOperator`` produces records until its input ends (bounded) or the
  task is cancelled (unbounded): ``sequence``, ``kafka_source``;
- a ``RecordOperator`` sees one record at a time and emits any number
  (map, filter, key-by, keyed count/reduce); ``end_of_input`` is where keyed
  aggregations flush when a bounded input ends.

A task runs one vertex (docs/dataplane.md): its input is either the operator
itself (a source) or the reader of its input edge topics, which understands
end-of-stream markers; its output is the writer of its output edge topics, or
a counter when the vertex has no outgoing edge (a Kafka sink writes to its own
topic and emits nothing). Operators are async so that Kafka sources and sinks
(aiokafka) run in the same loop; cancellation is asyncio cancellation of the
task, which reaches an operator at its next ``await``.

Records are plain dicts of field name to value: edges carry a ``key_field``
(``schemas.events.Edge``), and dicts map directly onto Avro records.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from schemas import events as ev
from schemas.catalog import Catalog
from schemas.snapshot import TaskSnapshot
from schemas.validation import protected_prefixes
from worker.errors import OperatorConfigError, TaskError
from worker.functions import FunctionRegistry

Record = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """Everything a slot process needs to run one task attempt (from a DeployTask)."""

    task: ev.TaskRef
    operator: str
    vertex_name: str
    parallelism: int
    max_parallelism: int
    config: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[ev.Edge, ...] = ()
    outputs: tuple[ev.Edge, ...] = ()
    vertex_parallelism: Mapping[str, int] = field(default_factory=dict)
    restore_checkpoint_id: int | None = None
    restore_state_handle: str | None = None
    # When the job was accepted (ms): the same for every attempt of the job.
    job_accepted_at: int | None = None
    # The subtasks chained after this one, run in the same task (worker/chain.py).
    chained: tuple[ev.ChainedTask, ...] = ()

    @classmethod
    def from_command(cls, command: ev.DeployTask) -> TaskSpec:
        return cls(
            task=command.task,
            operator=command.operator,
            vertex_name=command.vertex_name,
            parallelism=command.parallelism,
            max_parallelism=command.max_parallelism,
            config=dict(command.config),
            inputs=command.inputs,
            outputs=command.outputs,
            vertex_parallelism=dict(command.vertex_parallelism),
            restore_checkpoint_id=command.restore_checkpoint_id,
            restore_state_handle=command.restore_state_handle,
            job_accepted_at=command.job_accepted_at,
            chained=command.chained,
        )

    def describe(self) -> str:
        t = self.task
        return f"{t.job_id}/{self.vertex_name}[{t.subtask_index}]#{t.attempt}"


@dataclass(frozen=True, slots=True)
class KafkaEnv:
    """Where the cluster's Kafka is: what edges, Kafka sources and sinks connect to.

    `protected_topic_prefixes`: the configured ones (``--protected-topic-prefix``);
    the cluster's own prefix is always protected (``protected_prefixes``)."""

    bootstrap: str
    catalog: Catalog
    protected_topic_prefixes: tuple[str, ...] = ()

    def protected_prefixes(self) -> tuple[str, ...]:
        """The topic prefixes no task may name in its config."""
        return protected_prefixes(self.catalog.prefix, self.protected_topic_prefixes)


class NoKafkaError(TaskError):
    """The operator needs Kafka but the task runs without it (an in-process test)."""


class TaskContext:
    """What an operator may know about the task running it."""

    def __init__(
        self,
        spec: TaskSpec,
        logger: logging.Logger,
        kafka: KafkaEnv | None = None,
        functions: FunctionRegistry | None = None,
    ) -> None:
        self.spec = spec
        self.log = logger
        self._kafka = kafka
        self.functions = functions if functions is not None else FunctionRegistry.builtin()

    @property
    def config(self) -> Mapping[str, str]:
        return self.spec.config

    @property
    def kafka(self) -> KafkaEnv:
        if self._kafka is None:
            raise NoKafkaError(f"{self.spec.operator!r} needs Kafka; this task runs without it")
        return self._kafka

    def config_str(self, name: str, default: str | None = None) -> str:
        """A string config value; a missing one without a default fails the task."""
        raw = self.config.get(name)
        if raw is None or raw == "":
            if default is None:
                raise OperatorConfigError(f"config {name!r} is required by {self.spec.operator}")
            return default
        return raw

    def function(self, name: str = "function") -> Callable[..., Any]:
        """The registered function the config value `name` names, built for this vertex."""
        return self.functions.build(self.config_str(name), self.config)

    def config_int(self, name: str, default: int) -> int:
        return self._typed(name, default, int)

    def config_float(self, name: str, default: float) -> float:
        return self._typed(name, default, float)

    def config_bool(self, name: str, default: bool) -> bool:
        raw = self.config.get(name)
        if raw is None or raw == "":
            return default
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise OperatorConfigError(f"config {name}={raw!r} is not a boolean")

    def _typed(self, name: str, default: _T, parse: Callable[[str], _T]) -> _T:
        raw = self.config.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError:
            raise OperatorConfigError(
                f"config {name}={raw!r} is not a valid {parse.__name__}"
            ) from None


class Output(Protocol):
    """Where an operator sends its records. The task's own outputs (edges, chained
    operators, sources' wrappers) also take a batch at once: ``emit_batch``."""

    async def emit(self, record: Record) -> None: ...


async def emit_batch(out: Output, records: list[Record]) -> None:
    """Every record of `records` to `out`, in order: in one call when `out` takes
    batches (an ``emit_batch`` method), else one ``emit`` each."""
    batch = getattr(out, "emit_batch", None)
    if batch is not None:
        await batch(records)
        return
    for record in records:
        await out.emit(record)


class Stateful:
    """Checkpoint hooks shared by both kinds of operator (docs/checkpoints.md).

    ``snapshot_state`` is called between two records (never while the operator
    is inside ``process`` or an ``emit``) and must return a copy: processing
    goes on while the snapshot is written. ``restore_state`` is called once,
    after ``open``, when the task restores from a checkpoint. The defaults
    (nothing to keep, nothing to restore) suit stateless operators.
    """

    async def snapshot_state(self) -> TaskSnapshot:
        return TaskSnapshot()

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        """Take back what ``snapshot_state`` returned in an earlier attempt."""

    async def snapshot_state_at(self, checkpoint_id: int) -> TaskSnapshot:
        """``snapshot_state`` for checkpoint `checkpoint_id`: for an operator that
        needs the id (the exactly-once ``kafka_sink`` names its pending output by it)."""
        return await self.snapshot_state()

    async def snapshot_durable(self, checkpoint_id: int) -> None:
        """Return once what the operator did before checkpoint `checkpoint_id`'s snapshot
        is durable (the at-least-once ``kafka_sink``: its records up to the barrier
        acknowledged by Kafka); raise if it never will be. Awaited in the background,
        while records keep flowing; the task acknowledges the checkpoint only after it."""

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` completed (every task acknowledged it): the
        place to commit what was pre-committed up to it. Called between records."""

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint `checkpoint_id` was aborted. Its records were still processed:
        whatever was pending for it waits for the next completed checkpoint."""


class SourceOperator(ABC, Stateful):
    """Produces records: returns when its input is exhausted (the task then
    FINISHES), raises to fail the task, is cancelled at an ``await``."""

    async def open(self, ctx: TaskContext) -> None:
        """Set up (connections, restored state). The task is INITIALIZING meanwhile."""

    @abstractmethod
    async def run(self, ctx: TaskContext, out: Output) -> None: ...

    async def close(self) -> None:
        """Release resources; called however the task ends."""


class RecordOperator(ABC, Stateful):
    """Transforms records (map, filter, keyed aggregations): one at a time in
    ``process``, or a batch at a time in ``process_batch``."""

    async def open(self, ctx: TaskContext) -> None:
        """Set up. The task is INITIALIZING meanwhile."""

    @abstractmethod
    async def process(self, record: Record, out: Output) -> None: ...

    async def process_batch(self, records: list[Record], out: Output) -> None:
        """A batch of records from the input, in order (the task calls this; a batch
        never spans a checkpoint barrier). By default ``process`` for each one;
        built-ins override it to work on the batch at once."""
        for record in records:
            await self.process(record, out)

    async def end_of_input(self, out: Output) -> None:
        """Every input has ended (bounded input): emit what is buffered."""

    async def close(self) -> None:
        """Release resources; called however the task ends."""


Operator = SourceOperator | RecordOperator

#: What the registry holds per name: builds a fresh operator for one task.
OperatorFactory = Callable[[], Operator]
