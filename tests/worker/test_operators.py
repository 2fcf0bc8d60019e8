"""Record operators and registered functions, in-process (no Kafka)."""

from __future__ import annotations

import asyncio
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from schemas import events as ev
from schemas import wheels
from schemas.jobgraph import job_file_code, load_job_file
from worker import plugins as plugins_module
from worker.errors import OperatorConfigError, UnknownFunctionError
from worker.functions import ENTRY_POINT_GROUP, FunctionRegistry
from worker.operators import builtins
from worker.operators.api import RecordOperator, TaskContext, TaskSpec
from worker.operators.kafka_io import decode_value
from worker.operators.registry import OperatorRegistry

Record = dict[str, Any]


class Collect:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def emit(self, record: Record) -> None:
        self.records.append(record)


def ctx(
    config: dict[str, str], parallelism: int = 1, subtask: int = 0, attempt: int = 0
) -> TaskContext:
    task = ev.TaskRef(job_id="j", vertex_id="v", subtask_index=subtask, attempt=attempt)
    spec = TaskSpec(task=task, operator="op", vertex_name="v", parallelism=parallelism,
                    max_parallelism=128, config=config)  # fmt: skip
    return TaskContext(spec, logging.getLogger("test"))


async def apply(name: str, records: list[Record], **config: str) -> list[Record]:
    operator = builtins.BUILTINS[name]()
    assert isinstance(operator, RecordOperator)
    await operator.open(ctx(config))
    out = Collect()
    for record in records:
        await operator.process(record, out)
    await operator.end_of_input(out)
    await operator.close()
    return out.records


NUMBERS = [{"value": v} for v in range(6)]


@pytest.mark.parametrize(
    ("operator", "config", "expected"),
    [
        ("map", {"function": "identity"}, NUMBERS),
        ("map", {"function": "mod_key", "n": "4"}, [{"value": v, "key": v % 4} for v in range(6)]),
        ("map", {"function": "parse_int", "field": "s"}, None),
        ("filter", {"function": "even"}, [{"value": 0}, {"value": 2}, {"value": 4}]),
        ("filter", {"function": "odd"}, [{"value": 1}, {"value": 3}, {"value": 5}]),
        ("key_by", {"function": "mod", "n": "2", "key_field": "k"},
         [{"value": v, "k": v % 2} for v in range(6)]),
        ("keyed_count", {"key_field": "value"}, [{"value": v, "count": 1} for v in range(6)]),
    ],
)  # fmt: skip
async def test_record_operators(
    operator: str, config: dict[str, str], expected: list[Record] | None
) -> None:
    if expected is None:
        assert await apply(operator, [{"s": "12"}], **config) == [{"s": 12}]
    else:
        assert await apply(operator, NUMBERS, **config) == expected


async def test_flat_map_splits_words_and_upper_shouts() -> None:
    words = await apply("flat_map", [{"value": "To be or NOT"}], function="split_words")
    assert words == [{"word": "to"}, {"word": "be"}, {"word": "or"}, {"word": "not"}]
    assert await apply("map", [{"value": "hi"}], function="upper") == [{"value": "HI"}]


async def test_keyed_count_emits_every_update_per_key() -> None:
    records = [{"key": k} for k in ["a", "b", "a", 1, "a", 1]]
    assert await apply("keyed_count", records) == [
        {"key": "a", "count": 1}, {"key": "b", "count": 1}, {"key": "a", "count": 2},
        {"key": 1, "count": 1}, {"key": "a", "count": 3}, {"key": 1, "count": 2},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("function", "last"), [("sum", {"a": 9, "b": 2}), ("max", {"a": 5, "b": 2})]
)
async def test_keyed_reduce(function: str, last: dict[str, int]) -> None:
    records = [{"key": k, "value": v} for k, v in [("a", 1), ("b", 2), ("a", 5), ("a", 3)]]
    emitted = await apply("keyed_reduce", records, function=function)
    assert {r["key"]: r["value"] for r in emitted} == last
    assert len(emitted) == 4


async def test_missing_fields_and_functions_fail_the_task() -> None:
    with pytest.raises(builtins.MissingFieldError, match="'key'"):
        await apply("keyed_count", [{"value": 1}])
    with pytest.raises(UnknownFunctionError, match=r"os\.system"):
        await apply("map", [], function="os.system")
    with pytest.raises(OperatorConfigError, match="'function' is required"):
        await apply("filter", [])
    with pytest.raises(OperatorConfigError, match="n=0"):
        await apply("map", [], function="mod_key", n="0")


@pytest.mark.parametrize(("count", "parallelism"), [(10, 3), (2, 4), (0, 1), (7, 1)])
async def test_sequence_is_split_across_subtasks(count: int, parallelism: int) -> None:
    seen: list[int] = []
    for subtask in range(parallelism):
        operator = builtins.Sequence()
        context = ctx({"count": str(count), "start": "100"}, parallelism, subtask)
        await operator.open(context)
        out = Collect()
        if count:
            await operator.run(context, out)
        seen += [r["value"] for r in out.records]
    assert sorted(seen) == list(range(100, 100 + count))


