"""User functions for ``map``, ``filter``, ``flat_map``, ``key_by`` and ``keyed_reduce``,
registered by name: built-ins plus the ``kafka_jobmanager.functions`` entry points.

As with operators, a name arriving in an event is only looked up here; nothing
is imported from it. A registered function is a *factory*: it takes the
vertex's config (strings) once, when the task opens, and returns the callable
the operator applies to every record, so parameters are parsed once::

    [project.entry-points."kafka_jobmanager.functions"]
    enrich = "mypkg.fns:enrich"      # def enrich(config) -> Callable[[Record], Record]

What the returned callable must be depends on the operator using it:

=============  =========================================
map            ``record -> record``
filter         ``record -> bool``
flat_map       ``record -> iterable of records``
key_by         ``record -> key`` (any JSON value)
keyed_reduce   ``(accumulated, value) -> value``
=============  =========================================

Built-ins read the field they work on from config ``field`` (default
``value``), so ``sequence`` output works with all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from worker.errors import OperatorConfigError, UnknownFunctionError
from worker.plugins import load_named

Record = dict[str, Any]
Config = Mapping[str, str]
#: A registered function: builds the per-record callable from the vertex config.
FunctionFactory = Callable[[Config], Callable[..., Any]]

ENTRY_POINT_GROUP: Final = "kafka_jobmanager.functions"

log = logging.getLogger(__name__)


def config_int(config: Config, name: str, default: int) -> int:
    raw = config.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise OperatorConfigError(f"config {name}={raw!r} is not a valid int") from None


def _field(config: Config) -> str:
    return config.get("field") or "value"


# ------------------------------------------------------------------ built-ins


def identity(config: Config) -> Callable[[Record], Record]:
    """map: the record unchanged."""
    return lambda record: record


def upper(config: Config) -> Callable[[Record], Record]:
    """map: `field` as an upper-case string."""
    f = _field(config)
    return lambda record: {**record, f: str(record[f]).upper()}


def lower(config: Config) -> Callable[[Record], Record]:
    """map: `field` as a lower-case string."""
    f = _field(config)
    return lambda record: {**record, f: str(record[f]).lower()}


def parse_int(config: Config) -> Callable[[Record], Record]:
    """map: `field` parsed as an integer (a bad value fails the task)."""
    f = _field(config)
    return lambda record: {**record, f: int(record[f])}


def mod_key(config: Config) -> Callable[[Record], Record]:
    """map: adds `key_field` (default ``key``) = `field` mod `n` (default 10)."""
    f, key, n = _field(config), config.get("key_field") or "key", config_int(config, "n", 10)
    if n < 1:
        raise OperatorConfigError(f"config n={n} must be >= 1")
    return lambda record: {**record, key: int(record[f]) % n}


def even(config: Config) -> Callable[[Record], bool]:
    """filter: `field` is an even integer."""
    f = _field(config)
    return lambda record: int(record[f]) % 2 == 0


def odd(config: Config) -> Callable[[Record], bool]:
    """filter: `field` is an odd integer."""
    f = _field(config)
    return lambda record: int(record[f]) % 2 == 1


def split_words(config: Config) -> Callable[[Record], Iterator[Record]]:
    """flat_map: one ``{"word": w}`` per whitespace-separated, lower-cased word of `field`."""
    f = _field(config)

    def split(record: Record) -> Iterator[Record]:
        for word in str(record[f]).lower().split():
            yield {"word": word}

    return split


def field_key(config: Config) -> Callable[[Record], Any]:
    """key_by: the value of `field` itself."""
    f = _field(config)
    return lambda record: record[f]


def mod(config: Config) -> Callable[[Record], Any]:
    """key_by: `field` mod `n` (default 10)."""
    f, n = _field(config), config_int(config, "n", 10)
    if n < 1:
        raise OperatorConfigError(f"config n={n} must be >= 1")
    return lambda record: int(record[f]) % n


def sum_(config: Config) -> Callable[[Any, Any], Any]:
    """keyed_reduce: the running sum."""
    return lambda acc, value: acc + value


def max_(config: Config) -> Callable[[Any, Any], Any]:
    """keyed_reduce: the running maximum."""
    return lambda acc, value: value if value > acc else acc


def min_(config: Config) -> Callable[[Any, Any], Any]:
    """keyed_reduce: the running minimum."""
    return lambda acc, value: value if value < acc else acc


BUILTINS: Final[dict[str, FunctionFactory]] = {
    "identity": identity,
    "upper": upper,
    "lower": lower,
    "parse_int": parse_int,
    "mod_key": mod_key,
    "even": even,
    "odd": odd,
    "split_words": split_words,
    "field": field_key,
    "mod": mod,
    "sum": sum_,
    "max": max_,
    "min": min_,
}


class FunctionRegistry:
    """An immutable name -> function factory map."""

    def __init__(self, factories: Mapping[str, FunctionFactory]) -> None:
        self._factories = dict(factories)

    @classmethod
    def builtin(cls) -> FunctionRegistry:
        return cls(BUILTINS)

    @classmethod
    def load(cls, group: str = ENTRY_POINT_GROUP) -> FunctionRegistry:
        """Built-ins plus every entry point of `group`; broken plugins are logged
        and left out, and no plugin replaces a built-in (see OperatorRegistry.load)."""
        factories = load_named(group, BUILTINS, "function")
        return cls(factories)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def build(self, name: str, config: Config) -> Callable[..., Any]:
        """The per-record callable of function `name` for this vertex config."""
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownFunctionError(
                f"no function named {name!r} on this worker (it offers {', '.join(self.names())})"
            ) from None
        return factory(config)
