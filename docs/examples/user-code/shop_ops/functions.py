"""Functions: a factory taking the vertex's config, returning the per-record callable."""

from collections.abc import Callable, Mapping
from typing import Any

Record = dict[str, Any]


def square(config: Mapping[str, str]) -> Callable[[Record], Record]:
    """map: adds `to` (default ``square``) = `field` (default ``value``) squared."""
    field, to = config.get("field", "value"), config.get("to", "square")
    return lambda record: {**record, to: int(record[field]) ** 2}
