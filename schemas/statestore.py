"""Checkpoint state storage: where the bytes of a task's snapshot live.

The journal never carries state: a task writes its snapshot with ``put`` and
acknowledges the checkpoint with the returned *handle*, a short string
(at most ``MAX_STATE_HANDLE_BYTES``) that ``get`` turns back into the bytes.
The coordinator ``discard``\\ s the handles of subsumed and aborted
checkpoints. Two stores, chosen by the cluster setting ``state.checkpoints.dir``
through ``open_store``:

- ``DirectoryStore`` (``file:///abs/dir`` or ``/abs/dir``): one file per state
  at ``<root>/<cluster_id>/<job_id>/chk-<checkpoint_id>/<name>``, written to a
  temporary file, fsynced and renamed into place; the file starts with a magic
  and the sha256 of the state, checked on every read. Handle:
  ``dir:<job_id>/chk-<checkpoint_id>/<name>``, relative to the store's root, so a
  shared filesystem may be mounted at different paths on different hosts.
- ``KafkaStore`` (``kafka://``): chunks of at most ``STATE_CHUNK_BYTES`` in the
  cluster's compacted ``<prefix>.state`` topic, keyed ``<uid>/<index>`` (a fresh
  uid per state), all on one partition. Handle:
  ``kafka:<partition>/<first_offset>/<last_offset>/<chunks>/<size>/<sha256>/<uid>``;
  ``get`` assigns that partition (no consumer group), seeks to the first offset
  and takes the chunks of that uid up to the last offset, then reads on to the
  partition's end for tombstones, so a discarded state is never returned.
  ``discard`` writes a tombstone per chunk key; compaction removes both later.

docs/checkpoints.md ("State storage") describes both for operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from schemas import kafkaio
from schemas.catalog import STATE_CHUNK_BYTES, Catalog, murmur2
from schemas.errors import SchemaError
from schemas.limits import FINISHED_TASK_HANDLE, MAX_STATE_HANDLE_BYTES, MAX_TASK_STATE_BYTES
from schemas.validation import ID_PATTERN

#: A state's name within its checkpoint (the worker uses "<vertex_id>-<subtask>"):
#: a safe file name, never "." or "..".
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
DIR_PREFIX: Final = "dir:"
KAFKA_PREFIX: Final = "kafka:"
#: A directory-store file: this magic, the sha256 of the state, the state.
FILE_MAGIC: Final = b"JMSTATE1"
#: Bytes a file holds besides the state: the magic and the sha256.
FRAME_OVERHEAD: Final = len(FILE_MAGIC) + 32
#: A Kafka get gives up after this long without reaching the partition's end.
KAFKA_READ_TIMEOUT_S: Final = 60.0
SAVEPOINT_METADATA: Final = "_metadata"


class StateStoreError(SchemaError):
    """State could not be stored, found or read; `reason` says why.

    `retriable` is True when trying again may succeed (the broker or the
    filesystem was unavailable), False when it cannot (bad input, lost state).
    """

    def __init__(self, reason: str, *, retriable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


class StateNotFound(StateStoreError):
    """No state behind a handle: never written, discarded, or compacted away."""


class StateCorrupt(StateStoreError):
    """State behind a handle exists but is not what was written (checksum, size,
    missing chunks, unreadable format)."""


class StateStore(Protocol):
    """Where checkpoint state lives (the seam between workers and the coordinator)."""

    async def put(self, job_id: str, checkpoint_id: int, name: str, data: bytes) -> str:
        """Store `data` durably; return its handle (at most MAX_STATE_HANDLE_BYTES)."""
        ...

    async def get(self, handle: str) -> bytes:
        """The bytes behind `handle`; StateNotFound / StateCorrupt with a reason."""
        ...

    async def discard(self, handles: Sequence[str]) -> None:
        """Delete the states of `handles`; idempotent, missing ones are fine."""
        ...

    async def close(self) -> None: ...


def check_put(job_id: str, checkpoint_id: int, name: str, data: bytes) -> None:
    """Refuse what no store accepts: bad ids or names, negative ids, too much state."""
    if not ID_PATTERN.fullmatch(job_id):
        raise StateStoreError(f"job id {job_id[:100]!r} must match {ID_PATTERN.pattern}")
    if checkpoint_id < 0:
        raise StateStoreError(f"checkpoint id must be >= 0, got {checkpoint_id}")
    if not NAME_PATTERN.fullmatch(name):
        raise StateStoreError(f"state name {name[:128]!r} must match {NAME_PATTERN.pattern}")
    if len(data) > MAX_TASK_STATE_BYTES:
        raise StateStoreError(
            f"state {job_id}/chk-{checkpoint_id}/{name} is {len(data)} bytes, "
            f"at most {MAX_TASK_STATE_BYTES} (MAX_TASK_STATE_BYTES) allowed"
        )


def _checked_handle(handle: str) -> str:
    if len(handle.encode()) > MAX_STATE_HANDLE_BYTES:
        raise StateStoreError(
            f"handle {handle[:64]!r}... is {len(handle.encode())} bytes, "
            f"at most {MAX_STATE_HANDLE_BYTES} fit the journal"
        )
    return handle


def _foreign(store: str, handle: str) -> StateStoreError:
    return StateStoreError(f"{handle[:64]!r} is not a handle of the {store} store")


# ---------------------------------------------------------------------------
# Directory store
# ---------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: temp file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryStore:
    """State as files under `root` (a local or shared path); see the module docstring."""

    def __init__(self, root: Path, cluster_id: str) -> None:
        if not root.is_absolute():
            raise StateStoreError(f"state directory {str(root)!r} must be an absolute path")
        self.root = root
        self.base = root / cluster_id

    def _path(self, handle: str) -> Path:
        if not handle.startswith(DIR_PREFIX):
            raise _foreign("directory", handle)
        parts = handle[len(DIR_PREFIX) :].split("/")
        if (
            len(parts) != 3
            or not ID_PATTERN.fullmatch(parts[0])
            or not re.fullmatch(r"chk-[0-9]{1,19}", parts[1])
            or not NAME_PATTERN.fullmatch(parts[2])
        ):
            raise StateStoreError(f"malformed directory-store handle {handle[:64]!r}")
        return self.base.joinpath(*parts)

    async def put(self, job_id: str, checkpoint_id: int, name: str, data: bytes) -> str:
        check_put(job_id, checkpoint_id, name, data)
        handle = _checked_handle(f"{DIR_PREFIX}{job_id}/chk-{checkpoint_id}/{name}")
        try:
            await asyncio.to_thread(write_atomic, self._path(handle), frame(data))
        except OSError as err:
            raise StateStoreError(f"writing {self._path(handle)}: {err}", retriable=True) from err
        return handle

    async def get(self, handle: str) -> bytes:
        path = self._path(handle)
        try:
            framed = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as err:
            raise StateNotFound(f"state {handle} not found: no file {path}") from err
        except OSError as err:
            raise StateStoreError(f"reading {path}: {err}", retriable=True) from err
        return unframe(framed, str(path))

    async def discard(self, handles: Sequence[str]) -> None:
        paths = [self._path(h) for h in handles if h != FINISHED_TASK_HANDLE]
        await asyncio.to_thread(self._remove, paths)

    def _remove(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            # chk-<id>, then the job's directory, once empty; never a savepoint's.
            for directory in (path.parent, path.parent.parent):
                if (directory / SAVEPOINT_METADATA).exists():
                    break
                with contextlib.suppress(OSError):  # not empty, or already gone
                    directory.rmdir()

    async def close(self) -> None:
        return None


def frame(data: bytes) -> bytes:
    """A state as a file holds it: FILE_MAGIC, its sha256, the bytes."""
    return FILE_MAGIC + hashlib.sha256(data).digest() + data


def unframe(framed: bytes, where: str) -> bytes:
    """The state of a directory-store file, its checksum verified."""
    head = FRAME_OVERHEAD
    if len(framed) < head or not framed.startswith(FILE_MAGIC):
        raise StateCorrupt(f"{where}: not a state file (no {FILE_MAGIC.decode()} header)")
    data = framed[head:]
    if hashlib.sha256(data).digest() != framed[len(FILE_MAGIC) : head]:
        raise StateCorrupt(f"{where}: sha256 of the {len(data)} bytes does not match")
    return data


# ---------------------------------------------------------------------------
# Kafka store
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaHandle:
    """Where one state is in the state topic, and what it must hash to."""

    partition: int
    first_offset: int
    last_offset: int
    chunks: int
    size: int
    sha256: str
    uid: str

    def __str__(self) -> str:
        return (
            f"{KAFKA_PREFIX}{self.partition}/{self.first_offset}/{self.last_offset}/"
            f"{self.chunks}/{self.size}/{self.sha256}/{self.uid}"
        )

    @classmethod
    def parse(cls, handle: str) -> KafkaHandle:
        if not handle.startswith(KAFKA_PREFIX):
            raise _foreign("Kafka", handle)
        m = re.fullmatch(
            r"([0-9]{1,6})/([0-9]{1,19})/([0-9]{1,19})/([0-9]{1,6})/([0-9]{1,12})"
            r"/([0-9a-f]{64})/([0-9a-f]{32})",
            handle[len(KAFKA_PREFIX) :],
        )
        if m is None:
            raise StateStoreError(f"malformed Kafka-store handle {handle[:64]!r}")
        p, first, last, chunks, size = (int(g) for g in m.groups()[:5])
        return cls(p, first, last, chunks, size, m.group(6), m.group(7))

    def key(self, index: int) -> bytes:
        return f"{self.uid}/{index}".encode()


class KafkaStore:
    """State as chunks in the cluster's state topic; see the module docstring.

    One idempotent producer per store (started on first use, after checking the
    topic against the catalog); each get uses its own assigned consumer.
    """

    def __init__(
        self, bootstrap: str, catalog: Catalog, *, chunk_bytes: int = STATE_CHUNK_BYTES
    ) -> None:
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.spec = catalog.state
        self.chunk_bytes = chunk_bytes
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                try:
                    await kafkaio.check_topics(self.bootstrap, self.catalog, [self.spec.role])
                except kafkaio.TopicError as err:
                    raise StateStoreError(str(err)) from err
                producer = kafkaio.producer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    max_request_size=self.spec.max_message_bytes,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def put(self, job_id: str, checkpoint_id: int, name: str, data: bytes) -> str:
        check_put(job_id, checkpoint_id, name, data)
        producer = await self._started()
        uid = uuid.uuid4().hex
        partition = (murmur2(uid.encode()) & 0x7FFFFFFF) % self.spec.partitions
        pieces = [data[i : i + self.chunk_bytes] for i in range(0, len(data), self.chunk_bytes)]
        headers = [("jm-state", f"{job_id}/chk-{checkpoint_id}/{name}".encode())]
        try:
            futures = [
                await producer.send(
                    self.spec.name,
                    piece,
                    key=f"{uid}/{i}".encode(),
                    partition=partition,
                    headers=headers,
                )
                for i, piece in enumerate(pieces or [b""])  # an empty state is one empty chunk
            ]
            offsets = [(await f).offset for f in futures]
        except KafkaError as err:
            raise StateStoreError(
                f"writing state to {self.spec.name}: {err!r}", retriable=err.retriable
            ) from err
        digest = hashlib.sha256(data).hexdigest()
        handle = KafkaHandle(
            partition, offsets[0], offsets[-1], len(offsets), len(data), digest, uid
        )
        return _checked_handle(str(handle))

    async def get(self, handle: str) -> bytes:
        h = KafkaHandle.parse(handle)
        try:
            chunks, discarded = await self._read(h)
        except KafkaError as err:
            raise StateStoreError(
                f"reading state {handle} from {self.spec.name}: {err!r}", retriable=err.retriable
            ) from err
        where = f"state {handle} in {self.spec.name}[{h.partition}]"
        if discarded:
            raise StateNotFound(f"{where} was discarded")
        if not chunks:
            raise StateNotFound(
                f"{where}: no chunk left (discarded and compacted, or never written)"
            )
        missing = [i for i in range(h.chunks) if i not in chunks]
        if missing:
            raise StateCorrupt(f"{where}: chunks {missing[:10]} of {h.chunks} missing")
        data = b"".join(chunks[i] for i in range(h.chunks))
        if len(data) != h.size:
            raise StateCorrupt(f"{where}: {len(data)} bytes, the handle says {h.size}")
        if hashlib.sha256(data).hexdigest() != h.sha256:
            raise StateCorrupt(f"{where}: sha256 of the {len(data)} bytes does not match")
        return data

    async def _read(self, h: KafkaHandle) -> tuple[dict[int, bytes], bool]:
        """The chunks of `h` between its offsets, and whether a tombstone for any of
        its keys follows anywhere up to the partition's end."""
        tp = TopicPartition(self.spec.name, h.partition)
        prefix = f"{h.uid}/".encode()
        reader = kafkaio.consumer(
            self.bootstrap, max_partition_fetch_bytes=self.spec.max_message_bytes
        )
        await reader.start()
        chunks: dict[int, bytes] = {}
        discarded = False
        try:
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            reader.seek(tp, h.first_offset)
            deadline = time.monotonic() + KAFKA_READ_TIMEOUT_S
            while await reader.position(tp) < end:
                if time.monotonic() > deadline:
                    raise StateStoreError(
                        f"reading {tp.topic}[{tp.partition}] did not reach offset {end} "
                        f"in {KAFKA_READ_TIMEOUT_S:.0f} s",
                        retriable=True,
                    )
                for record in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                    key = record.key or b""
                    if not key.startswith(prefix) or not key[len(prefix) :].isdigit():
                        continue
                    if record.value is None:
                        discarded = True
                    elif record.offset <= h.last_offset:
                        chunks.setdefault(int(key[len(prefix) :]), record.value)
        finally:
            await reader.stop()
        return chunks, discarded

    async def discard(self, handles: Sequence[str]) -> None:
        parsed = [KafkaHandle.parse(h) for h in handles if h != FINISHED_TASK_HANDLE]
        if not parsed:
            return
        producer = await self._started()
        try:
            futures = [
                await producer.send(self.spec.name, None, key=h.key(i), partition=h.partition)
                for h in parsed
                for i in range(h.chunks)
            ]
            for f in futures:
                await f
        except KafkaError as err:
            raise StateStoreError(
                f"writing tombstones to {self.spec.name}: {err!r}", retriable=err.retriable
            ) from err

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


# ---------------------------------------------------------------------------
# Choosing a store
# ---------------------------------------------------------------------------


def open_store(url: str, *, catalog: Catalog, bootstrap: str | None = None) -> StateStore:
    """The store `url` names (the ``state.checkpoints.dir`` setting):

    - ``kafka``, ``kafka:`` or ``kafka://``: the cluster's state topic (needs `bootstrap`);
    - ``file:///abs/dir`` (``file://localhost/abs/dir``) or ``/abs/dir``: a directory.

    Anything else is a StateStoreError naming the accepted forms.
    """
    text = url.strip()
    if text in ("kafka", "kafka:", "kafka://"):
        if not bootstrap:
            raise StateStoreError("the Kafka state store needs the cluster's bootstrap servers")
        return KafkaStore(bootstrap, catalog)
    if text.startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StateStoreError(
                f"state storage URL {url!r}: a file URL must be file:///absolute/path"
            )
        return DirectoryStore(Path(parts.path), catalog.cluster_id)
    if text.startswith("/"):
        return DirectoryStore(Path(text), catalog.cluster_id)
    raise StateStoreError(
        f"state storage URL {url!r} is not kafka://, file:///absolute/path or /absolute/path"
    )
