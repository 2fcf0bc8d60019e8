"""Kafka plumbing both sides of the contract need: topics and input decoding.

- ``create_topics`` / ``describe_topics`` / ``check_topics``: the catalog's
  topics on the broker, created idempotently and verified at process start
  (a process refuses to run on a topic with the wrong configuration).
- ``ensure_topics`` / ``wait_for_leaders``: topics outside the catalog (a job's edge
  topics), created when missing and usable (every partition led) on return.
- ``InputDecoder``: decodes records of the *input* topics (submissions,
  reports, heartbeats). A record that does not decode, or does not belong on
  its topic, becomes a ``DeadLetter`` (original bytes, topic, partition,
  offset, reason) for the caller to produce to ``deadletter``; reading goes on.
  With a key ring, a record that decodes but whose signature is missing or not
  valid for its topic is dead-lettered the same way (``SignatureError``).
  The journal is never dead-lettered: ``JournalDecoder`` raises instead.
- Consumer and producer settings that are safe here (read_committed, no
  auto-commit, small fetch wait on control topics).
- ``consumer`` / ``producer`` / ``admin_client``: every Kafka client of the project
  is built here, with the process's SASL/TLS settings (``schemas.security``).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.structs import ConsumerRecord

from schemas import events as ev
from schemas import security
from schemas.catalog import Catalog, TopicSpec
from schemas.codec import Codec, DecodeError, default_codec
from schemas.signing import KeyRing, SignatureError

TOPIC_ALREADY_EXISTS: Final = 36

# aiokafka's defaults are unsafe for this project: read_uncommitted would act on
# a fenced leader's aborted writes, auto-commit would move offsets outside
# transactions, and a 500 ms fetch wait alone breaks the latency targets.
SAFE_CONSUMER: Final[Mapping[str, Any]] = {
    "isolation_level": "read_committed",
    "enable_auto_commit": False,
    "fetch_max_wait_ms": 10,
    "auto_offset_reset": "earliest",
}


#: Fetch wait of the consumers that sit waiting for control records: the leader's inputs,
#: a worker's commands, every replica's heartbeat feed. The broker answers a fetch as
#: soon as a record is there (under read_committed, the transaction's commit markers wake
#: it too), so a long wait costs no latency; it bounds how often an idle consumer asks:
#: twice a second instead of 100-200 times (each empty fetch costs the broker and the
#: consumer's event loop CPU, which the 2-core hosts of the benchmarks lack).
CONTROL_FETCH_WAIT_MS: Final = 500


class TopicError(Exception):
    """The broker's topics do not match the catalog (missing, misconfigured)."""


@dataclass(frozen=True)
class TopicState:
    """What the broker says about one topic."""

    name: str
    partitions: int
    config: dict[str, str]


class Consumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka ships no types
    """An ``AIOKafkaConsumer`` whose ``stop()`` does not leak a cancel.

    aiokafka 0.14's fetcher ``close()`` cancels its pending fetch tasks and awaits
    them; a fetch that failed because a broker is gone sleeps in its retry backoff
    outside the ``CancelledError`` handler, so the cancel escapes ``stop()`` into
    the caller, as if the caller itself had been cancelled, and the rest of the
    close (the other fetches, the client's connections) is skipped. A leader
    stepping down during a broker outage then ended its whole replica. Here such
    a stray cancel is absorbed and the close finished; a real cancel of the
    calling task still propagates.
    """

    async def stop(self) -> None:
        try:
            await super().stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the caller is being cancelled: not ours to swallow
            await self._finish_stop()

    async def _finish_stop(self) -> None:
        fetcher = getattr(self, "_fetcher", None)
        pending = list(getattr(fetcher, "_pending_tasks", ()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.close()


def consumer(bootstrap: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with the safe settings (callers assign() partitions themselves)."""
    return Consumer(
        bootstrap_servers=bootstrap,
        **{**security.current().client_options(), **SAFE_CONSUMER, **overrides},
    )


#: One record of a batch-reading consumer: (offset, value, key, headers); the headers
#: are an empty tuple unless the consumer was set to read them (``read_batches``).
LightRecord = tuple[int, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]


class _BatchResults(collections.OrderedDict[Any, Any]):
    """The fetcher's buffer of fetched partitions (aiokafka's ``Fetcher._records``), with
    each fetched result set to come out whole record batches: see ``read_batches``."""

    def __init__(self, buffered: Any, headers: bool) -> None:
        super().__init__(buffered)
        self.headers = headers

    def __setitem__(self, tp: Any, result: Any) -> None:
        if type(result) is FetchResult:
            records = result._partition_records
            records._records_iterator = _record_batches(records, self.headers)
        super().__setitem__(tp, result)


def _record_batches(part: PartitionRecords, headers: bool) -> Iterator[list[LightRecord]]:
    """The records of one fetch response, one list of (offset, value, key, headers) per
    record batch; what aiokafka's own iterator keeps and skips (a batch that fails its
    CRC, aborted transactions under read_committed, control batches, records before the
    fetch offset), without one ConsumerRecord object per record. The record batch
    parser builds each record's header list anyway: taking it costs one attribute read."""
    memory = part._records
    committed_only = part._isolation_level == READ_COMMITTED
    while memory.has_next():
        batch = memory.next_batch()
        if part._check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {part._tp}")
        if committed_only and batch.producer_id is not None:
            part._consume_aborted_up_to(batch.base_offset)
            if batch.is_control_batch and part._contains_abort_marker(batch):
                part._aborted_producers.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in part._aborted_producers:
                part.next_fetch_offset = batch.next_offset
                continue
        if batch.is_control_batch:
            part.next_fetch_offset = batch.next_offset
            continue
        start = part.next_fetch_offset
        if headers:
            out = [(r.offset, r.value, r.key, r.headers) for r in batch if r.offset >= start]
        else:
            out = [(r.offset, r.value, r.key, ()) for r in batch if r.offset >= start]
        part.next_fetch_offset = batch.next_offset
        if out:
            yield out


def read_batches(consumer: AIOKafkaConsumer, *, headers: bool = False) -> None:
    """Make a started consumer's ``getmany`` return, per partition, a list of record
    batches, each a list of (offset, value, key, headers), instead of one
    ConsumerRecord per record (a full replay spends more time building those than
    decoding the events). `headers`: each record's headers as a list of (key, value)
    (a reader that verifies signatures); otherwise an empty tuple. Positions, seeks,
    errors and read_committed work as before; ``max_records`` counts batches. Relies
    on aiokafka's fetcher internals (the version pinned in pyproject.toml); raises
    TypeError when they are not what it expects."""
    fetcher = getattr(consumer, "_fetcher", None)
    buffered = getattr(fetcher, "_records", None)
    if type(buffered) is not collections.OrderedDict or not hasattr(
        PartitionRecords, "_consume_aborted_up_to"
    ):
        raise TypeError("read_batches: aiokafka's fetcher is not the one it was written for")
    fetcher._records = _BatchResults(buffered, headers)  # type: ignore[union-attr]


def producer(*, bootstrap_servers: str, **options: Any) -> AIOKafkaProducer:
    """A producer with the process's connection security (``schemas.security``)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, **{**security.current().client_options(), **options}
    )


def admin_client(*, bootstrap_servers: str, **options: Any) -> AIOKafkaAdminClient:
    """An admin client with the process's connection security (``schemas.security``)."""
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, **{**security.current().client_options(), **options}
    )


async def create_topics(bootstrap: str, catalog: Catalog) -> dict[str, str]:
    """Create every catalog topic that is missing. Returns {topic: 'created' | 'exists'}.

    ``create_topics`` reports failures as error codes in its response instead
    of raising, so every code is checked here.
    """
    admin = admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        specs = [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=catalog.replication_factor,
                topic_configs=t.config(),
            )
            for t in catalog.topics
        ]
        response = await admin.create_topics(specs)
        outcome: dict[str, str] = {}
        for name, code, message in response.topic_errors:
            if code == 0:
                outcome[name] = "created"
            elif code == TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise TopicError(f"creating {name} failed: error {code} {message or ''}".strip())
    finally:
        await admin.close()
    existing = [t for t in catalog.topics if outcome.get(t.name) == "exists"]
    for name in await align_topic_configs(bootstrap, existing):
        outcome[name] = "updated"
    return outcome


