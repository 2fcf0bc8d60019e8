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
        return _RecordDecoders().function(tp)
    if tp in (int, str, bool):

        def plain(data: Any) -> Any:
            if type(data) is not tp:
                raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
            return data

        return plain

    def refuse(data: Any) -> Any:
        raise TypeError(f"cannot decode {tp!r}")

    return refuse


def _compile_here(source: str) -> types.CodeType:
    return compile(source, "<string>", "exec")


#: How the generated decoders' source becomes code: ``compile``, unless the runtime
#: gave its cached compiler (``use_compiler``; schemas/codecache.py: the domain itself
#: reads and writes no files).
_COMPILER: list[Callable[[str], types.CodeType]] = [_compile_here]


def use_compiler(compiler: Callable[[str], types.CodeType]) -> None:
    _COMPILER[0] = compiler


def _checked(tp: type, value: Any) -> Any:
    raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")


def _items(data: Any) -> Any:
    return data.items() if isinstance(data, dict) else data


def _partial_record(cls: type, fields: list[tuple[str, Any]]) -> Callable[[Any], Any]:
    """The decoder of data that lacks some of `cls`'s fields (older than a field)."""

    def record(data: Any) -> Any:
        # A field missing from older data takes its default (a field added since).
        return cls(**{name: from_plain(hint, data[name]) for name, hint in fields if name in data})

    return record


class _RecordDecoders:
    """Generated source of the decoders of a dataclass and the dataclasses in its fields,
    each value's conversion written inline (restoring a snapshot of a large state made
    60,000 ``from_plain`` calls, each a lookup and one or two calls more). Each function
    is what the rules above say: when every field is in the data, one constructor call
    with each field converted in place; when one is missing (data older than a field),
    ``_partial_record``: the present fields, the missing ones taking their defaults.
    Hints the inline forms do not cover go through ``from_plain``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "_checked": _checked, "_items": _items, "_from_plain": from_plain,
            "_fromhex": float.fromhex, "_KEYS": frozenset({str, int}),
        }  # fmt: skip
        self.functions: dict[type, str] = {}
        self.count = 0

    def bind(self, value: Any, prefix: str) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        self.namespace[name] = value
        return name

    def var(self) -> str:
        self.count += 1
        return f"x{self.count}"

    def function(self, cls: type) -> Callable[[Any], Any]:
        name = self.add(cls)
        exec(_COMPILER[0]("\n".join(self.lines)), self.namespace)
        return self.namespace[name]  # type: ignore[no-any-return]

    def add(self, cls: type) -> str:
        name = self.functions.get(cls)
        if name is not None:
            return name
        name = self.functions[cls] = f"record_{cls.__name__}_{len(self.functions)}"
        hints = _hints(cls)
        fields = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
        c = self.bind(cls, "C")
        whole = ", ".join(f"{n}={self.expr(h, f'data[{n!r}]')}" for n, h in fields)
        partial = self.bind(_partial_record(cls, fields), "P")
        self.lines += [f"def {name}(data):", "    try:", f"        return {c}({whole})",
                       "    except KeyError:", f"        return {partial}(data)"]  # fmt: skip
        return name

    def expr(self, tp: Any, value: str) -> str:
        """An expression of `value` decoded as `tp` says."""
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            inner = [a for a in get_args(tp) if a is not type(None)]
            if len(inner) == 1:
                x = self.var()
                return f"(None if ({x} := {value}) is None else {self.expr(inner[0], x)})"
        elif origin is tuple:
            args = get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                x = self.var()
                return f"tuple([{self.expr(args[0], x)} for {x} in {value}])"
        elif origin is list:
            x = self.var()
            return f"[{self.expr(get_args(tp)[0], x)} for {x} in {value}]"
        elif origin is dict:
            key_tp, value_tp = get_args(tp)
            k, x = self.var(), self.var()
            return (f"{{{self.expr(key_tp, k)}: {self.expr(value_tp, x)} "
                    f"for {k}, {x} in _items({value})}}")  # fmt: skip
        elif tp in (int, str, bool):
            x, name = self.var(), tp.__name__
            return f"({x} if type({x} := {value}) is {name} else _checked({name}, {x}))"
        elif tp is float:
            return f"_fromhex({value})"
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            e, members, x = self.bind(tp, "E"), self.bind(tp._value2member_map_, "M"), self.var()
            known = f"type({x} := {value}) in _KEYS and {x} in {members}"
            return f"({members}[{x}] if {known} else {e}({x}))"
        elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return f"{self.add(tp)}({value})"
        return f"_from_plain({self.bind(tp, 'T')}, {value})"
