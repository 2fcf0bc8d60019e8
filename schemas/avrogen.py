"""Derive an Avro schema from an event class, and keep the ``.avsc`` files honest.

The ``.avsc`` files under ``schemas/avro/<Event>/v<N>.avsc`` are the published
contract and are never edited once released. This module derives the schema
the Python class implies (types from annotations, ``doc`` from the class
docstring's ``name: text`` lines) so that:

- ``python -m schemas.avrogen --check`` fails when a class drifted from its
  latest ``.avsc`` (CI runs it through tests/schemas/test_avsc_files.py);
- ``python -m schemas.avrogen --write`` writes a new version for each class
  whose derived schema differs from its latest file (then run
  ``python -m schemas.compat`` to prove the new version is FULL compatible).

Mapping: str->string, int->long, float->double, bool->boolean, bytes->bytes,
StrEnum->enum, dataclass->record, ``X | None``->["null", X], tuple[X, ...]->
array, dict[str, X]->map. Python defaults become Avro defaults.
"""

import argparse
import dataclasses
import enum
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Final

from schemas import events

NAMESPACE: Final = "io.kafkajobmanager"
AVRO_DIR: Final = Path(__file__).parent / "avro"

_COMMON_DOCS: Final = {
    "event_id": "Unique id of this event (a uuid unless stated otherwise); inputs are "
    "deduplicated and referred to by it.",
    "event_time": "When the event was created, milliseconds since the Unix epoch (UTC).",
    "epoch": "Leader epoch of the coordinator that took this decision; workers and "
    "replicas ignore decisions from epochs older than the highest they have seen.",
}
_PRIMITIVES: Final[dict[object, str]] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}
_FIELD_DOC = re.compile(r"^\s{4}(\w+): (.+)$")


def field_docs(cls: type) -> dict[str, str]:
    """Per-field docs from the class docstring (``name: text`` lines, with
    continuation lines indented further)."""
    docs: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or "").splitlines():
        m = _FIELD_DOC.match(line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2).strip()
        elif current and line.startswith("      ") and line.strip():
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def type_doc(cls: type) -> str:
    """The first paragraph of a class docstring, on one line."""
    first = (cls.__doc__ or cls.__name__).strip().split("\n\n")[0]
    return " ".join(first.split())


def _avro_type(tp: object, defined: set[str]) -> Any:
    if tp in _PRIMITIVES:
        return _PRIMITIVES[tp]
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        if tp.__name__ in defined:
            return f"{NAMESPACE}.{tp.__name__}"
        defined.add(tp.__name__)
        return {
            "type": "enum",
            "name": tp.__name__,
            "namespace": NAMESPACE,
            "doc": type_doc(tp),
            "symbols": [m.value for m in tp],
        }
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp, defined)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return ["null", _avro_type(inner, defined)]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _avro_type(args[0], defined)}
    if origin is dict and args[0] is str:
        return {"type": "map", "values": _avro_type(args[1], defined)}
    raise TypeError(f"no Avro mapping for {tp!r}")


def _avro_default(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_avro_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _avro_default(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _avro_default(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.decode("latin-1")  # Avro JSON encodes bytes defaults as latin-1
    return value


def _record(cls: type, defined: set[str]) -> Any:
    if cls.__name__ in defined:
        return f"{NAMESPACE}.{cls.__name__}"
    defined.add(cls.__name__)
    docs = field_docs(cls)
    out_fields = []
    for f in dataclasses.fields(cls):
        doc = docs.get(f.name) or _COMMON_DOCS.get(f.name)
        if doc is None:
            raise ValueError(f"{cls.__name__}.{f.name} has no doc line in the class docstring")
        entry: dict[str, Any] = {"name": f.name, "type": _avro_type(f.type, defined), "doc": doc}
        if f.default is not dataclasses.MISSING:
            entry["default"] = _avro_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            entry["default"] = _avro_default(f.default_factory())
        out_fields.append(entry)
    return {
        "type": "record",
        "name": cls.__name__,
        "namespace": NAMESPACE,
        "doc": type_doc(cls),
        "fields": out_fields,
    }


def derive_schema(cls: type[events.Event]) -> dict[str, Any]:
    """The Avro schema (JSON object) the class implies."""
    schema: dict[str, Any] = _record(cls, set())
    return schema


def versions(event_type: str, root: Path = AVRO_DIR) -> list[tuple[int, Path]]:
    """Published versions of an event type, ascending: (version, path)."""
    found = []
    for p in (root / event_type).glob("v*.avsc"):
        if p.stem[1:].isdigit():
            found.append((int(p.stem[1:]), p))
    return sorted(found)


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.avrogen", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail if a class drifted")
    mode.add_argument("--write", action="store_true", help="write new versions for changes")
    args = parser.parse_args(argv)
    problems = 0
    for cls in events.EVENT_CLASSES:
        derived = derive_schema(cls)
        published = versions(cls.__name__)
        latest = json.loads(published[-1][1].read_text()) if published else None
        if latest == derived:
            continue
        next_version = published[-1][0] + 1 if published else 1
        if args.write:
            path = AVRO_DIR / cls.__name__ / f"v{next_version}.avsc"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump(derived))
            print(f"wrote {path}")
        else:
            problems += 1
            print(f"{cls.__name__}: class differs from its latest .avsc", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
