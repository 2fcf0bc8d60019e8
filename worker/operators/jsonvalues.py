"""Records as the compact JSON values ``kafka_sink`` writes, a batch at a time.

The bytes are those of ``json.JSONEncoder(separators=(",", ":"), default=str).encode``
for each record (ASCII, non-JSON values as their ``str``): what the sink wrote before
batches, and what its readers expect. What costs in that call for a small record is
not the encoding but its set-up (a new C encoder and a closure per call), so:

- ``encode_record``: one record, through one C encoder made once;
- ``encode_records``: a batch's records through ONE call of a C encoder whose item
  separator is ``\\x00``. The output is ASCII with every control character of a string
  escaped, so a raw ``\\x00`` is a separator and nothing else; between two records of
  the list it sits in ``}\\x00{``. When that sequence occurs exactly once per boundary
  (not also inside a record: a list of objects in a record), the output is cut there
  and every other ``\\x00`` becomes ``,``: each piece is then, byte for byte, what the
  record alone gives. Otherwise each record is encoded alone.

Neither checks for circular records (one fails the task with RecursionError, not
ValueError).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

_SEPARATOR: Final = "\x00"
_BOUNDARY: Final = "}\x00{"
_CUT: Final = "}\x01{"


def _c_encoder(item_separator: str) -> Callable[[Any, int], Sequence[str]] | None:
    """The C encoder JSONEncoder builds per call, built once; None without the C
    accelerator. Its arguments: markers (None: no circular check), default, the string
    encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    ascii_string = json.encoder.encode_basestring_ascii
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None, str, ascii_string, None, ":", item_separator, False, False, True
    )
    return encoder


_plain: Final = json.JSONEncoder(separators=(",", ":"), default=str).encode
_one: Final = _c_encoder(",")
_many: Final = _c_encoder(_SEPARATOR)


def encode_record(record: object) -> str:
    """One record as compact JSON (see the module docstring)."""
    if _one is None:
        return _plain(record)
    return "".join(_one(record, 0))


def encode_records(records: list[dict[str, Any]]) -> list[bytes]:
    """Every record as compact JSON bytes, in order (see the module docstring)."""
    if _many is None or len(records) < 2:
        return [encode_record(r).encode() for r in records]
    text = "".join(_many(records, 0))[1:-1]  # without the list's brackets
    cut = text.replace(_BOUNDARY, _CUT)
    if cut.count("\x01") != len(records) - 1:  # a boundary inside a record as well
        return [encode_record(r).encode() for r in records]
    return cut.replace(_SEPARATOR, ",").encode().split(b"\x01")
