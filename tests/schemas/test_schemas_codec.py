"""The codec: round trips, headers, old versions, and every decode error."""

import contextlib
import io
import json
import subprocess
import sys
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import avrogen, codec, convert
from schemas.catalog import Catalog
from schemas.codec import (
    BadMagicError,
    Codec,
    CorruptRecordError,
    DecodeError,
    EncodeError,
    OversizedRecordError,
    SchemaError,
    UnknownFingerprintError,
    WrongTopicError,
)
from schemas.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    Event,
    ExecutionState,
    JobAccepted,
    JobGraph,
    JobSubmitted,
    LeaderKeepalive,
    SlotRef,
    TaskAssigned,
    TaskManagerRegistered,
    TaskRef,
    TaskStateChanged,
    Vertex,
)
from tests.schemas.event_strategies import any_event, events_of, same_types

TASK = TaskRef(job_id="job-1", vertex_id="map", subtask_index=2, attempt=1)
CHANGED = TaskStateChanged(
    event_id="ev-1",
    event_time=1_700_000_000_000,
    tm_id="tm-7",
    incarnation="inc-1",
    task=TASK,
    state=ExecutionState.FAILED,
    error_name="ValueError",
    error_stack="Traceback ...",
)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_type_round_trips(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    value, headers = codec.encode(event)
    assert codec.decode(value) == event
    assert dict(headers)["event-type"] == cls.__name__.encode()


@settings(max_examples=200, deadline=None)
@given(any_event)
def test_decode_restores_exact_types(event: Event) -> None:
    decoded = codec.decode(codec.encode(event)[0])
    assert type(decoded) is type(event)
    for name in event.__dataclass_fields__:
        # Enums come back as members and sequences as tuples, not str/list.
        assert type(getattr(decoded, name)) is type(getattr(event, name))


def test_event_types_map_names_to_classes() -> None:
    assert EVENT_TYPES["JobSubmitted"] is JobSubmitted
    assert set(EVENT_TYPES.values()) == set(EVENT_CLASSES)


def test_headers_name_the_event_for_kcat() -> None:
    _, headers = codec.encode(CHANGED)
    assert headers == [
        ("event-type", b"TaskStateChanged"),
        ("event-id", b"ev-1"),
        ("schema-version", b"2"),
        ("job-id", b"job-1"),
        ("tm-id", b"tm-7"),
    ]


def test_headers_of_decisions_carry_epoch_and_nested_ids() -> None:
    assigned = TaskAssigned(
        event_id="e",
        event_time=1,
        epoch=42,
        task=TASK,
        slot=SlotRef(tm_id="tm-3", slot_index=0),
        incarnation="i",
    )
    headers = dict(codec.encode(assigned)[1])
    assert headers["job-id"] == b"job-1"
    assert headers["tm-id"] == b"tm-3"
    assert headers["epoch"] == b"42"
    keepalive = LeaderKeepalive(event_id="k", event_time=1, epoch=3, leader_replica_id="r1")
    assert "job-id" not in dict(codec.encode(keepalive)[1])


def test_value_is_single_object_encoding_of_the_latest_schema() -> None:
    value, _ = codec.encode(CHANGED)
    path = avrogen.versions("TaskStateChanged")[-1][1]
    schema = json.loads(path.read_text())
    assert value[:2] == b"\xc3\x01"
    # fastavro's hex string is already the little-endian byte order.
    expected_fp = fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert value[2:10] == bytes.fromhex(expected_fp)


def test_crc64_avro_matches_the_avro_spec_and_fastavro() -> None:
    # Apache Avro's own test vector (share/test/data/schema-tests.txt): "null".
    assert codec.crc64_avro(b'"null"') == 7195948357588979594
    for data in (b"", b"a", b'"string"', b"x" * 1000):
        expected = fastavro_fingerprint(data.decode(), "CRC-64-AVRO")
        assert codec.crc64_avro(data).to_bytes(8, "little") == bytes.fromhex(expected)


def _encode_with(schema_path: str, record: dict[str, object]) -> bytes:
    schema = json.loads((avrogen.AVRO_DIR / schema_path).read_text())
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + codec.fingerprint(schema))
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def test_v1_record_decodes_into_latest_class() -> None:
    v1 = _encode_with(
        "TaskManagerRegistered/v1.avsc",
        {
            "event_id": "r1",
            "event_time": 5,
            "tm_id": "tm-1",
            "incarnation": "inc",
            "host": "h",
            "slots": 4,
            "operators": ["map"],
            "running_tasks": [
                {
                    "task": {"job_id": "j", "vertex_id": "v", "subtask_index": 0, "attempt": 0},
                    "slot_index": 1,
                    "state": "RUNNING",
                }
            ],
            "version": "0.1",
        },
    )
    event = codec.decode(v1)
    assert isinstance(event, TaskManagerRegistered)
    assert event.cpu_cores is None and event.memory_bytes is None
    assert event.operators == ("map",)
    assert event.running_tasks[0].state is ExecutionState.RUNNING
    assert codec.default_codec().peek(v1) == (TaskManagerRegistered, 1)


