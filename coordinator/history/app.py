"""``jm history``'s faust-streaming application: one agent on the journal, five tables.

At-least-once (faust's default processing guarantee, not its exactly-once mode): the
agent's offsets are committed after the table writes they caused, so a crash
redelivers records the tables already hold; ``Archive`` ignores those (idempotent).
The tables live in memory and recover from their compacted changelog topics, named
under the cluster id (``Catalog.history_topic``).

The journal is written in transactions and fenced leaders leave aborted records in
it: it must be read read_committed, like every replica reads it. faust reads
read_committed only in its exactly-once mode, so the consumer thread below builds
its consumer as that mode would (faust's own switch, ``in_transaction``), and
everything else stays at-least-once.

The domain fold the rows are rendered from lives in memory, so every start folds the
journal from offset 0, by the follower's own batched reads (a faust stream hands
records one by one, about ten times slower), into plain dicts: ``fold_journal``, run
before the faust worker starts. Run in the agent, after the worker had joined its
group, that fold kept the event loop busy for minutes, the loop faust's consumer
thread hands its rebalances to and its table recovery runs on: the group dropped the
member, recovery waited for a loop that did not turn, and a 10,000-job journal never
got served. Once faust recovered the tables from their changelogs, ``publish``
writes the rows they do not hold as folded (all of them into empty tables, none
after a restart whose tables recovered), a slice at a time. Only then does the agent
fold what the stream hands over: records before the first fold's end are skipped,
later ones are folded as they come.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.transport.drivers import aiokafka as faust_kafka

from coordinator.history.archive import TABLES, Archive, Tables
from coordinator.runtime.journal import JournalFollower, StopAt
from coordinator.runtime.machine import State, new_state
from schemas import kafkaio
from schemas.catalog import Catalog
from schemas.signing import KeyRing

log = logging.getLogger(__name__)
#: How long the first fold of the journal may take (a long archive on a slow machine).
CATCH_UP_TIMEOUT_S = 3600.0
#: Rows ``publish`` writes between two turns of the event loop.
PUBLISH_SLICE = 200


class _CommittedReadsThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        reads_committed = self.consumer.in_transaction
        self.consumer.in_transaction = True  # faust's switch for isolation_level
        try:
            return super()._create_worker_consumer(transport)
        finally:
            self.consumer.in_transaction = reads_committed


class _CommittedReadsConsumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _CommittedReadsThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _CommittedReadsConsumer


class _App(faust.App):
    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


class _Table(faust.Table[str, Any]):
    """A table also written while the agent folds outside its stream (the first
    catch-up): the journal has one partition, so every row's is partition 0."""

    def partition_for_key(self, key: Any) -> int | None:
        return 0


@dataclass
class HistoryApp:
    """The faust app and what its agent folds into."""

    app: faust.App
    tables: Tables
    archive: Archive
    new_follower: Callable[[], JournalFollower]
    #: Commits the agent's journal offset in its consumer group (``skip_folded``).
    commit_offset: Callable[[int], Awaitable[None]]
    follower: JournalFollower | None = None
    ready: list[bool] = field(default_factory=lambda: [False])
    #: Set once ``publish`` wrote the first fold's rows: the agent folds on from there.
    published: asyncio.Event = field(default_factory=asyncio.Event)
    #: The rows ``publish`` wrote (none after a restart whose tables recovered).
    rows_written: int = 0

    @property
    def offset(self) -> int:
        """The journal offset the tables reflect (the next one to fold)."""
        if self.follower is None or not self.published.is_set():
            return -1
        return self.follower.position

    def state(self) -> State:
        return new_state() if self.follower is None else self.follower.state

    async def fold_journal(self) -> None:
        """The first fold: the journal from offset 0 to its end, before the faust worker
        starts (on the loop it will run on), into plain dicts until ``publish``."""
        self.archive.tables = Tables.of({table: {} for table in TABLES})
        self.follower = self.new_follower()
        await self.follower.start(0)
        started = time.monotonic()
        log.info("history: folding the journal from offset 0")
        await self.follower.catch_up(timeout_s=CATCH_UP_TIMEOUT_S)
        self.follower.pause()  # the agent feeds it what the stream reads
        log.info(
            "history: folded up to offset %d in %.1f s (%d jobs ended)",
            self.follower.position,
            time.monotonic() - started,
            len(self.archive.tables.jobs),
        )
        await self.skip_folded()

    async def skip_folded(self) -> None:
        """Move the agent's committed offset to the first fold's end, so that the stream
        does not hand over every record folded already, one by one, to be skipped (a
        10,000-job journal's 230,000 records: a minute of CPU). Kafka takes a commit
        from outside the group only while the group has no member; with one (another
        replica, or one killed less than a session timeout ago) the offset stays and
        the agent skips those records. Either way nothing is lost: every start folds
        from offset 0, whatever the group committed."""
        assert self.follower is not None
        try:
            await self.commit_offset(self.follower.position)
        except KafkaError as err:
            log.info("history: the agent will skip the folded records (%s)", type(err).__name__)

    async def publish(self) -> None:
        """Once faust recovered the tables: write the first fold's rows they do not
        hold as folded (at-least-once: the changelogs may lack some after a crash),
        ``PUBLISH_SLICE`` rows at a time with a turn of the loop between slices; the
        archive then writes into the tables themselves."""
        folded, written = self.archive.tables, 0
        started = time.monotonic()
        for name in TABLES:
            table, rows = getattr(self.tables, name), getattr(folded, name)
            for count, (key, row) in enumerate(rows.items(), 1):
                if table.get(key) != row:
                    table[key] = row
                    written += 1
                if count % PUBLISH_SLICE == 0:
                    await asyncio.sleep(0)
        self.archive.tables = self.tables
        self.archive.version += 1
        self.rows_written = written
        self.published.set()
        log.info(
            "history: wrote %d rows the recovered tables did not hold, in %.1f s",
            written,
            time.monotonic() - started,
        )


