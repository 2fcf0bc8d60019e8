"""The savepoint directory format: a savepoint restores from its path alone.

A savepoint is a directory holding one file per subtask (its task snapshot, in
the directory store's framing: magic, sha256, bytes) and ``_metadata``, JSON::

    {"format_version": 1, "job_id": "...", "checkpoint_id": 7,
     "vertices": {"<vertex_id>": <parallelism>, ...},
     "subtasks": [{"vertex_id": "...", "subtask_index": 0,
                   "file": "<vertex_id>-0.state", "size": 123, "sha256": "<hex>"}, ...]}

``write_savepoint`` builds it in a hidden sibling directory and renames it into
place, so a savepoint directory is complete or absent. ``read_savepoint``
checks everything it can without reading the states (metadata well formed,
every subtask of every vertex listed once, each file present with its size);
``Savepoint.load`` checks each state's sha256. ``export_savepoint`` writes a
savepoint from the handles of a completed checkpoint; ``import_savepoint`` copies
a savepoint's states into a store for a job restoring from it. Every failure is a
SavepointError naming the path and what is wrong. Nothing here deletes a
savepoint: checkpoint stores never touch them (docs/checkpoints.md).

Synchronous file I/O: async callers run these in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from schemas.limits import MAX_STATE_HANDLE_BYTES
from schemas.statestore import (
    FRAME_OVERHEAD,
    SAVEPOINT_METADATA,
    StateStore,
    StateStoreError,
    frame,
    fsync_dir,
    unframe,
    write_atomic,
)
from schemas.validation import (
    ID_PATTERN,
    SAVEPOINT_HANDLE_PREFIX,
    savepoint_handle,
    state_file_name,
)

SAVEPOINT_FORMAT_VERSION: Final = 1

SubtaskKey = tuple[str, int]  # (vertex_id, subtask_index)


class SavepointError(StateStoreError):
    """A savepoint is missing, unreadable or corrupt; `path` says which."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"savepoint {path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SubtaskState:
    """One subtask's state file in a savepoint."""

    vertex_id: str
    subtask_index: int
    file: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SavepointMetadata:
    """What ``_metadata`` says."""

    job_id: str
    checkpoint_id: int
    vertices: Mapping[str, int]  # vertex id -> parallelism
    subtasks: tuple[SubtaskState, ...]
    format_version: int = SAVEPOINT_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "job_id": self.job_id,
                "checkpoint_id": self.checkpoint_id,
                "vertices": dict(self.vertices),
                "subtasks": [
                    {
                        "vertex_id": s.vertex_id,
                        "subtask_index": s.subtask_index,
                        "file": s.file,
                        "size": s.size,
                        "sha256": s.sha256,
                    }
                    for s in self.subtasks
                ],
            },
            indent=1,
        )


def savepoint_dir_name(job_id: str, checkpoint_id: int) -> str:
    """A fresh directory name under a savepoint target (Flink: savepoint-<job>-<random>)."""
    return f"savepoint-{job_id}-{checkpoint_id}-{uuid.uuid4().hex[:8]}"


class _Staging:
    """A savepoint being written: states go to a hidden sibling directory of
    `target`, which is renamed to `target` once `_metadata` is in it."""

    def __init__(self, target: Path, vertices: Mapping[str, int]) -> None:
        if any(not ID_PATTERN.fullmatch(v) or p < 1 for v, p in vertices.items()):
            raise SavepointError(target, f"vertex ids must match {ID_PATTERN.pattern}, p >= 1")
        if target.exists():
            raise SavepointError(target, "already exists (a savepoint is never overwritten)")
        self.target = target
        self.vertices = dict(vertices)
        self.keys = sorted((v, i) for v, p in vertices.items() for i in range(p))
        self.path = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.written: list[SubtaskState] = []

    def check_keys(self, keys: Collection[SubtaskKey]) -> None:
        if set(keys) != set(self.keys):
            missing = sorted(set(self.keys) - set(keys))[:5]
            extra = sorted(set(keys) - set(self.keys))[:5]
            raise SavepointError(
                self.target, f"states do not match the vertices: missing {missing}, extra {extra}"
            )

    def add(self, key: SubtaskKey, data: bytes) -> None:
        name = state_file_name(*key)
        try:
            write_atomic(self.path / name, frame(data))
        except OSError as err:
            raise SavepointError(self.target, f"cannot be written: {err}") from err
        digest = hashlib.sha256(data).hexdigest()
        self.written.append(SubtaskState(key[0], key[1], name, len(data), digest))

    def commit(self, job_id: str, checkpoint_id: int) -> SavepointMetadata:
        metadata = SavepointMetadata(job_id, checkpoint_id, self.vertices, tuple(self.written))
        try:
            write_atomic(self.path / SAVEPOINT_METADATA, metadata.to_json().encode())
            self.path.rename(self.target)
            fsync_dir(self.target.parent)
        except OSError as err:
            raise SavepointError(self.target, f"cannot be written: {err}") from err
        return metadata

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_savepoint(
    directory: Path | str,
    *,
    job_id: str,
    checkpoint_id: int,
    vertices: Mapping[str, int],
    states: Mapping[SubtaskKey, bytes],
) -> SavepointMetadata:
    """Write a savepoint of `states` (one per subtask of each vertex of `vertices`,
    a vertex id mapped to its parallelism) to `directory`, which must not exist."""
    staging = _Staging(Path(directory), vertices)
    staging.check_keys(states.keys())
    try:
        for key in staging.keys:
            staging.add(key, states[key])
        return staging.commit(job_id, checkpoint_id)
    except BaseException:
        staging.abandon()
        raise


