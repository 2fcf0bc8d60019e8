"""Events as plain JSON-able data, for people and tools (``jm events --json``, ``--dry-run``).

Not a wire format: the wire format is Avro (docs/wire-format.md). Enums become
their names, tuples lists, bytes base64 strings.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from typing import Any

from schemas.events import Event


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


#: Marks bytes shown as base64 by ``readable_bytes``.
BASE64_PREFIX = "base64:"


def readable_bytes(data: bytes) -> str:
    """Bytes for people: the text itself when it is printable UTF-8, else
    ``base64:<base64>`` (also for text that itself starts with that prefix, so a
    value is never ambiguous)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and not text.startswith(BASE64_PREFIX):
        return text
    return BASE64_PREFIX + base64.b64encode(data).decode()


def event_json(event: Event) -> dict[str, Any]:
    """``{"type": "JobSubmitted", "event": {...fields...}}``."""
    return {"type": type(event).__name__, "event": to_jsonable(event)}


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=False, separators=(",", ":"))


def summary(event: Event, width: int = 160) -> str:
    """One readable line of an event's fields, without the ids every event carries."""
    skip = {"event_id", "event_time"}
    parts = []
    for f in dataclasses.fields(event):
        if f.name in skip:
            continue
        value = to_jsonable(getattr(event, f.name))
        if value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{f.name}={text}")
    line = " ".join(parts)
    return line if len(line) <= width else line[: width - 3] + "..."
