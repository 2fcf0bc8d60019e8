"""Operator lookup by name: built-ins and entry points, nothing imported from an event."""

from __future__ import annotations

from importlib import metadata

import pytest

from worker import plugins as plugins_module
from worker.errors import UnknownOperatorError
from worker.operators.api import Output, SourceOperator, TaskContext
from worker.operators.registry import ENTRY_POINT_GROUP, OperatorRegistry


class Plugin(SourceOperator):
    async def run(self, ctx: TaskContext, out: Output) -> None:
        await out.emit({"plugin": True})


NOT_CALLABLE = 42


def test_builtins_are_offered() -> None:
    assert OperatorRegistry.builtin().names() == (
        "fault", "filter", "flat_map", "kafka_sink", "kafka_source", "key_by",
        "keyed_count", "keyed_reduce", "map", "sequence",
    )  # fmt: skip


def test_unknown_names_are_errors_never_imports() -> None:
    registry = OperatorRegistry.builtin()
    assert "os:system" not in registry
    with pytest.raises(UnknownOperatorError, match="os:system"):
        registry.factory("os:system")


def test_entry_points_add_operators_and_bad_ones_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = __name__
    points = [
        metadata.EntryPoint("plugin", f"{here}:Plugin", ENTRY_POINT_GROUP),
        metadata.EntryPoint("broken", "no_such_module_anywhere:Thing", ENTRY_POINT_GROUP),
        metadata.EntryPoint("number", f"{here}:NOT_CALLABLE", ENTRY_POINT_GROUP),
        metadata.EntryPoint("sequence", f"{here}:Plugin", ENTRY_POINT_GROUP),  # no hijack
    ]

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return points

    monkeypatch.setattr(plugins_module, "entry_points", fake_entry_points)
    registry = OperatorRegistry.load()
    assert set(registry.names()) == {*OperatorRegistry.builtin().names(), "plugin"}
    assert registry.factory("plugin") is Plugin
    assert registry.factory("sequence") is not Plugin