async def export_savepoint(
    store: StateStore,
    directory: Path | str,
    *,
    job_id: str,
    checkpoint_id: int,
    vertices: Mapping[str, int],
    handles: Mapping[SubtaskKey, str],
) -> SavepointMetadata:
    """Write a savepoint to `directory` from the states of a completed checkpoint
    (`handles` in `store`), one state in memory at a time. A state the store
    cannot give raises its StateStoreError and leaves no directory behind."""
    staging = _Staging(Path(directory), vertices)
    staging.check_keys(handles.keys())
    try:
        for key in staging.keys:
            data = await store.get(handles[key])
            await asyncio.to_thread(staging.add, key, data)
        return await asyncio.to_thread(staging.commit, job_id, checkpoint_id)
    except BaseException:
        await asyncio.to_thread(staging.abandon)
        raise


async def import_savepoint(
    savepoint: Savepoint, store: StateStore, job_id: str
) -> dict[SubtaskKey, str]:
    """Copy each state of `savepoint` into `store` as checkpoint 0 of `job_id`
    (checkpoint ids start at 1, so 0 never meets a real one); the handles to
    deploy the job's first tasks with. The savepoint itself is left as it is."""
    handles: dict[SubtaskKey, str] = {}
    for entry in savepoint.metadata.subtasks:
        data = await asyncio.to_thread(savepoint.load, entry.vertex_id, entry.subtask_index)
        name = f"{entry.vertex_id}-{entry.subtask_index}"
        handles[(entry.vertex_id, entry.subtask_index)] = await store.put(job_id, 0, name, data)
    return handles


@dataclass(frozen=True, slots=True)
class Savepoint:
    """A savepoint read from `path`: its metadata and its states on demand."""

    path: Path
    metadata: SavepointMetadata

    def load(self, vertex_id: str, subtask_index: int) -> bytes:
        """The state of one subtask, its size and sha256 checked."""
        entry = next(
            (
                s
                for s in self.metadata.subtasks
                if s.vertex_id == vertex_id and s.subtask_index == subtask_index
            ),
            None,
        )
        if entry is None:
            raise SavepointError(self.path, f"has no state for {vertex_id}[{subtask_index}]")
        file = self.path / entry.file
        try:
            framed = file.read_bytes()
        except OSError as err:
            raise SavepointError(self.path, f"{entry.file} cannot be read: {err}") from err
        try:
            data = unframe(framed, entry.file)
        except StateStoreError as err:
            raise SavepointError(self.path, f"corrupt: {err.reason}") from err
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise SavepointError(self.path, f"corrupt: {entry.file} differs from _metadata")
        return data


def read_savepoint(path: Path | str) -> Savepoint:
    """The savepoint at `path` (its directory or its ``_metadata`` file), checked."""
    where = Path(path)
    if where.name == SAVEPOINT_METADATA:
        where = where.parent
    if not where.exists():
        raise SavepointError(where, "does not exist")
    if not where.is_dir():
        raise SavepointError(where, "is not a directory")
    meta_file = where / SAVEPOINT_METADATA
    try:
        raw = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SavepointError(where, f"no {SAVEPOINT_METADATA} file: not a savepoint") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SavepointError(where, f"{SAVEPOINT_METADATA} cannot be read: {err}") from err
    metadata = _parse_metadata(where, raw)
    for s in metadata.subtasks:
        file = where / s.file
        try:
            size = file.stat().st_size
        except OSError as err:
            raise SavepointError(where, f"state file {s.file} missing: {err}") from err
        if size != FRAME_OVERHEAD + s.size:
            raise SavepointError(
                where, f"corrupt: {s.file} is {size} bytes, _metadata says {s.size} of state"
            )
    return Savepoint(where, metadata)


