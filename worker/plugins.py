"""Loading named plugins (operators, functions) from an entry-point group.

Built-ins first, then every entry point of the group. A plugin that fails to
load is logged and left out (its name is then not offered): one broken package
must not keep the worker from running everything else. A plugin cannot replace
a built-in: the name would mean different code on different workers. Nothing is
ever imported by a name that arrives in an event; only these names are looked up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def load_named(group: str, builtins: Mapping[str, F], kind: str) -> dict[str, F]:
    """Built-ins plus the callables of entry-point `group`, by name."""
    factories: dict[str, F] = dict(builtins)
    for entry in entry_points(group=group):
        if entry.name in factories:
            log.warning("%s %r from %s ignored: name taken", kind, entry.name, entry.value)
            continue
        try:
            loaded = entry.load()
        except Exception:
            log.exception("%s %r from %s failed to load", kind, entry.name, entry.value)
            continue
        if not callable(loaded):
            log.warning("%s %r from %s is not callable", kind, entry.name, entry.value)
            continue
        factories[entry.name] = loaded
    return factories
