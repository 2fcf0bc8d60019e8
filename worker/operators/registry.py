"""Operators by name: built-ins plus the ``kafka_jobmanager.operators`` entry points.

A name arriving in an event is only ever looked up here; nothing is imported
from it. The worker offers ``names()`` when it registers, so the coordinator
can reject a job that names an operator no worker has.

An entry point loads to an ``OperatorFactory`` (a zero-argument callable
returning a fresh operator, e.g. the operator class itself)::

    [project.entry-points."kafka_jobmanager.operators"]
    enrich = "mypkg.ops:Enrich"
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from worker.errors import UnknownOperatorError
from worker.operators import builtins
from worker.operators.api import OperatorFactory
from worker.plugins import load_named

ENTRY_POINT_GROUP: Final = "kafka_jobmanager.operators"

log = logging.getLogger(__name__)


class OperatorRegistry:
    """An immutable name -> factory map."""

    def __init__(self, factories: Mapping[str, OperatorFactory]) -> None:
        self._factories = dict(factories)

    @classmethod
    def builtin(cls) -> OperatorRegistry:
        return cls(builtins.BUILTINS)

    @classmethod
    def load(cls, group: str = ENTRY_POINT_GROUP) -> OperatorRegistry:
        """Built-ins plus every entry point of `group`. A plugin that fails to
        load is logged and left out (its name is then not offered): one broken
        package must not keep the worker from running everything else. A plugin
        cannot replace a built-in: the name would mean different code on
        different workers."""
        factories = load_named(group, builtins.BUILTINS, "operator")
        return cls(factories)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def factory(self, name: str) -> OperatorFactory:
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownOperatorError(
                f"no operator named {name!r} on this worker (it offers {', '.join(self.names())})"
            ) from None