#: Topic configs `create_topics` brings in line on an existing topic: they change
#: how often the broker cleans up, never what a topic keeps or how it is ordered.
SAFE_TO_ALIGN: Final = frozenset({"segment.ms", "min.cleanable.dirty.ratio", "delete.retention.ms"})


async def align_topic_configs(bootstrap: str, specs: list[TopicSpec]) -> list[str]:
    """Set the catalog's config on each existing topic of `specs` that differs from
    it only in SAFE_TO_ALIGN keys (topics made before such a key joined the catalog);
    the names of the topics updated. Anything else that differs is left for
    ``check_topics`` to report."""
    if not specs:
        return []
    actual = await describe_topics(bootstrap, [s.name for s in specs])
    todo = []
    for spec in specs:
        state = actual.get(spec.name)
        if state is None or state.partitions != spec.partitions:
            continue
        differing = {k for k, v in spec.config().items() if state.config.get(k) != v}
        if differing and differing <= SAFE_TO_ALIGN:
            todo.append(spec)
    if not todo:
        return []
    admin = admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # AlterConfigs (not incremental) replaces every dynamic config of the topic:
        # the whole catalog config goes, as at creation.
        resources = [ConfigResource(ConfigResourceType.TOPIC, s.name, s.config()) for s in todo]
        for response in await admin.alter_configs(resources):
            for code, message, _type, name in response.resources:
                if code != 0:
                    raise TopicError(f"updating {name} failed: error {code} {message or ''}")
    finally:
        await admin.close()
    # The broker applies a config change a moment after it answers (KRaft metadata).
    deadline = time.monotonic() + 10
    while True:
        actual = await describe_topics(bootstrap, [s.name for s in todo])
        if all(not topic_problems(s, actual.get(s.name)) for s in todo):
            return [s.name for s in todo]
        if time.monotonic() > deadline:
            raise TopicError(f"configs of {', '.join(s.name for s in todo)} not applied in 10 s")
        await asyncio.sleep(0.1)


