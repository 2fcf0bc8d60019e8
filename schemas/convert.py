"""Fast converters between event dataclasses and fastavro's dicts.

``dataclasses.asdict`` deep-copies and walks types at every call; a codec
doing 200k records/s cannot afford it. Instead each class gets two functions,
generated once from its fields, that do exactly the attribute reads, enum
lookups and tuple conversions it needs and nothing else. Enum values go to
fastavro as the StrEnum members themselves (they are str, so fastavro finds
the symbol); on the way back a dict lookup maps the symbol to the member.
"""

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any

ToRecord = Callable[[Any], dict[str, Any]]
FromRecord = Callable[[dict[str, Any]], Any]


class _Generator:
    """Builds the source of the converter functions of one class tree."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"new": object.__new__}
        self.done: set[type] = set()
        self.lines: list[str] = []

    def name(self, obj: object, prefix: str) -> str:
        key = prefix if prefix.startswith("S_") else f"{prefix}_{getattr(obj, '__name__', 'x')}"
        self.namespace[key] = obj
        return key

    def add(self, cls: type) -> None:
        if cls in self.done:
            return
        self.done.add(cls)
        to_parts, from_parts = [], []
        for f in dataclasses.fields(cls):
            to_parts.append(f"{f.name!r}: {self.to_expr(f.type, f'o.{f.name}')}")
            from_parts.append(self.from_expr(f.type, f"d[{f.name!r}]"))
        self.lines.append(f"def to_{cls.__name__}(o):\n    return {{{', '.join(to_parts)}}}\n")
        # Build the instance without calling __init__: a frozen dataclass's
        # __init__ goes through object.__setattr__ per field, which costs more
        # than the Avro read itself. The slot descriptors' __set__ is direct.
        body = [f"    o = new({self.name(cls, 'C')})"]
        for f, expr in zip(dataclasses.fields(cls), from_parts, strict=True):
            setter = self.name(getattr(cls, f.name).__set__, f"S_{cls.__name__}_{f.name}")
            body.append(f"    {setter}(o, {expr})")
        self.lines.append(f"def from_{cls.__name__}(d):\n" + "\n".join(body) + "\n    return o\n")

    def to_expr(self, tp: object, expr: str) -> str:
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            self.add(tp)
            return f"to_{tp.__name__}({expr})"
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is types.UnionType:
            (inner,) = (a for a in args if a is not type(None))
            sub = self.to_expr(inner, "v")
            if sub == "v":
                return expr
            return f"(None if (v := {expr}) is None else {sub})"
        if origin is tuple:
            sub = self.to_expr(args[0], "x")
            return f"[{sub} for x in {expr}]" if sub != "x" else f"list({expr})"
        if origin is dict:
            return expr
        return expr  # primitives and StrEnum members go to fastavro as they are

    def from_expr(self, tp: object, expr: str) -> str:
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            self.add(tp)
            return f"from_{tp.__name__}({expr})"
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return f"{self.name(tp._value2member_map_, 'E' + tp.__name__)}[{expr}]"
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is types.UnionType:
            (inner,) = (a for a in args if a is not type(None))
            sub = self.from_expr(inner, "v")
            if sub == "v":
                return expr
            return f"(None if (v := {expr}) is None else {sub})"
        if origin is tuple:
            sub = self.from_expr(args[0], "x")
            return f"tuple({sub} for x in {expr})" if sub != "x" else f"tuple({expr})"
        return expr


def converters(cls: type) -> tuple[ToRecord, FromRecord]:
    """(event -> dict for fastavro, dict from fastavro -> event) for `cls`."""
    gen = _Generator()
    gen.add(cls)
    exec("\n".join(gen.lines), gen.namespace)
    return gen.namespace[f"to_{cls.__name__}"], gen.namespace[f"from_{cls.__name__}"]
