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
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

from schemas import codecache, native

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
    codecache.run("\n".join(gen.lines), gen.namespace)
    return gen.namespace[f"to_{cls.__name__}"], gen.namespace[f"from_{cls.__name__}"]


BodyReader = Callable[[bytes, int, int], tuple[Any, int]]


class _Unsupported(Exception):
    """The schema and the class do not line up in a way the generated reader handles."""


class _ReaderGenerator:
    """Builds the source of one class tree's body readers: Avro binary straight to
    instances, as ``from_record(schemaless_reader(...))`` would build them."""

    def __init__(self, named: dict[str, Any], prefix: str) -> None:
        # Every name the source defines or looks up starts with `prefix` (the class read:
        # the readers of all classes can live in one module, see schemas.native).
        self.prefix = prefix
        self.namespace: dict[str, Any] = {
            "new": object.__new__,
            "unpack_double": struct.Struct("<d").unpack_from,
        }  # fmt: skip
        self.named = named
        self.done: set[type] = set()
        self.lines: list[str] = []
        self.count = 0

    def var(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def table(self, content: Any) -> str:
        """The name under which `content` (an enum's symbols) is in the namespace."""
        name = self.var(f"{self.prefix}T_")
        self.namespace[name] = content
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        if isinstance(schema, dict) and isinstance(schema["type"], (dict, list)):
            return self.resolve(schema["type"])
        if isinstance(schema, dict) and schema["type"] in self.named:
            return self.named[schema["type"]]
        return schema

    def record(self, cls: type, schema: Any) -> str:
        """The name of the function reading a record of `schema` into `cls`."""
        name = f"{self.prefix}read_{cls.__name__}"
        if cls in self.done:
            return name
        self.done.add(cls)
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise _Unsupported(f"{cls.__name__} is not read from a record")
        fields = dataclasses.fields(cls)
        if [f.name for f in fields] != [f["name"] for f in schema["fields"]]:
            raise _Unsupported(f"{cls.__name__}: fields differ from the schema's")
        self.namespace[f"{self.prefix}C_{cls.__name__}"] = cls
        body = [f"    o = new({self.prefix}C_{cls.__name__})"]
        for f, avro in zip(fields, schema["fields"], strict=True):
            target = self.var("v")
            body.extend(self.value(avro["type"], f.type, target, "    "))
            setter = f"{self.prefix}S_{cls.__name__}_{f.name}"
            self.namespace[setter] = getattr(cls, f.name).__set__
            body.append(f"    {setter}(o, {target})")
        self.lines.append(f"def {name}(d, p, n):\n" + "\n".join(body) + "\n    return o, p\n")
        return name

    def long(self, t: str, ind: str) -> list[str]:
        # A zig-zag varint (Avro int/long): one byte, or the loop written out (timestamps
        # of several bytes are in every event: no call, no tuple). One that does not
        # fit in 64 bits is refused (fastavro would wrap it around).
        return [f"{ind}b = d[p]", f"{ind}if b < 128:",
                f"{ind}    {t} = (b >> 1) ^ -(b & 1)", f"{ind}    p += 1",
                f"{ind}else:", f"{ind}    z = b & 127", f"{ind}    h = 7", f"{ind}    p += 1",
                f"{ind}    while b & 128:", f"{ind}        b = d[p]", f"{ind}        p += 1",
                f"{ind}        z |= (b & 127) << h", f"{ind}        h += 7",
                f"{ind}    if z >> 64:",
                f"{ind}        raise ValueError(f'varint at {{p}} does not fit in 64 bits')",
                f"{ind}    {t} = (z >> 1) ^ -(z & 1)"]  # fmt: skip

    def value(self, avro: Any, tp: Any, t: str, ind: str) -> list[str]:
        """Lines reading one value of `avro` into variable `t`, converted to `tp`
        (None: left as fastavro returns it)."""
        avro = self.resolve(avro)
        kind = (
            avro if isinstance(avro, str) else avro["type"] if isinstance(avro, dict) else "union"
        )
        if tp is not None and isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return [f"{ind}{t}, p = {self.record(tp, avro)}(d, p, n)"]
        if tp is not None and isinstance(tp, type) and issubclass(tp, enum.Enum):
            if kind != "enum":
                raise _Unsupported(f"{tp.__name__} is not read from an enum")
            members = tp._value2member_map_
            table = self.table({i: members[s] for i, s in enumerate(avro["symbols"])})
            return [*self.long(t, ind), f"{ind}{t} = {table}[{t}]"]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if kind == "union":
            inner = None
            if origin is types.UnionType:
                (inner,) = (a for a in args if a is not type(None))
            elif tp is not None:
                raise _Unsupported("a union read into a type that is not optional")
            index = self.var("i")
            out = self.long(index, ind)
            for i, branch in enumerate(avro):
                out.append(f"{ind}{'if' if i == 0 else 'elif'} {index} == {i}:")
                if branch == "null":
                    out.append(f"{ind}    {t} = None")
                else:
                    out.extend(self.value(branch, inner, t, ind + "    "))
            out.extend([f"{ind}else:", f"{ind}    raise ValueError('union index out of range')"])
            return out
        if kind == "record" or (
            tp is not None
            and (
                (kind == "array" and tuple not in (origin, tp) and list not in (origin, tp))
                or (kind == "map" and dict not in (origin, tp))
            )
        ):
            raise _Unsupported(f"{kind} read into {tp!r}")
        if kind == "null":
            return [f"{ind}{t} = None"]
        if kind in ("long", "int"):
            return self.long(t, ind)
        if kind == "boolean":
            return [f"{ind}{t} = d[p] != 0", f"{ind}p += 1"]
        if kind == "double":
            return [f"{ind}{t} = unpack_double(d, p)[0]", f"{ind}p += 8"]
        if kind in ("string", "bytes"):
            size, end = self.var("s"), self.var("e")
            return [*self.long(size, ind), f"{ind}{end} = p + {size}",
                    f"{ind}if {size} < 0 or {end} > n:",
                    f"{ind}    raise EOFError('{kind} past the end of the value')",
                    f"{ind}{t} = d[p:{end}]{'.decode()' if kind == 'string' else ''}",
                    f"{ind}p = {end}"]  # fmt: skip
        if kind == "enum":
            table = self.table(dict(enumerate(avro["symbols"])))
            return [*self.long(t, ind), f"{ind}{t} = {table}[{t}]"]
        if kind in ("array", "map"):
            item_tp = args[0] if origin is tuple else None
            count, item, key = self.var("c"), self.var("x"), self.var("k")
            out = [f"{ind}{t} = {{}}" if kind == "map" else f"{ind}{t} = []", f"{ind}while True:"]
            out.extend(self.long(count, ind + "    "))
            blocks = [f"{ind}    if {count} == 0:", f"{ind}        break"]
            blocks += [f"{ind}    if {count} < 0:", f"{ind}        {count} = -{count}"]
            out.extend(blocks)
            out.extend(self.long(self.var("_"), ind + "        "))
            out.append(f"{ind}    for _ in range({count}):")
            if kind == "map":
                out.extend(self.value("string", None, key, ind + "        "))
                out.extend(self.value(avro["values"], None, item, ind + "        "))
                out.append(f"{ind}        {t}[{key}] = {item}")
            else:
                out.extend(self.value(avro["items"], item_tp, item, ind + "        "))
                out.append(f"{ind}        {t}.append({item})")
            if origin is tuple:
                out.append(f"{ind}{t} = tuple({t})")
            return out
        raise _Unsupported(f"Avro type {kind!r}")


class ReaderSource(typing.NamedTuple):
    """The generated source of one class's body reader and what it looks up."""

    source: str
    namespace: dict[str, Any]  # the names the source uses, besides its own functions
    name: str  # the function reading the class

    @property
    def cls_name(self) -> str:
        """The class read (every name of the source starts with it and ``__``)."""
        return self.name.partition("__")[0]


def reader_source(cls: type, parsed: dict[str, Any]) -> ReaderSource | None:
    """The source of `cls`'s body reader for the schema `parsed` (see body_reader);
    every name in it starts with the class's name and two underscores. None when the
    schema and the class do not line up field for field."""
    gen = _ReaderGenerator(dict(parsed.get("__named_schemas", {})), f"{cls.__name__}__")
    try:
        name = gen.record(cls, parsed)
    except _Unsupported:
        return None
    return ReaderSource("\n".join(gen.lines), gen.namespace, name)


def body_reader(cls: type, parsed: dict[str, Any], *, compiled: bool = True) -> BodyReader | None:
    """A function reading the Avro binary body of `cls` written with the schema
    `parsed` (fastavro's parsed form, no resolution: the writer's schema is the
    reader's) straight into an instance: ``read(value, start, len(value))`` returns
    (instance, end position); it raises on bytes that are not a valid body (an
    index past the end, an unknown enum or union index, bad UTF-8). None when the
    schema and the class do not line up field for field (fastavro reads those).

    The same source compiled to C (schemas.native) when this process has it built for
    exactly this source and `compiled` is true; otherwise run as Python."""
    generated = reader_source(cls, parsed)
    if generated is None:
        return None
    fast = native.reader(generated) if compiled else None
    if fast is not None:
        return fast
    codecache.run(generated.source, generated.namespace)
    reader: BodyReader = generated.namespace[generated.name]
    return reader