@pytest.mark.parametrize(("attempt", "fails"), [(0, True), (1, True), (2, False)])
async def test_fault_fails_only_the_attempts_below_fail_attempts(attempt: int, fails: bool) -> None:
    operator = builtins.Fault()
    context = ctx({"count": "5", "fail_after": "2", "fail_attempts": "2"}, attempt=attempt)
    await operator.open(context)
    out = Collect()
    if fails:
        with pytest.raises(builtins.InjectedFault):
            await operator.run(context, out)
    else:
        await operator.run(context, out)
    assert len(out.records) == (2 if fails else 5)


@pytest.mark.parametrize(
    ("value", "record"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", {"value": [1, 2]}),
        (b"42", {"value": 42}),
        (b"plain text", {"value": "plain text"}),
        (None, {"value": None}),
    ],
)
def test_kafka_values_become_records(value: bytes | None, record: Record) -> None:
    assert decode_value(value) == record


def triple(config: dict[str, str]) -> Any:
    return lambda record: {**record, "value": record["value"] * 3}


def test_function_entry_points_add_functions_and_bad_ones_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = [
        metadata.EntryPoint("triple", f"{__name__}:triple", ENTRY_POINT_GROUP),
        metadata.EntryPoint("broken", "no_such_module_anywhere:f", ENTRY_POINT_GROUP),
        metadata.EntryPoint("identity", f"{__name__}:triple", ENTRY_POINT_GROUP),  # no hijack
    ]
    monkeypatch.setattr(plugins_module, "entry_points", lambda *, group: points)
    registry = FunctionRegistry.load()
    assert "triple" in registry and "broken" not in registry
    assert registry.build("triple", {})({"value": 2}) == {"value": 6}
    assert registry.build("identity", {})({"value": 2}) == {"value": 2}


EXAMPLES = sorted(
    p
    for p in (Path(__file__).parents[2] / "docs" / "examples").glob("*.*")
    if p.suffix in (".yaml", ".yml", ".json")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_name_operators_and_functions_the_worker_has(path: Path) -> None:
    """Every name is built in, or provided by the example's own package (`code:`)."""
    job = load_job_file(path, event_time=1)
    operators, functions = OperatorRegistry.builtin(), FunctionRegistry.builtin()
    code = job_file_code(path)
    own = wheels.inspect(wheels.package_bytes(code)[0]) if code is not None else None
    for v in job.job_graph.vertices:
        assert v.operator in operators or (own and v.operator in own.operators), v.operator
        if "function" in v.config:
            name = v.config["function"]
            assert name in functions or (own and name in own.functions), name


class CollectBatches(Collect):
    """An output that takes batches, as the task's own outputs do."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    async def emit_batch(self, records: list[Record]) -> None:
        self.batches += 1
        self.records.extend(records)


@pytest.mark.parametrize(
    ("operator", "config"),
    [
        ("map", {"function": "mod_key", "n": "3"}),
        ("filter", {"function": "even"}),
        ("flat_map", {"function": "split_words", "field": "text"}),
        ("key_by", {"function": "mod", "n": "2", "key_field": "k"}),
        ("keyed_count", {"key_field": "key", "carry": "t"}),
        ("keyed_reduce", {"function": "sum", "key_field": "key"}),
    ],
)
async def test_a_batch_gives_what_its_records_one_by_one_give(
    operator: str, config: dict[str, str]
) -> None:
    records = [{"value": v, "key": v % 3, "t": 100 + v, "text": f"a b{v % 2}"} for v in range(9)]
    one_by_one = await apply(operator, records, **config)
    batched = builtins.BUILTINS[operator]()
    assert isinstance(batched, RecordOperator)
    await batched.open(ctx(config))
    out = CollectBatches()
    await batched.process_batch(records[:4], out)
    await batched.process_batch(records[4:], out)
    assert out.records == one_by_one and out.batches == 2  # one emit per batch, same records
    if operator == "keyed_count":  # `carry` copies the stamp into every update
        assert [r["t"] for r in out.records] == [100 + v for v in range(9)]


async def test_a_paced_sequence_emits_what_is_due_a_tick_at_a_time() -> None:
    """At 4,000 records/s, 200 records take 50 ms and leave in batches (one per 5 ms
    tick, not one per record), each stamped with the time it was due: 0.25 ms apart."""
    out = CollectBatches()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await builtins.emit_sequence(out, 5, 200, 4000.0, step=2, stamp="t")
    assert loop.time() - began >= 199 / 4000
    assert [r["value"] for r in out.records] == list(range(5, 405, 2))
    assert 2 <= out.batches <= 40
    stamps = [r["t"] for r in out.records]
    assert stamps == sorted(stamps) and abs(stamps[-1] - stamps[0] - 199 * 0.25) <= 1