async def describe_topics(bootstrap: str, names: list[str]) -> dict[str, TopicState]:
    """Partition counts and configs of the topics that exist (missing ones are absent)."""
    admin = admin_client(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        if not present:
            return {}
        described = await admin.describe_topics(present)
        partitions = {d["topic"]: len(d["partitions"]) for d in described}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
        configs: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return {n: TopicState(n, partitions[n], configs.get(n, {})) for n in present}
    finally:
        await admin.close()


def topic_problems(spec: TopicSpec, actual: TopicState | None) -> list[str]:
    """Every way `actual` differs from the catalog's `spec` (empty when it fits)."""
    if actual is None:
        return [f"{spec.name}: missing (run `jm topics create`)"]
    problems = []
    if actual.partitions != spec.partitions:
        problems.append(
            f"{spec.name}: {actual.partitions} partitions, the catalog says {spec.partitions}"
        )
    for key, want in spec.config().items():
        have = actual.config.get(key)
        if have != want:
            problems.append(f"{spec.name}: {key}={have}, the catalog says {want}")
    return problems


MISSING_TOPIC_GRACE_S: Final = 5.0
#: How long a topic created a moment ago may take to have a leader for every partition.
LEADERS_TIMEOUT_S: Final = 30.0


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, partitions: Mapping[str, int],
    timeout_s: float = LEADERS_TIMEOUT_S,
) -> None:  # fmt: skip
    """Return once every topic of `partitions` ({topic: partition count}) has a leader for
    each of its partitions, as the broker's metadata says.

    ``CreateTopics`` answers before the new topic is in the metadata: a client that
    produces or fetches at once meets UnknownTopicOrPartition or NotLeaderForPartition,
    which aiokafka retries but logs as ERROR/WARNING. Waiting here avoids that race.
    Raises TopicError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    missing = sorted(partitions)
    pause = 0.005  # a new topic usually has its leaders within 10-30 ms: look often at first
    while True:
        missing = await _without_leaders(admin, partitions, missing)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"no leader for every partition of {', '.join(missing)} "
                             f"within {timeout_s:.0f}s")  # fmt: skip
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


async def _without_leaders(
    admin: AIOKafkaAdminClient, partitions: Mapping[str, int], names: list[str]
) -> list[str]:
    """The topics of `names` that are missing, have another partition count than
    `partitions` says, or lack a leader for a partition (one metadata request)."""
    described = await admin.describe_topics(names)
    ready = {
        d["topic"] for d in described
        if d["error_code"] == 0 and len(d["partitions"]) == partitions[d["topic"]]
        and all(p["error_code"] == 0 and p["leader"] >= 0 for p in d["partitions"])
    }  # fmt: skip
    return [t for t in names if t not in ready]


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    partitions: Mapping[str, int],
    replication_factor: int,
    config: Mapping[str, str],
    timeout_s: float = LEADERS_TIMEOUT_S,
) -> list[str]:
    """Make every topic of `partitions` ({topic: partition count}) exist with a leader
    for each partition; the names it had to ask the broker to create. Topics that are
    already there and led cost one metadata request and nothing else; creating one that
    someone else just created is no error (TOPIC_ALREADY_EXISTS). Raises TopicError."""
    missing = await _without_leaders(admin, partitions, sorted(partitions))
    if not missing:
        return []
    specs = [
        NewTopic(name, partitions[name], replication_factor, topic_configs=dict(config))
        for name in missing
    ]
    response = await admin.create_topics(specs)
    created = []
    for name, code, message in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TOPIC_ALREADY_EXISTS:
            raise TopicError(f"creating topic {name} failed: error {code} {message or ''}".strip())
    await wait_for_leaders(admin, {name: partitions[name] for name in missing}, timeout_s)
    return created


async def check_topics(bootstrap: str, catalog: Catalog, roles: list[str] | None = None) -> None:
    """Raise TopicError listing every problem unless the topics match the catalog.

    Processes call this at start: running on a journal with two partitions or a
    retention limit would silently lose the total order or the history.
    """
    specs = [catalog.topic(r) for r in roles] if roles else list(catalog.topics)
    # A topic created a moment ago may not be in every broker's metadata yet: a
    # missing topic is looked for again for a few seconds before it counts.
    deadline = time.monotonic() + MISSING_TOPIC_GRACE_S
    while True:
        actual = await describe_topics(bootstrap, [s.name for s in specs])
        if all(s.name in actual for s in specs) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    problems = [p for s in specs for p in topic_problems(s, actual.get(s.name))]
    if problems:
        raise TopicError("topics do not match the catalog:\n  " + "\n  ".join(problems))


class InputDecoder:
    """Decodes input-topic records; what cannot be decoded becomes a DeadLetter.

    ``decode(record)`` returns ``(event, None)`` or ``(None, dead_letter)``;
    never raises for bad bytes. The caller produces the dead letter (in the same
    transaction as its offsets, for the leader) and carries on.
    """

    def __init__(
        self, catalog: Catalog, codec: Codec | None = None, keys: KeyRing | None = None
    ) -> None:
        """`keys`: verify signatures with them (None: a tool that only looks)."""
        self.codec = codec or default_codec()
        self.keys = keys
        self._allowed = {t.name: t.allowed for t in catalog.topics}
        self._roles = {t.name: t.role for t in catalog.topics}
        self.dead_letters = 0
        self.bad_signatures = 0

    def decode(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[ev.Event | None, ev.DeadLetter | None]:
        allowed = self._allowed.get(record.topic)
        try:
            if record.value is None:
                raise DecodeError("record has no value (tombstone)")
            if allowed is None:
                raise DecodeError(f"{record.topic} is not a topic of this cluster")
            event = self.codec.decode(record.value, allowed)
            if self.keys is not None:
                problem = self.keys.problem(self._roles[record.topic], record.topic,
                                            record.key, record.value, record.headers)  # fmt: skip
                if problem is not None:
                    self.bad_signatures += 1
                    raise SignatureError(problem)
            return event, None
        except (DecodeError, SignatureError) as err:
            self.dead_letters += 1
            return None, dead_letter(record, err)


def dead_letter(record: ConsumerRecord[bytes, bytes], err: Exception) -> ev.DeadLetter:
    """The DeadLetter event for a record that failed with `err`."""
    headers = tuple(
        ev.KafkaHeader(key=k, value=bytes(v) if v is not None else None)
        for k, v in (record.headers or ())
    )
    return ev.DeadLetter(
        event_id=f"deadletter:{record.topic}:{record.partition}:{record.offset}",
        event_time=int(record.timestamp),
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        original_key=record.key,
        original_value=record.value,
        original_headers=headers,
        reason=str(err),
        error_kind=type(err).__name__,
    )


def new_event_id() -> str:
    """Ids for events created outside the coordinator's decisions (clients, workers)."""
    return uuid.uuid4().hex


