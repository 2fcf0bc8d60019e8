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

The domain fold the rows are rendered from lives in memory. When the agent starts it
folds the journal from offset 0 to its end by the follower's own batched reads (a
faust stream hands records one by one, about ten times slower), writing the rows of
the jobs that ended; after a restart the tables came back from their changelogs
first, so this writes nothing new. The records the stream then hands over again are
skipped; later ones are folded as they come.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_kafka

from coordinator.history.archive import TABLES, Archive, Tables
from coordinator.runtime.journal import JournalFollower, StopAt
from coordinator.runtime.machine import State, new_state
from schemas.catalog import Catalog
from schemas.signing import KeyRing

log = logging.getLogger(__name__)
#: How long the first fold of the journal may take (a long archive on a slow machine).
CATCH_UP_TIMEOUT_S = 3600.0


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
    follower: JournalFollower | None = None  # made in the agent (aiokafka needs the loop)
    ready: list[bool] = field(default_factory=lambda: [False])

    @property
    def offset(self) -> int:
        """The journal offset the tables reflect (the next one to fold)."""
        return -1 if self.follower is None else self.follower.position

    def state(self) -> State:
        return new_state() if self.follower is None else self.follower.state


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
    history = HistoryApp(app, tables, archive)
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
        follower = JournalFollower(bootstrap, catalog, keys=keys, on_event=history.archive.on_event)
        history.follower = follower
        await follower.start(0)
        # The journal up to its end now, by the follower's own batched reads (a
        # restart folds what the recovered tables hold already: no row changes); the
        # records the stream then hands over again are skipped below.
        for table in faust_tables.values():  # written to before faust would declare them
            await table.changelog_topic.maybe_declare()
        log.info("history: folding the journal from offset 0")
        await follower.catch_up(timeout_s=CATCH_UP_TIMEOUT_S)
        log.info("history: folded up to offset %d", follower.position)
        primed = False
        try:
            async for event in stream.events():
                message = event.message
                if message.offset < follower.position:
                    continue  # folded already: delivered again after a restart
                if not primed and message.offset > follower.position:
                    # A restart: the tables recovered, the fold starts empty.
                    log.info("history: rebuilding the fold up to offset %d", message.offset)
                    follower.seek(follower.position)
                    await follower.catch_up(StopAt(offset=message.offset))
                primed = True
                follower.feed(_record(message))
        finally:
            await follower.stop()

    return history


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