def test_new_records_use_v2_for_task_manager_registered() -> None:
    event = TaskManagerRegistered(
        event_id="r", event_time=1, tm_id="t", incarnation="i", host="h", slots=1, cpu_cores=8
    )
    value, headers = codec.encode(event)
    assert dict(headers)["schema-version"] == b"2"
    assert codec.decode(value) == event


def test_bad_magic() -> None:
    with pytest.raises(BadMagicError):
        codec.decode(b"\x00\x01" + codec.encode(CHANGED)[0][2:])
    with pytest.raises(BadMagicError):
        codec.decode(b"")


def test_unknown_fingerprint() -> None:
    value = codec.encode(CHANGED)[0]
    with pytest.raises(UnknownFingerprintError):
        codec.decode(value[:2] + b"\xff" * 8 + value[10:])


@pytest.mark.parametrize("cut", [3, 10, 20, -1])
def test_truncated(cut: int) -> None:
    value = codec.encode(CHANGED)[0]
    with pytest.raises(CorruptRecordError):
        codec.decode(value[:cut])


def test_trailing_bytes() -> None:
    with pytest.raises(CorruptRecordError, match="trailing"):
        codec.decode(codec.encode(CHANGED)[0] + b"\x00")


def test_oversized() -> None:
    small = Codec(codec.default_codec().versions, max_record_bytes=50)
    with pytest.raises(OversizedRecordError):
        small.decode(codec.encode(CHANGED)[0])


def test_wrong_topic() -> None:
    catalog = Catalog()
    value = codec.encode(CHANGED)[0]
    assert codec.decode(value, catalog.reports.allowed) == CHANGED
    with pytest.raises(WrongTopicError):
        codec.decode(value, catalog.journal.allowed)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64))
def test_garbage_bodies_raise_only_decode_errors(body: bytes) -> None:
    prefix = codec.encode(CHANGED)[0][:10]
    with contextlib.suppress(DecodeError):
        codec.decode(prefix + body)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=10, max_value=200), byte=st.integers(0, 255))
def test_flipped_bytes_raise_only_decode_errors(position: int, byte: int) -> None:
    job = JobSubmitted(
        event_id="e",
        event_time=1,
        job_id="j",
        name="n",
        job_graph=JobGraph(vertices=(Vertex(id="v", name="v", operator="op"),)),
    )
    value = bytearray(
        codec.encode(JobAccepted(event_id="a", event_time=2, epoch=1, submission=job))[0]
    )
    value[position % len(value)] = byte
    with contextlib.suppress(DecodeError):
        codec.decode(bytes(value))


def test_encode_errors() -> None:
    class NotPublished(Event):
        """An event type without a published schema."""

    with pytest.raises(EncodeError):
        codec.encode(NotPublished(event_id="x", event_time=1))
    bad = TaskStateChanged(
        event_id="e",
        event_time=1,
        tm_id="t",
        incarnation="i",
        task=TASK,
        state="BOGUS",  # type: ignore[arg-type]
    )
    with pytest.raises(EncodeError):
        codec.encode(bad)


def test_error_tree_has_one_root() -> None:
    for error in (
        BadMagicError,
        UnknownFingerprintError,
        CorruptRecordError,
        OversizedRecordError,
        WrongTopicError,
        EncodeError,
    ):
        assert issubclass(error, SchemaError)


def test_fingerprints_are_unique_across_all_versions() -> None:
    versions = codec.load_versions()
    assert len({v.fingerprint for v in versions}) == len(versions)