@dataclass
class InputBatch:
    """One poll of the input topics: decoded events in read order, dead letters,
    and the next offset to commit per partition (covers both)."""

    events: list[tuple[ConsumerRecord[bytes, bytes], ev.Event]]
    dead_letters: list[ev.DeadLetter]
    next_offsets: dict[TopicPartition, int]

    def __len__(self) -> int:
        return len(self.events) + len(self.dead_letters)


async def poll_inputs(
    consumer: AIOKafkaConsumer, decoder: InputDecoder, timeout_ms: int, max_records: int
) -> InputBatch:
    """Read up to `max_records` from the assigned input partitions and decode them.

    Partitions are merged by record timestamp so one batch interleaves topics
    the way they were written; within a partition the log order always wins
    (heapq.merge only ever takes the head of each partition's list), even when
    a producer set timestamps that go backwards.
    """
    fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    batch = InputBatch([], [], {})
    ordered = [fetched[tp] for tp in sorted(fetched)]
    for record in heapq.merge(*ordered, key=lambda r: r.timestamp):
        event, dead = decoder.decode(record)
        if event is not None:
            batch.events.append((record, event))
        elif dead is not None:
            batch.dead_letters.append(dead)
        tp = TopicPartition(record.topic, record.partition)
        batch.next_offsets[tp] = max(batch.next_offsets.get(tp, 0), record.offset + 1)
    return batch


def dead_letter_headers(dead: ev.DeadLetter) -> list[tuple[str, bytes]]:
    """Headers a dead letter carries besides the codec's (filter without decoding)."""
    return [("source-topic", dead.source_topic.encode()), ("error-kind", dead.error_kind.encode())]


async def send_dead_letters(
    producer: AIOKafkaProducer, catalog: Catalog, dead_letters: list[ev.DeadLetter],
    codec: Codec | None = None,
) -> None:  # fmt: skip
    """Produce dead letters to the cluster's deadletter topic (inside the caller's
    transaction when the producer is transactional)."""
    codec = codec or default_codec()
    for dead in dead_letters:
        value, headers = codec.encode(dead)
        headers.extend(dead_letter_headers(dead))
        await producer.send(
            catalog.deadletter.name, value, key=catalog.key_for(dead), headers=headers
        )


async def read_partition(
    bootstrap: str, topic: str, partition: int = 0, **overrides: Any
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of one partition, from the beginning to the end offset
    seen at the start (for small compacted topics: replica status, snapshots)."""
    tp = TopicPartition(topic, partition)
    reader = consumer(bootstrap, **overrides)
    await reader.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            records.extend((await reader.getmany(tp, timeout_ms=500)).get(tp, []))
    finally:
        await reader.stop()
    return records
