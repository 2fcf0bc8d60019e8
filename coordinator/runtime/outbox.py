"""Records the leader sends, encoded once and size-checked before anything goes out.

Every record is checked against its topic's ``max.message.bytes`` (less the
framing a record batch adds) while the decision that made it can still be
refused: a record that would not fit raises ``RecordTooLarge`` here, in the
decide step, never in a transaction, where it would end the term. Dead letters
keep the original record; one too large even for the dead-letter topic keeps
the start of the value and says so. Every record is signed here with the key of
the role that writes its topic (schemas/signing.py): the one produce point of the
leader, so nothing it sends goes out unsigned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from schemas import events as ev
from schemas.catalog import Catalog, TopicSpec, snapshot_key
from schemas.codec import Codec, Headers
from schemas.signing import KeyRing

#: Bytes a record batch of one record adds around key, value and headers, with margin.
RECORD_OVERHEAD: Final = 1_024


class RecordTooLarge(Exception):
    """A record would exceed its topic's maximum: the decision that made it is refused."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int | None
    key: bytes
    value: bytes
    headers: Headers
    event: ev.Event

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


class Outbox:
    def __init__(self, catalog: Catalog, codec: Codec, keys: KeyRing) -> None:
        self.catalog = catalog
        self.codec = codec
        self.keys = keys
        #: The producer's max_request_size: the largest record any topic takes.
        self.max_request_size = max(t.max_message_bytes for t in catalog.topics) + RECORD_OVERHEAD

    def _record(
        self, spec: TopicSpec, event: ev.Event, key: bytes, partition: int | None,
        extra_headers: Headers | None = None,
    ) -> Record:  # fmt: skip
        value, headers = self.codec.encode(event)
        headers.extend(extra_headers or ())
        headers = self.keys.sign(spec.role, spec.name, key, value, headers)
        record = Record(spec.name, partition, key, value, headers, event)
        limit = spec.max_message_bytes - RECORD_OVERHEAD
        if record.size > limit:
            raise RecordTooLarge(
                f"{type(event).__name__} of {record.size} bytes exceeds the {spec.role} "
                f"topic's limit of {limit} bytes"
            )
        return record

    def journal(self, event: ev.JournalEvent) -> Record:
        return self._record(self.catalog.journal, event, self.catalog.key_for(event), 0)

    def command(
        self, command: ev.WorkerCommand, tm_id: str, trace: Headers | None = None
    ) -> Record:
        """`trace`: the W3C ``traceparent`` header of the span the command continues."""
        partition = self.catalog.commands_partition(tm_id)
        return self._record(self.catalog.commands, command, tm_id.encode(), partition, trace)

    def keepalive(self, keepalive: ev.LeaderKeepalive, partition: int) -> Record:
        key = self.catalog.cluster_id.encode()
        return self._record(self.catalog.commands, keepalive, key, partition)

    def snapshot_chunk(self, chunk: ev.SnapshotChunk, rung: int | None = None) -> Record:
        """`rung`: the snapshot's ladder rung (its compaction key; see snapshots.py)."""
        key = snapshot_key(chunk.chunk_index, rung)
        return self._record(self.catalog.snapshots, chunk, key, 0)

    def dead_letter(self, dead: ev.DeadLetter) -> Record:
        """The dead letter's record; the original value is cut if it cannot fit whole."""
        extra = [
            ("source-topic", dead.source_topic.encode()),
            ("error-kind", dead.error_kind.encode()),
        ]
        try:
            return self._record(
                self.catalog.deadletter, dead, self.catalog.key_for(dead), None, extra
            )
        except RecordTooLarge as err:
            keep = self.catalog.deadletter.max_message_bytes // 2
            cut = replace(
                dead,
                original_value=(dead.original_value or b"")[:keep],
                original_key=(dead.original_key or b"")[:1024] or None,
                original_headers=(),
                reason=f"{dead.reason[:2000]} [record cut to fit: {err}]",
            )
            return self._record(
                self.catalog.deadletter, cut, self.catalog.key_for(cut), None, extra
            )