def build(
    *,
    bootstrap: str,
    catalog: Catalog,
    keys: KeyRing,
    name: str = "history",
    data_dir: str,
) -> HistoryApp:
    """The app of history server `name` (its consumer group and table topics are
    ``<prefix>.<name>...``: another name starts empty and replays the journal)."""
    app_id = catalog.history_topic(name)
    assert catalog.journal.partitions == 1, "one journal partition: the rows' partition is 0"
    app = _App(
        app_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=catalog.journal.partitions,
        topic_replication_factor=catalog.replication_factor,
        consumer_auto_offset_reset="earliest",
        # A history server killed with SIGKILL holds its partition until the group
        # coordinator gives up on it: its restart waits this long (faust: 60 s).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        datadir=data_dir,
        autodiscover=False,
        Table=_Table,
    )
    faust_tables = {
        table: app.Table(
            table,
            default=None,
            key_type=str,
            partitions=catalog.journal.partitions,
            changelog_topic=app.topic(
                catalog.history_topic(name, table),
                # The table writes JSON keys and values; recovery must read them so.
                key_serializer="json",
                value_serializer="json",
                partitions=catalog.journal.partitions,
                compacting=True,
                deleting=False,
                internal=True,
            ),
        )
        for table in TABLES
    }
    tables = Tables.of(faust_tables)
    archive = Archive(tables)
    history = HistoryApp(
        app,
        tables,
        archive,
        lambda: JournalFollower(bootstrap, catalog, keys=keys, on_event=archive.on_event),
        lambda offset: _commit(bootstrap, app_id, catalog.journal.name, offset),
    )
    archive.state = history.state
    journal = app.topic(
        catalog.journal.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )

    @app.agent(journal, name=f"{app_id}.fold")
    async def fold(stream: Any) -> None:
        await history.published.wait()  # the first fold's rows are in the tables
        follower = history.follower
        assert follower is not None
        async for event in stream.events():
            message = event.message
            if message.offset < follower.position:
                continue  # folded by the first fold (or redelivered)
            if message.offset > follower.position + 1:
                # More than the commit marker each transaction ends with: an aborted
                # transaction, or records another member of the group folded (it
                # committed offsets while this one folded the journal, or before a
                # rebalance): the committed ones in between, by the follower's reads.
                follower.seek(follower.position)
                follower.pause(False)
                await follower.catch_up(StopAt(offset=message.offset))
                follower.pause()
            follower.feed(_record(message))

    async def stop_follower(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if history.follower is not None:
            await history.follower.stop()

    app.on_before_shutdown.connect(stop_follower)

    return history


async def _commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    """Commit `group`'s offset of the journal from outside the group, if it is behind."""
    consumer = kafkaio.consumer(bootstrap, group_id=group)
    tp = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        committed = await consumer.committed(tp)
        if committed is None or committed < offset:
            await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def _record(message: Any) -> ConsumerRecord[bytes, bytes]:
    """A faust message as the aiokafka record the follower decodes."""
    return ConsumerRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=int(message.timestamp * 1000),
        timestamp_type=message.timestamp_type,
        key=message.key,
        value=message.value,
        checksum=None,
        serialized_key_size=message.serialized_key_size or 0,
        serialized_value_size=message.serialized_value_size or 0,
        headers=tuple(message.headers or ()),
    )
