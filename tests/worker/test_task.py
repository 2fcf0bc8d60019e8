"""Task lifecycles run in-process (no slot process, no Kafka)."""

from __future__ import annotations

import asyncio

import pytest

from schemas import events as ev
from worker.operators.api import Output, RecordOperator, SourceOperator, TaskContext, TaskSpec
from worker.operators.registry import OperatorRegistry
from worker.task import run_task

ES = ev.ExecutionState
TASK = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=0, attempt=0)

Reported = list[tuple[ES, str | None, str | None]]


def spec(operator: str, **config: str) -> TaskSpec:
    return TaskSpec(
        task=TASK, operator=operator, vertex_name="v", parallelism=1, max_parallelism=128,
        config=config,
    )  # fmt: skip


async def run(operator: str, registry: OperatorRegistry | None = None, **config: str) -> Reported:
    reported: Reported = []
    await run_task(
        spec(operator, **config),
        registry or OperatorRegistry.builtin(),
        lambda s, n, t, _: reported.append((s, n, t)),
    )
    return reported


async def test_bounded_sequence_finishes() -> None:
    reported = await run("sequence", count="500", start="7")
    assert [s for s, _, _ in reported] == [ES.INITIALIZING, ES.RUNNING, ES.FINISHED]


async def test_fault_fails_with_name_and_stack() -> None:
    *_, (state, name, stack) = await run("fault", fail_after="3")
    assert state is ES.FAILED
    assert name == "InjectedFault"
    assert stack is not None
    assert "fault injected after 3 records" in stack


async def test_fault_fail_after_zero_fails_before_the_first_record() -> None:
    *_, (state, name, _) = await run("fault", fail_after="0", count="5")
    assert (state, name) == (ES.FAILED, "InjectedFault")


@pytest.mark.parametrize(
    ("operator", "config", "error"),
    [
        ("nope", {}, "UnknownOperatorError"),
        ("sequence", {"count": "many"}, "OperatorConfigError"),
        ("fault", {"hang": "perhaps"}, "OperatorConfigError"),
    ],
)
async def test_setup_errors_fail_the_task(
    operator: str, config: dict[str, str], error: str
) -> None:
    reported = await run(operator, None, **config)
    assert reported[-1][:2] == (ES.FAILED, error)


@pytest.mark.parametrize(
    ("operator", "config", "error", "non_recoverable"),
    [
        ("sequence", {"count": "many"}, "OperatorConfigError", True),
        ("fault", {"fail_after": "0"}, "InjectedFault", False),
    ],
)
async def test_only_configuration_errors_are_non_recoverable(
    operator: str, config: dict[str, str], error: str, non_recoverable: bool
) -> None:
    """A restart cannot fix a wrong config: the report says so (the coordinator then
    fails the job at once); a fault in the running task stays recoverable."""
    ends: list[tuple[ES, str | None, bool]] = []
    await run_task(
        spec(operator, **config),
        OperatorRegistry.builtin(),
        lambda s, n, _, f: ends.append((s, n, f)),
    )
    assert ends[-1] == (ES.FAILED, error, non_recoverable)


async def test_cancel_reaches_an_unbounded_sequence_at_full_speed() -> None:
    reported: Reported = []
    runner = asyncio.create_task(
        run_task(
            spec("sequence"),
            OperatorRegistry.builtin(),
            lambda s, n, t, _: reported.append((s, n, t)),
        )
    )
    await asyncio.sleep(0.05)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert [s for s, _, _ in reported] == [ES.INITIALIZING, ES.RUNNING, ES.CANCELED]


async def test_rate_paces_the_sequence() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    await run("sequence", count="20", rate="200")
    assert loop.time() - began >= 0.09


class Doubler(RecordOperator):
    async def process(self, record: dict[str, object], out: Output) -> None:
        await out.emit(record)


class Closes(SourceOperator):
    closed = False

    async def run(self, ctx: TaskContext, out: Output) -> None:
        raise RuntimeError("boom")

    async def close(self) -> None:
        Closes.closed = True


async def test_record_operators_need_an_input_edge() -> None:
    *_, (state, name, _) = await run("double", OperatorRegistry({"double": Doubler}))
    assert (state, name) == (ES.FAILED, "NoInputEdgesError")


async def test_sources_take_no_input_edge() -> None:
    into = ev.Edge(source="up", target="v")
    reported: Reported = []
    await run_task(
        TaskSpec(task=TASK, operator="sequence", vertex_name="v", parallelism=1,
                 max_parallelism=128, inputs=(into,), vertex_parallelism={"up": 1, "v": 1}),
        OperatorRegistry.builtin(),
        lambda s, n, t, _: reported.append((s, n, t)),
    )  # fmt: skip
    assert reported[-1][:2] == (ES.FAILED, "SourceWithInputsError")


async def test_edges_without_kafka_fail_the_task() -> None:
    out = ev.Edge(source="v", target="down")
    reported: Reported = []
    await run_task(
        TaskSpec(task=TASK, operator="sequence", vertex_name="v", parallelism=1,
                 max_parallelism=128, outputs=(out,), vertex_parallelism={"down": 1, "v": 1}),
        OperatorRegistry.builtin(),
        lambda s, n, t, _: reported.append((s, n, t)),
    )  # fmt: skip
    assert reported[-1][:2] == (ES.FAILED, "NoKafkaError")


async def test_close_runs_however_the_task_ends() -> None:
    *_, (state, name, _) = await run("closes", OperatorRegistry({"closes": Closes}))
    assert (state, name) == (ES.FAILED, "RuntimeError")
    assert Closes.closed
