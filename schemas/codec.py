"""Avro single-object encoding of events, with human-readable Kafka headers.

Value layout (docs/wire-format.md): ``C3 01`` + CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form (8 bytes, little endian) + Avro binary
body. The fingerprint names the exact schema version, so a reader resolves any
published version into the latest class without a schema registry service.

Performance: per class we precompute the parsed schema, the 10-byte prefix,
the static headers and generated converters (schemas.convert); records written
with the latest version are read without schema resolution, by a reader generated
from the schema that builds the event straight from the bytes (fastavro reads
older versions and resolves them into the latest class).
"""

import copy
import functools
import io
import json
import operator
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas import avrogen, convert, events
from schemas.errors import SchemaError
from schemas.events import Event

__all__ = [
    "BadMagicError",
    "Codec",
    "CorruptRecordError",
    "DecodeError",
    "EncodeError",
    "OversizedRecordError",
    "SchemaError",  # re-exported so callers catch the whole tree from the codec
    "SchemaVersion",
    "UnknownFingerprintError",
    "WrongTopicError",
    "crc64_avro",
    "decode",
    "default_codec",
    "encode",
    "fingerprint",
    "load_versions",
]

MAGIC: Final = b"\xc3\x01"
HEADER_LEN: Final = 10  # magic + 8-byte fingerprint
DEFAULT_MAX_RECORD_BYTES: Final = 1_048_576  # Kafka's default max.message.bytes

Headers = list[tuple[str, bytes]]


class DecodeError(SchemaError):
    """A record value could not be turned into an event. Never retriable:
    the same bytes fail the same way, so input records go to the dead letter."""


class BadMagicError(DecodeError):
    """The value does not start with C3 01 (not Avro single-object encoding)."""


class UnknownFingerprintError(DecodeError):
    """The writer schema's fingerprint is not a published version known here."""


class CorruptRecordError(DecodeError):
    """The body is truncated, has trailing bytes, or is not valid for its schema."""


class OversizedRecordError(DecodeError):
    """The value is larger than the configured maximum."""


class WrongTopicError(DecodeError):
    """The event type is valid but not allowed on the topic it was read from."""


class EncodeError(SchemaError):
    """An event could not be encoded (a field has a value its schema forbids)."""


