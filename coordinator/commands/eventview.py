"""What `jm events` does once it runs (coordinator/commands/events.py registers
the command; this module holds the Kafka and Avro side)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from coordinator.commands.common import (
    catalog_from,
    fail,
    format_ms,
    parse_time_ms,
    settings_from,
)
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.codec import DEFAULT_MAX_RECORD_BYTES, MAGIC, Codec, DecodeError, default_codec
from schemas.events import DeadLetter, Event
from schemas.jsonview import readable_bytes, summary, to_jsonable


def resolve_topic(catalog: Catalog, topic: str) -> str:
    for spec in catalog.topics:
        if topic in (spec.role, spec.name):
            return spec.name
    return topic


def matches(event: Event | None, headers: dict[str, str], args: argparse.Namespace) -> bool:
    if args.event_type and (event is None or type(event).__name__ != args.event_type):
        return False
    if args.job:
        job = headers.get("job-id")
        if job is None and event is not None:
            job = getattr(event, "job_id", None)
        return bool(job == args.job)
    return True


@dataclass(frozen=True)
class TopicView:
    """How the records of one topic are read: Avro events of the cluster (`codec`
    with the topic's size limit) or data-plane records (`data_note` says which)."""

    codec: Codec
    data_note: str | None = None


def topic_view(catalog: Catalog, name: str, max_message_bytes: int | None) -> TopicView:
    spec = next((t for t in catalog.topics if t.name == name), None)
    if spec is not None and spec is catalog.state:
        note = (f"{name} holds checkpoint state chunks (raw bytes written by "
                f"schemas/statestore.py; a tombstone discards one), not Avro events")  # fmt: skip
        return TopicView(default_codec().limited_to(spec.max_message_bytes), note)
    if spec is not None:
        return TopicView(default_codec().limited_to(spec.max_message_bytes))
    codec = default_codec().limited_to(max_message_bytes or DEFAULT_MAX_RECORD_BYTES)
    if name.startswith(f"{catalog.prefix}.edge."):
        note = (f"{name} is an edge topic of a job: its records are data-plane records "
                f"(JSON values, jm-kind data or end markers), not Avro events")  # fmt: skip
    else:
        note = (f"{name} is not a topic of cluster {catalog.cluster_id}: records that are "
                f"not Avro events are shown as DATA (a job's source or sink topic holds "
                f"JSON records)")  # fmt: skip
    return TopicView(codec, note)


@dataclass(frozen=True)
class Decoded:
    """One record as shown: an event, data-plane bytes, or why it does not decode."""

    event: Event | None = None
    data: bytes | None = None
    error: str | None = None


def decode_record(view: TopicView, value: bytes | None) -> Decoded:
    if value is None:
        return Decoded(error="no value (a tombstone)")
    if view.data_note is not None and value[:2] != MAGIC:
        return Decoded(data=value)
    try:
        return Decoded(event=view.codec.decode(value))
    except DecodeError as err:
        if view.data_note is not None:
            return Decoded(data=value)
        return Decoded(error=f"{type(err).__name__}: {err}")


def _headers_text(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in headers.items()) + "}"


def _preview(data: bytes, width: int = 200) -> str:
    text = readable_bytes(data)
    return text if len(text) <= width else text[: width - 3] + "..."


def dead_letter_line(dead: DeadLetter) -> str:
    """A dead letter for people: why, where it came from, its key, headers and value."""
    headers = {h.key: readable_bytes(h.value or b"") for h in dead.original_headers}
    key = readable_bytes(dead.original_key) if dead.original_key is not None else None
    value = dead.original_value or b""
    return (f"DeadLetter {dead.error_kind} from {dead.source_topic}[{dead.partition}]"
            f"@{dead.offset}: {dead.reason} | key={key} headers={_headers_text(headers)} "
            f"value={len(value)} bytes: {_preview(value)}")  # fmt: skip


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter's fields with its original key, value and headers readable."""
    row: dict[str, Any] = to_jsonable(dead)
    row["original_key"] = (
        readable_bytes(dead.original_key) if dead.original_key is not None else None
    )
    row["original_value"] = (
        readable_bytes(dead.original_value) if dead.original_value is not None else None
    )
    row["original_headers"] = [
        {"key": h.key, "value": readable_bytes(h.value) if h.value is not None else None}
        for h in dead.original_headers
    ]
    return row


def render(record: ConsumerRecord[bytes, bytes], shown: Decoded, headers: dict[str, str],
           as_json: bool) -> str:  # fmt: skip
    key = readable_bytes(record.key) if record.key is not None else None
    event = shown.event
    if as_json:
        row: dict[str, Any] = {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": key, "headers": headers,
        }  # fmt: skip
        if event is not None:
            row["type"] = type(event).__name__
            row["event"] = (
                dead_letter_json(event) if isinstance(event, DeadLetter) else to_jsonable(event)
            )
        elif shown.data is not None:
            row["data"] = readable_bytes(shown.data)
        else:
            row["error"] = shown.error
        return json.dumps(row, separators=(",", ":"))
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    head = f"{format_ms(record.timestamp)} {where}"
    if isinstance(event, DeadLetter):
        return f"{head} {dead_letter_line(event)}"
    if event is not None:
        return f"{head} {type(event).__name__} key={key} {summary(event)}"
    if shown.data is not None:
        return f"{head} DATA key={key} headers={_headers_text(headers)} {_preview(shown.data)}"
    return f"{head} UNDECODABLE key={key} headers={_headers_text(headers)} reason={shown.error}"


async def events(args: argparse.Namespace, follow: bool) -> int:
    # Usage first, before any connection: a bad --since is exit 2 with its message only.
    since: int | None = None
    if args.since:
        try:
            since = parse_time_ms(args.since, int(time.time() * 1000))
        except ValueError as err:
            return fail(str(err))
    settings = settings_from(args)
    catalog = catalog_from(settings)
    name = resolve_topic(catalog, args.topic)
    described = await kafkaio.describe_topics(settings.bootstrap_servers, [name])
    if name not in described:
        return fail(f"topic {name} does not exist", 1)
    limit = described[name].config.get("max.message.bytes")
    view = topic_view(catalog, name, int(limit) if limit and limit.isdigit() else None)
    if view.data_note is not None and not args.json:
        print(f"jm: note: {view.data_note}", file=sys.stderr, flush=True)
    tps = [TopicPartition(name, p) for p in range(described[name].partitions)]
    consumer = kafkaio.consumer(settings.bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(tps)
        if args.offset is not None:
            for tp in tps:
                consumer.seek(tp, args.offset)
        elif since is not None:
            found = await consumer.offsets_for_times({tp: since for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        elif args.from_beginning or not follow:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        ends = await consumer.end_offsets(tps)
        printed = 0
        while True:
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    return 0
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for tp in tps:
                for record in batch.get(tp, []):
                    headers = {k: readable_bytes(v or b"") for k, v in record.headers}
                    shown = decode_record(view, record.value)
                    if not matches(shown.event, headers, args):
                        continue
                    print(render(record, shown, headers, args.json), flush=True)
                    printed += 1
                    if args.max is not None and printed >= args.max:
                        return 0
    finally:
        await consumer.stop()
