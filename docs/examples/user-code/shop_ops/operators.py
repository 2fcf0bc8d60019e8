"""An operator: a running total of a field, kept in checkpointed state like a
built-in's (docs/checkpoints.md)."""

from collections.abc import Mapping
from typing import Any

from schemas.snapshot import TaskSnapshot
from worker.operators.api import Output, RecordOperator, TaskContext


class RunningTotal(RecordOperator):
    """Emits each record with `total` = the sum of `field` over the records so far."""

    async def open(self, ctx: TaskContext) -> None:
        self.field = ctx.config_str("field", "square")
        self.total = 0

    async def process(self, record: dict[str, Any], out: Output) -> None:
        self.total += int(record[self.field])
        await out.emit({**record, "total": self.total})

    async def snapshot_state(self) -> TaskSnapshot:
        return TaskSnapshot(operator_state={"total": self.total})

    async def restore_state(self, snapshot: TaskSnapshot) -> None:
        state = snapshot.operator_state
        self.total = int(state["total"]) if isinstance(state, Mapping) else 0
