"""Dataclasses <-> plain JSON-able data, driven by type hints.

Used for snapshots (``state_to_dict`` / ``state_from_dict``) and the digest.
Rules chosen so that the encoding is canonical:

- floats become ``float.hex()`` strings: exact, and never subject to how a
  float is printed (the only floats are restart-strategy parameters);
- enums become their value; tuples and lists become lists;
- dicts with string keys stay dicts (the digest sorts their keys); dicts with
  other keys (subtask tuples, checkpoint ids) become lists of [key, value]
  pairs in insertion order, which in the state is journal order;
- dataclasses become dicts of their declared fields (a fork's private
  bookkeeping is not a field, so it never leaks in).
"""

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, Union, get_args, get_origin


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_plain(value: Any) -> Any:
    if value is None or (isinstance(value, (bool, int, str)) and not isinstance(value, enum.Enum)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_plain(v) for k, v in value.items()}
        return [[to_plain(k), to_plain(v)] for k, v in value.items()]
    raise TypeError(f"cannot encode {type(value).__name__}")


def from_plain(tp: Any, data: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return from_plain(inner, data)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in data)
        return tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        (arg,) = get_args(tp)
        return [from_plain(arg, v) for v in data]
    if origin is dict:
        key_tp, value_tp = get_args(tp)
        items = data.items() if isinstance(data, dict) else data
        return {from_plain(key_tp, k): from_plain(value_tp, v) for k, v in items}
    if tp is float:
        return float.fromhex(data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        return tp(
            **{f.name: from_plain(hints[f.name], data[f.name]) for f in dataclasses.fields(tp)}
        )
    if tp in (int, str, bool):
        if type(data) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"cannot decode {tp!r}")
