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
  bookkeeping is not a field, so it never leaks in); a field named in
  ``OMITTED_WHEN_NONE`` is left out while it is None, so a state that never
  used a field added later keeps its digest (and decodes: a missing field takes
  its default).
"""

import dataclasses
import enum
import functools
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_plain(value: Any) -> Any:
    encode = _ENCODERS.get(type(value))
    if encode is None:
        encode = _ENCODERS[type(value)] = _encoder(type(value))
    return encode(value)


# One encoder per concrete type, built on first use: the digest walks every
# subtask of every job, so the per-value cost is what matters.
_ENCODERS: dict[type, Callable[[Any], Any]] = {}
_PLAIN_TYPES: frozenset[type] = frozenset({type(None), bool, int, str})
#: Optional fields added after golden journals were recorded (JobSubmitted.artifact).
OMITTED_WHEN_NONE: frozenset[str] = frozenset({"artifact"})


def _identity(value: Any) -> Any:
    return value


def _sequence(value: Any) -> Any:
    return [v if type(v) in _PLAIN_TYPES else to_plain(v) for v in value]


def _mapping(value: dict[Any, Any]) -> Any:
    if all(type(k) is str for k in value):
        return {k: v if type(v) in _PLAIN_TYPES else to_plain(v) for k, v in value.items()}
    return [[to_plain(k), to_plain(v)] for k, v in value.items()]


def _encoder(tp: type) -> Callable[[Any], Any]:
    if issubclass(tp, enum.Enum):
        return operator.attrgetter("value")
    if issubclass(tp, float):
        return float.hex
    if tp in _PLAIN_TYPES or issubclass(tp, (bool, int, str)):
        return _identity
    if dataclasses.is_dataclass(tp):
        names = tuple(f.name for f in dataclasses.fields(tp))

        def encode(value: Any) -> Any:
            out = {}
            for name in names:
                v = getattr(value, name)
                if v is None and name in OMITTED_WHEN_NONE:
                    continue
                out[name] = v if type(v) in _PLAIN_TYPES else to_plain(v)
            return out

        return encode
    if issubclass(tp, (list, tuple)):
        return _sequence
    if issubclass(tp, dict):
        return _mapping

    def refuse(value: Any) -> Any:
        raise TypeError(f"cannot encode {type(value).__name__}")

    return refuse


def from_plain(tp: Any, data: Any) -> Any:
    decode = _DECODERS.get(tp)
    if decode is None:
        decode = _DECODERS[tp] = _decoder(tp)
    return decode(data)


# One decoder per type hint, built on first use (as the encoders): restoring a
# snapshot decodes every subtask of every job, and deriving the decoder from the
# hint again for each value made that the slow part of `jm list`.
_DECODERS: dict[Any, Callable[[Any], Any]] = {}


def _decoder(tp: Any) -> Callable[[Any], Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(tp) if a is not type(None)]

        def optional(data: Any) -> Any:
            return None if data is None else from_plain(inner, data)

        return optional
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            return lambda data: tuple([from_plain(item, v) for v in data])
        return lambda data: tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        (arg,) = get_args(tp)
        return lambda data: [from_plain(arg, v) for v in data]
    if origin is dict:
        key_tp, value_tp = get_args(tp)

        def mapping(data: Any) -> Any:
            items = data.items() if isinstance(data, dict) else data
            return {from_plain(key_tp, k): from_plain(value_tp, v) for k, v in items}

        return mapping
    if tp is float:
        return float.fromhex
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        fields = tuple((f.name, hints[f.name]) for f in dataclasses.fields(tp))
        cls = tp

        def record(data: Any) -> Any:
            # A field missing from older data takes its default (a field added since).
            return cls(
                **{name: from_plain(hint, data[name]) for name, hint in fields if name in data}
            )

        return record
    if tp in (int, str, bool):

        def plain(data: Any) -> Any:
            if type(data) is not tp:
                raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
            return data

        return plain

    def refuse(data: Any) -> Any:
        raise TypeError(f"cannot decode {tp!r}")

    return refuse