def test_pure_modules_do_not_import_fastavro_or_pydantic() -> None:
    code = (
        "import sys, schemas.events, schemas.catalog, schemas.validation, schemas.errors;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastavro', 'pydantic', 'avro')];"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _fastavro_decode(value: bytes) -> Event:
    """What the codec decoded before it generated its own readers: fastavro's
    schemaless_reader on the writer's schema, then the generated from_record."""
    (version,) = (v for v in codec.default_codec().versions if v.fingerprint == value[2:10])
    from_record = convert.converters(version.cls)[1]
    body = io.BytesIO(value[10:])
    event: Event = from_record(schemaless_reader(body, version.parsed, None))  # type: ignore[arg-type]
    if body.tell() != len(value) - 10:
        raise CorruptRecordError("trailing bytes")
    return event


#: Why the generated reader may refuse a value fastavro reads (see the test below).
STRICTER = ("does not fit in 64 bits", "union index out of range", "KeyError(-")


def test_every_latest_version_is_read_by_a_generated_reader() -> None:
    latest = codec.latest_versions(codec.default_codec().versions)
    for cls in EVENT_CLASSES:
        assert convert.body_reader(cls, latest[cls].parsed) is not None, cls.__name__


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_generated_reader_builds_what_fastavro_builds(
    cls: type[Event], data: st.DataObject
) -> None:
    value = codec.encode(data.draw(events_of(cls)))[0]
    assert same_types(codec.decode(value), _fastavro_decode(value))


@settings(max_examples=200, deadline=None)
@given(event=any_event, position=st.integers(min_value=10), byte=st.integers(0, 255))
def test_generated_reader_accepts_and_refuses_what_fastavro_does(
    event: Event, position: int, byte: int
) -> None:
    value = bytearray(codec.encode(event)[0])
    value[10 + position % (len(value) - 10)] = byte
    try:
        expected: Event | None = _fastavro_decode(bytes(value))
    except Exception:  # whatever fastavro raises, the codec must refuse it
        expected = None
    if expected is None:
        with pytest.raises(CorruptRecordError):
            codec.decode(bytes(value))
        return
    try:
        decoded = codec.decode(bytes(value))
    except CorruptRecordError as err:
        # Stricter than fastavro in two ways only: a long of more than 64 bits is
        # refused, where fastavro wraps it around; a negative union branch or enum
        # symbol index is refused, where fastavro counts it from the end of the list
        # (Python's negative index: -1 is the last branch); Avro allows neither.
        reason = str(err)
        assert any(why in reason for why in STRICTER), reason
    else:
        assert same_types(decoded, expected)


def _outcome(decode: Any, value: bytes) -> tuple[str, Any]:
    try:
        return "event", decode(value)
    except DecodeError as err:
        return type(err).__name__, str(err)


@settings(max_examples=300, deadline=None)
@given(event=any_event, position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_a_bound_decoder_answers_what_decode_answers(
    event: Event, position: int, byte: int
) -> None:
    """``Codec.decoder(allowed)`` (the journal follower's fast path) gives the same event,
    or the same error with the same reason, as ``decode(value, allowed)``: intact values,
    a flipped byte anywhere, a value cut short, a class the topic does not allow."""
    journal = Catalog().journal.allowed
    c = codec.default_codec()
    bound = c.decoder(journal)
    value = codec.encode(event)[0]
    flipped = bytearray(value)
    flipped[position % len(value)] = byte
    for v in (value, bytes(flipped), value[: len(value) // 2], value + b"\x00"):
        assert _outcome(bound, v) == _outcome(lambda x: c.decode(x, journal), v)


_FRESH = Codec(codec.default_codec().versions)
_FRESH_BOUND = _FRESH.decoder(Catalog().journal.allowed)


def test_a_bound_decoder_builds_a_class_reader_when_its_first_value_comes() -> None:
    # Made before any value came: no class's reader is generated yet.
    fresh = Codec(codec.default_codec().versions)
    fresh.decoder(Catalog().journal.allowed)
    assert not fresh._writers


@settings(max_examples=300, deadline=None)
@given(event=any_event, position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_a_lazily_built_decoder_answers_what_decode_answers(
    event: Event, position: int, byte: int
) -> None:
    """The same as above with a decoder made before any class was built: whatever value
    of a class comes first (intact, corrupt, cut short) builds its reader."""
    journal = Catalog().journal.allowed
    value = codec.encode(event)[0]
    flipped = bytearray(value)
    flipped[position % len(value)] = byte
    for v in (bytes(flipped), value[: len(value) // 2], value, value + b"\x00"):
        assert _outcome(_FRESH_BOUND, v) == _outcome(lambda x: _FRESH.decode(x, journal), v)


def test_a_bound_decoder_reads_older_versions_and_refuses_what_is_too_large() -> None:
    v1 = _encode_with(
        "TaskManagerRegistered/v1.avsc",
        {"event_id": "r1", "event_time": 5, "tm_id": "tm-1", "incarnation": "inc", "host": "h",
         "slots": 4, "operators": [], "running_tasks": [], "version": "0.1"},
    )  # fmt: skip
    assert isinstance(codec.default_codec().decoder()(v1), TaskManagerRegistered)
    small = Codec(codec.default_codec().versions, max_record_bytes=50)
    with pytest.raises(OversizedRecordError):
        small.decoder()(codec.encode(CHANGED)[0])
