"""Hypothesis strategies for every event type, derived from the dataclasses.

Importable by other test suites: ``from tests.schemas.event_strategies import events_of``.
"""

import dataclasses
import enum
import math
import types
import typing
from typing import Any

from hypothesis import strategies as st

from schemas.events import EVENT_CLASSES, Event

_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TEXT = st.text(max_size=12)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of an annotated field type that the Avro schema can carry."""
    if tp is str:
        return _TEXT
    if tp is int:
        return _LONG
    if tp is float:
        return st.floats(allow_nan=False)  # NaN != NaN would break equality checks
    if tp is bool:
        return st.booleans()
    if tp is bytes:
        return st.binary(max_size=32)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return st.builds(tp, **{f.name: strategy_for(f.type) for f in dataclasses.fields(tp)})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType:
        (inner,) = (a for a in args if a is not type(None))
        return st.none() | strategy_for(inner)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(_TEXT, strategy_for(args[1]), max_size=3)
    raise TypeError(f"no strategy for {tp!r}")


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    return typing.cast(st.SearchStrategy[Event], strategy_for(cls))


any_event: st.SearchStrategy[Event] = st.one_of([events_of(c) for c in EVENT_CLASSES])


def same_types(a: Any, b: Any) -> bool:
    """`a == b` and every nested value of the same type (tuple, enum member, ...); two
    NaN doubles (a flipped byte can make one) count as the same."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(map(same_types, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_types(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return all(same_types(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return bool(a == b)