_CRC64_EMPTY: Final = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC64_TABLE: Final = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (the Rabin fingerprint of the Avro specification)."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint(schema: dict[str, Any]) -> bytes:
    """The 8 little-endian bytes of CRC-64-AVRO of the schema's Parsing Canonical Form."""
    canonical: str = to_parsing_canonical_form(schema)
    return crc64_avro(canonical.encode()).to_bytes(8, "little")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One published version of one event type."""

    cls: type[Event]
    version: int
    schema: dict[str, Any]  # as published (JSON)
    parsed: dict[str, Any]  # fastavro's parsed form
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class _Reader:
    cls: type[Event]
    version: int
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: writer is the latest version, no resolution
    from_record: convert.FromRecord
    # Reads the body straight into the class (the latest version's records); None:
    # fastavro's schemaless_reader, then from_record.
    body: convert.BodyReader | None


@dataclass(frozen=True, slots=True)
class _Writer:
    prefix: bytes
    parsed: dict[str, Any]
    to_record: convert.ToRecord
    static_headers: tuple[tuple[str, bytes], ...]
    identity: tuple[tuple[str, Callable[[Any], object]], ...]


def _parse(schema: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = parse_schema(schema)  # type: ignore[assignment]
    return parsed


def load_versions(root: Path = avrogen.AVRO_DIR) -> list[SchemaVersion]:
    """Every published version of every event type, from the .avsc files."""
    out = []
    for cls in events.EVENT_CLASSES:
        published = avrogen.versions(cls.__name__, root)
        if not published:
            raise SchemaError(f"no .avsc published for {cls.__name__} under {root}")
        for version, path in published:
            schema = json.loads(path.read_text())
            out.append(SchemaVersion(cls, version, schema, _parse(schema), fingerprint(schema)))
    return out


def latest_versions(versions: list[SchemaVersion]) -> dict[type[Event], SchemaVersion]:
    """The newest of `versions` for each event class."""
    latest: dict[type[Event], SchemaVersion] = {}
    for v in versions:
        if v.cls not in latest or v.version > latest[v.cls].version:
            latest[v.cls] = v
    return latest


class Codec:
    """Encodes events to Kafka values + headers and back.

    Thread-safe after construction (all tables are read-only).
    """

    def __init__(
        self,
        versions: list[SchemaVersion] | None = None,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.versions = versions if versions is not None else load_versions()
        self._latest = latest_versions(self.versions)
        # Every fingerprint, and the class it is a version of: duplicates refused now.
        self._classes: dict[bytes, type[Event]] = {}
        for v in self.versions:
            if v.fingerprint in self._classes:
                raise SchemaError(f"duplicate fingerprint for {v.cls.__name__}")
            self._classes[v.fingerprint] = v.cls
        # A class's writer and readers are generated the first time it is encoded or
        # decoded (``_build``): a process meets a few of the event types, and generating
        # all of them cost every command and process 75 ms at start. Built once per
        # class; a lookup that finds nothing builds (the tables only grow, with the same
        # entries whichever thread builds first).
        self._writers: dict[type[Event], _Writer] = {}
        self._readers: dict[bytes, _Reader] = {}

    def _build(self, cls: type[Event]) -> None:
        """Generate `cls`'s writer (its latest version) and the readers of all its versions."""
        v = self._latest[cls]
        to_record, from_record = convert.converters(cls)
        body = convert.body_reader(cls, v.parsed)
        readers = {
            old.fingerprint: _Reader(
                cls,
                old.version,
                old.parsed,
                None if old is v else v.parsed,
                from_record,
                body if old is v else None,
            )
            for old in self.versions
            if old.cls is cls
        }
        self._readers.update(readers)
        self._writers[cls] = _Writer(
            prefix=MAGIC + v.fingerprint,
            parsed=v.parsed,
            to_record=to_record,
            static_headers=(
                ("event-type", cls.__name__.encode()),
                ("schema-version", str(v.version).encode()),
            ),
            identity=tuple(
                (h, operator.attrgetter(path)) for h, path in events.identity_fields(cls)
            ),
        )

    def encode_value(self, event: Event) -> bytes:
        """The Kafka record value of `event`."""
        return self.encode(event)[0]

    def headers(self, event: Event) -> Headers:
        """The Kafka headers of `event`: event-type, event-id, schema-version and
        job-id / tm-id / epoch where the event has them (utf-8)."""
        w = self._writer(event)
        out = [w.static_headers[0], ("event-id", event.event_id.encode())]
        out.append(w.static_headers[1])
        for name, get in w.identity:
            value = get(event)
            if value is not None:
                out.append((name, str(value).encode()))
        return out

    def encode(self, event: Event) -> tuple[bytes, Headers]:
        """(value, headers) of the Kafka record carrying `event`."""
        # headers() inlined: this is the hot path of the leader.
        w = self._writers.get(type(event)) or self._writer(event)
        buf = io.BytesIO()
        buf.write(w.prefix)
        try:
            schemaless_writer(buf, w.parsed, w.to_record(event))
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as e:
            raise EncodeError(f"cannot encode {type(event).__name__}: {e!r}") from e
        headers = [w.static_headers[0], ("event-id", event.event_id.encode()), w.static_headers[1]]
        for name, get in w.identity:
            value = get(event)
            if value is not None:
                headers.append((name, str(value).encode()))
        return buf.getvalue(), headers

    def limited_to(self, max_record_bytes: int) -> "Codec":
        """This codec with another record size limit (a topic's own ``max.message.bytes``);
        the tables are shared, they are read-only."""
        other = copy.copy(self)
        other.max_record_bytes = max_record_bytes
        return other

    def decode(self, value: bytes, allowed: Collection[type[Event]] | None = None) -> Event:
        """The event in a Kafka record value, as the latest version's class.

        `allowed`: event classes accepted on the topic being read (see
        schemas.catalog); others raise WrongTopicError before the body is read.
        """
        # The reader of the value's fingerprint, looked up once per record; _reader
        # (the same checks, each with its own error) when this quick path cannot say.
        r = (
            self._readers.get(value[2:HEADER_LEN])
            if type(value) is bytes and value[:2] == MAGIC and len(value) <= self.max_record_bytes
            else None
        ) or self._reader(value)
        if allowed is not None and r.cls not in allowed:
            raise WrongTopicError(f"{r.cls.__name__} is not allowed here")
        if r.body is not None:
            data = value if type(value) is bytes else bytes(value)
            try:
                decoded, end = r.body(data, HEADER_LEN, len(data))
            except Exception as e:  # an index past the end, bad UTF-8, an unknown symbol
                raise CorruptRecordError(
                    f"{r.cls.__name__} v{r.version}: body does not decode: {e!r}"
                ) from e
            if end != len(value):
                raise CorruptRecordError(
                    f"{r.cls.__name__} v{r.version}: {len(value) - end} trailing bytes"
                )
            return decoded  # type: ignore[no-any-return]
        buf = io.BytesIO(value)
        buf.seek(HEADER_LEN)
        try:
            record: dict[str, Any] = schemaless_reader(buf, r.writer, r.reader)  # type: ignore[assignment]
            event: Event = r.from_record(record)
        except Exception as e:  # fastavro raises many kinds on bad bytes
            raise CorruptRecordError(
                f"{r.cls.__name__} v{r.version}: body does not decode: {e!r}"
            ) from e
        if buf.tell() != len(value):
            raise CorruptRecordError(
                f"{r.cls.__name__} v{r.version}: {len(value) - buf.tell()} trailing bytes"
            )
        return event

    def decoder(self, allowed: Collection[type[Event]] | None = None) -> Callable[[bytes], Event]:
        """``decode`` with `allowed` bound, for a reader that decodes a whole topic: the
        generated body readers of the allowed classes' latest schemas, looked up by the
        value's first HEADER_LEN bytes (magic and fingerprint) in one step. A class's
        reader is generated when its first value comes (a reader meets a few of the
        journal's forty types: ``jm replay --until`` paid 50 ms for building all).
        Anything else (an older schema version, a value too large, a class not allowed,
        a body that does not decode to its end) goes to ``decode`` itself, which reads it
        or says why not: the same result as ``decode`` for every value."""
        table = {
            MAGIC + fingerprint: r.body
            for fingerprint, r in self._readers.items()
            if r.body is not None and (allowed is None or r.cls in allowed)
        }
        # The latest versions not in the table yet: each is looked at once, when met.
        unbuilt = {
            MAGIC + v.fingerprint: cls
            for cls, v in self._latest.items()
            if (allowed is None or cls in allowed) and MAGIC + v.fingerprint not in table
        }
        get, limit, general = table.get, self.max_record_bytes, self.decode

        def decode(value: bytes) -> Event:
            body = get(value[:HEADER_LEN]) if type(value) is bytes else None
            if body is None and unbuilt and type(value) is bytes:
                body = first_of_class(value[:HEADER_LEN])
            if body is not None and len(value) <= limit:
                try:
                    event, end = body(value, HEADER_LEN, len(value))
                except Exception:  # ``decode`` says what is wrong
                    return general(value, allowed)
                if end == len(value):
                    return event  # type: ignore[no-any-return]
            return general(value, allowed)

        def first_of_class(head: bytes) -> convert.BodyReader | None:
            cls = unbuilt.pop(head, None)
            if cls is None:
                return None
            if cls not in self._writers:
                self._build(cls)
            body = self._readers[head[2:]].body
            if body is not None:
                table[head] = body
            return body

        return decode

    def peek(self, value: bytes) -> tuple[type[Event], int]:
        """(event class, writer schema version) of a value, without reading its body."""
        r = self._reader(value)
        return r.cls, r.version

    def _reader(self, value: bytes) -> _Reader:
        if len(value) > self.max_record_bytes:
            raise OversizedRecordError(
                f"record of {len(value)} bytes exceeds the maximum of {self.max_record_bytes}"
            )
        if value[:2] != MAGIC:
            raise BadMagicError(f"value starts with {bytes(value[:2])!r}, expected C3 01")
        if len(value) < HEADER_LEN:
            raise CorruptRecordError(f"value of {len(value)} bytes has no full fingerprint")
        fingerprint = bytes(value[2:HEADER_LEN])
        r = self._readers.get(fingerprint)
        if r is None and fingerprint in self._classes:
            self._build(self._classes[fingerprint])
            r = self._readers[fingerprint]
        if r is None:
            raise UnknownFingerprintError(
                f"unknown schema fingerprint {bytes(value[2:HEADER_LEN]).hex()}"
            )
        return r

    def _writer(self, event: Event) -> _Writer:
        cls = type(event)
        if cls not in self._writers:
            if cls not in self._latest:
                raise EncodeError(f"{cls.__name__} has no published schema")
            self._build(cls)
        return self._writers[cls]


@functools.cache
def default_codec() -> Codec:
    """The codec over the schemas shipped in this package (built once)."""
    return Codec()


def encode(event: Event) -> tuple[bytes, Headers]:
    """(value, headers) of `event` with the default codec."""
    return default_codec().encode(event)


def decode(value: bytes, allowed: Collection[type[Event]] | None = None) -> Event:
    """The event in `value` with the default codec; see Codec.decode."""
    return default_codec().decode(value, allowed)
