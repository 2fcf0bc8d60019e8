"""``jm events tail|dump``: decode any of the cluster's topics into readable lines or JSON lines.

Reads with read_committed (what the coordinator acts on). ``dump`` stops at the
end offsets it saw when it started; ``tail`` follows. A record that does not
decode is shown with the reason, never skipped silently.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import (
    add_connection_flags,
    catalog_from,
    fail,
    format_ms,
    parse_time_ms,
    run,
    settings_from,
)

if TYPE_CHECKING:  # the rest is imported when a command runs: `jm --help` stays fast
    from aiokafka.structs import ConsumerRecord

    from schemas.catalog import Catalog
    from schemas.events import Event


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser("events", help="decode records of the cluster's topics")
    verbs = events.add_subparsers(dest="verb", required=True)
    for verb, text in (("tail", "follow new records"), ("dump", "print up to the end and stop")):
        p = verbs.add_parser(verb, help=text)
        add_connection_flags(p)
        p.add_argument(
            "--topic", default="journal", help="role (journal, submissions, ...) or full name"
        )
        where = p.add_mutually_exclusive_group()
        where.add_argument("--from-beginning", action="store_true")
        where.add_argument("--offset", type=int, help="start at this offset of every partition")
        where.add_argument("--since", help="ISO 8601 time, epoch ms, or a duration back (15m)")
        p.add_argument("--job", help="only records of this job id")
        p.add_argument(
            "--type", dest="event_type", help="only events of this type (JobAccepted, ...)"
        )
        p.add_argument("--json", action="store_true", help="JSON lines")
        p.add_argument("--max", type=int, help="stop after this many printed records")
        p.set_defaults(handler=lambda a, follow=(verb == "tail"): run(_events(a, follow)))


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


def render(record: ConsumerRecord[bytes, bytes], event: Event | None, error: str | None,
           headers: dict[str, str], as_json: bool) -> str:  # fmt: skip
    from schemas.jsonview import summary, to_jsonable

    key = record.key.decode(errors="replace") if record.key is not None else None
    if as_json:
        row: dict[str, Any] = {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": key, "headers": headers,
        }  # fmt: skip
        if event is not None:
            row["type"] = type(event).__name__
            row["event"] = to_jsonable(event)
        else:
            row["error"] = error
        return json.dumps(row, separators=(",", ":"))
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    head = f"{format_ms(record.timestamp)} {where}"
    if event is None:
        return f"{head} UNDECODABLE key={key} headers={headers} reason={error}"
    return f"{head} {type(event).__name__} key={key} {summary(event)}"


async def _events(args: argparse.Namespace, follow: bool) -> int:
    from aiokafka import TopicPartition

    from schemas import kafkaio
    from schemas.codec import DecodeError, default_codec

    settings = settings_from(args)
    name = resolve_topic(catalog_from(settings), args.topic)
    described = await kafkaio.describe_topics(settings.bootstrap_servers, [name])
    if name not in described:
        return fail(f"topic {name} does not exist", 1)
    tps = [TopicPartition(name, p) for p in range(described[name].partitions)]
    consumer = kafkaio.consumer(settings.bootstrap_servers)
    await consumer.start()
    try:
        consumer.assign(tps)
        if args.offset is not None:
            for tp in tps:
                consumer.seek(tp, args.offset)
        elif args.since:
            try:
                since = parse_time_ms(args.since, int(time.time() * 1000))
            except ValueError as err:
                return fail(str(err))
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
        codec = default_codec()
        printed = 0
        while True:
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    return 0
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for tp in tps:
                for record in batch.get(tp, []):
                    headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
                    event: Event | None = None
                    error: str | None = None
                    try:
                        event = codec.decode(record.value or b"")
                    except DecodeError as err:
                        error = f"{type(err).__name__}: {err}"
                    if not matches(event, headers, args):
                        continue
                    print(render(record, event, error, headers, args.json), flush=True)
                    printed += 1
                    if args.max is not None and printed >= args.max:
                        return 0
    finally:
        await consumer.stop()