def _parse_metadata(where: Path, raw: Any) -> SavepointMetadata:
    def bad(problem: str) -> SavepointError:
        return SavepointError(where, f"{SAVEPOINT_METADATA}: {problem}")

    if not isinstance(raw, dict):
        raise bad("not a JSON object")
    version = raw.get("format_version")
    if version != SAVEPOINT_FORMAT_VERSION:
        raise bad(
            f"format_version {version!r} is not {SAVEPOINT_FORMAT_VERSION}, "
            "the one this build reads"
        )
    job_id, checkpoint_id = raw.get("job_id"), raw.get("checkpoint_id")
    vertices, subtasks = raw.get("vertices"), raw.get("subtasks")
    if not isinstance(job_id, str) or not isinstance(checkpoint_id, int):
        raise bad("job_id (string) and checkpoint_id (integer) are required")
    if not isinstance(vertices, dict) or not all(
        isinstance(v, str) and ID_PATTERN.fullmatch(v) and isinstance(p, int) and p >= 1
        for v, p in vertices.items()
    ):
        raise bad("vertices must map vertex ids to parallelism >= 1")
    if not isinstance(subtasks, list):
        raise bad("subtasks must be a list")
    entries = []
    for item in subtasks:
        try:
            entry = SubtaskState(
                str(item["vertex_id"]),
                int(item["subtask_index"]),
                str(item["file"]),
                int(item["size"]),
                str(item["sha256"]),
            )
        except (TypeError, KeyError, ValueError) as err:
            raise bad(f"subtask entry {str(item)[:80]} is malformed ({err!r})") from err
        want = state_file_name(entry.vertex_id, entry.subtask_index)
        if entry.file != want:
            raise bad(f"subtask entry names file {entry.file[:80]!r}, expected {want!r}")
        entries.append(entry)
    listed = [(s.vertex_id, s.subtask_index) for s in entries]
    expected = {(v, i) for v, p in vertices.items() for i in range(p)}
    if len(set(listed)) != len(listed) or set(listed) != expected:
        raise bad("subtasks do not list each subtask of each vertex exactly once")
    return SavepointMetadata(job_id, checkpoint_id, dict(vertices), tuple(entries))


def check_restorable(path: str, vertices: Mapping[str, int]) -> Savepoint:
    """The savepoint at `path`, checked for a job of `vertices` (id -> parallelism):
    an absolute path, readable, the same vertices with the same parallelism, and
    handles that fit the journal. A SavepointError says what does not hold."""
    if not path.startswith("/"):
        raise SavepointError(path, "must be an absolute path (the leader and workers read it)")
    savepoint = read_savepoint(path)
    if str(savepoint.path) != path.rstrip("/"):
        raise SavepointError(path, "must name the savepoint directory itself")
    found = dict(savepoint.metadata.vertices)
    if set(found) != set(vertices):
        raise SavepointError(
            path,
            f"holds vertices {sorted(found)}, the job has {sorted(vertices)}: "
            "a savepoint restores into a job with the same vertex ids",
        )
    for vertex_id, parallelism in sorted(vertices.items()):
        if found[vertex_id] != parallelism:
            raise SavepointError(
                path,
                f"vertex {vertex_id} has parallelism {found[vertex_id]} in the savepoint "
                f"and {parallelism} in the job: parallelism must match",
            )
    longest = max((savepoint_handle(path, v, p - 1) for v, p in vertices.items()), key=len)
    if len(longest.encode()) > MAX_STATE_HANDLE_BYTES:
        raise SavepointError(path, f"path too long: handles are at most {MAX_STATE_HANDLE_BYTES}")
    return savepoint


async def read_state(store: StateStore | None, handle: str) -> bytes:
    """The state a restore handle names: in a savepoint directory (SAVEPOINT_HANDLE_PREFIX)
    or in `store`. A StateStoreError (a SavepointError for savepoints) if it cannot."""
    if not handle.startswith(SAVEPOINT_HANDLE_PREFIX):
        if store is None:
            raise StateStoreError(f"cannot read {handle[:64]}: no state store configured")
        return await store.get(handle)
    directory, _, file = handle[len(SAVEPOINT_HANDLE_PREFIX) :].rpartition("/")
    vertex_id, _, index = file.removesuffix(".state").rpartition("-")
    if not directory or not vertex_id or not index.isdigit():
        raise StateStoreError(f"malformed savepoint handle {handle[:64]!r}")

    def load() -> bytes:
        return read_savepoint(directory).load(vertex_id, int(index))

    return await asyncio.to_thread(load)
