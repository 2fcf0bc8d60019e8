"""The envelope of one task's snapshot: the bytes a task stores for a checkpoint.

A task snapshots its operator state and where it stands in its inputs::

    byte 0      envelope version (ENVELOPE_VERSION = 1)
    bytes 1..4  length N of the header, unsigned big-endian
    N bytes     header, UTF-8 JSON:
                  {"state": "bytes" | "json",
                   "input_positions":  {topic: {partition: next_offset}},
                   "source_positions": {topic: {partition: next_offset}}}
                (JSON keys are strings: partitions are written as decimal text)
    the rest    operator state: raw bytes, or UTF-8 JSON when "state" is "json"

`input_positions` are the next offsets to read on the task's input edge
partitions; `source_positions` those of the external topics a source reads
(`kafka_source`). A `sequence` source keeps its position in `operator_state`.

A reader refuses a version it does not know (SnapshotFormatError, a
StateCorrupt: the bytes cannot be used) rather than guess: a new layout gets a
new version byte and this module keeps reading the old ones.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.statestore import StateCorrupt

ENVELOPE_VERSION: Final = 1
_HEADER_LEN: Final = struct.Struct(">I")

Positions = Mapping[str, Mapping[int, int]]  # topic -> partition -> next offset


class SnapshotFormatError(StateCorrupt):
    """Bytes that are not a task snapshot this build can read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSnapshot:
    """What one task stores for one checkpoint.

    operator_state: the operator's own state, bytes or a JSON-able mapping.
    input_positions: next offset per input edge partition, {topic: {partition: offset}}.
    source_positions: next offset per partition of the external topics a source reads.
    """

    operator_state: bytes | Mapping[str, Any] = b""
    input_positions: Positions = field(default_factory=dict)
    source_positions: Positions = field(default_factory=dict)


def _positions_to_json(positions: Positions) -> dict[str, dict[str, int]]:
    return {t: {str(p): int(o) for p, o in parts.items()} for t, parts in positions.items()}


def _positions_from_json(raw: Any, name: str) -> dict[str, dict[int, int]]:
    try:
        out = {str(t): {int(p): int(o) for p, o in parts.items()} for t, parts in raw.items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise SnapshotFormatError(
            f"task snapshot: {name} is not {{topic: {{partition: offset}}}}"
        ) from err
    if any(o < 0 or p < 0 for parts in out.values() for p, o in parts.items()):
        raise SnapshotFormatError(f"task snapshot: {name} has a negative partition or offset")
    return out


def encode_snapshot(snapshot: TaskSnapshot) -> bytes:
    """The bytes of `snapshot` (the current envelope version)."""
    state = snapshot.operator_state
    if isinstance(state, (bytes, bytearray, memoryview)):
        kind, body = "bytes", bytes(state)
    else:
        kind, body = "json", json.dumps(dict(state), separators=(",", ":")).encode()
    header = json.dumps(
        {
            "state": kind,
            "input_positions": _positions_to_json(snapshot.input_positions),
            "source_positions": _positions_to_json(snapshot.source_positions),
        },
        separators=(",", ":"),
    ).encode()
    return bytes([ENVELOPE_VERSION]) + _HEADER_LEN.pack(len(header)) + header + body


def decode_snapshot(data: bytes) -> TaskSnapshot:
    """The snapshot in `data`; SnapshotFormatError says what is wrong otherwise."""
    if not data:
        raise SnapshotFormatError("task snapshot: no bytes (not even a version byte)")
    if data[0] != ENVELOPE_VERSION:
        raise SnapshotFormatError(
            f"task snapshot: envelope version {data[0]} is unknown "
            f"(this build reads version {ENVELOPE_VERSION})"
        )
    start = 1 + _HEADER_LEN.size
    if len(data) < start:
        raise SnapshotFormatError("task snapshot: truncated before its header length")
    (length,) = _HEADER_LEN.unpack_from(data, 1)
    if len(data) < start + length:
        raise SnapshotFormatError(
            f"task snapshot: header of {length} bytes, only {len(data) - start} present"
        )
    try:
        header = json.loads(data[start : start + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SnapshotFormatError(f"task snapshot: header is not JSON ({err})") from err
    if not isinstance(header, dict) or header.get("state") not in ("bytes", "json"):
        raise SnapshotFormatError('task snapshot: header needs "state": "bytes" or "json"')
    body = data[start + length :]
    state: bytes | dict[str, Any] = body
    if header["state"] == "json":
        try:
            state = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SnapshotFormatError(f"task snapshot: JSON operator state ({err})") from err
        if not isinstance(state, dict):
            raise SnapshotFormatError("task snapshot: JSON operator state is not an object")
    return TaskSnapshot(
        operator_state=state,
        input_positions=_positions_from_json(header.get("input_positions", {}), "input_positions"),
        source_positions=_positions_from_json(
            header.get("source_positions", {}), "source_positions"
        ),
    )
