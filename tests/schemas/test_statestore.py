"""Checkpoint state storage (schemas.statestore), the savepoint format
(schemas.savepoint) and the task snapshot envelope (schemas.snapshot).

One contract, run against both stores: the directory store in a tmp_path and
the Kafka store against the real broker (a state topic of its own per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import given
from hypothesis import strategies as st

from schemas import kafkaio
from schemas.catalog import STATE_CHUNK_BYTES, Catalog
from schemas.limits import MAX_STATE_HANDLE_BYTES, MAX_TASK_STATE_BYTES
from schemas.savepoint import (
    SavepointError,
    export_savepoint,
    import_savepoint,
    read_savepoint,
    savepoint_dir_name,
    write_savepoint,
)
from schemas.snapshot import (
    ENVELOPE_VERSION,
    Positions,
    SnapshotFormatError,
    TaskSnapshot,
    decode_snapshot,
    encode_snapshot,
)
from schemas.statestore import (
    DirectoryStore,
    KafkaHandle,
    KafkaStore,
    StateCorrupt,
    StateNotFound,
    StateStore,
    StateStoreError,
    open_store,
)
from tests.conftest import Stack

MULTI_CHUNK = 3 * STATE_CHUNK_BYTES + 12_345  # four chunks in the Kafka store
LONGEST_JOB = "j" * 100
LONGEST_NAME = "v" * 100 + "-32767"


def payload(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every position (a misplaced chunk would show)."""
    block = bytes((seed + i * 7) % 251 for i in range(251))
    return (block * (size // 251 + 1))[:size]


@pytest.fixture
async def kafka_store(stack: Stack, unique: Callable[[str], str]) -> AsyncIterator[KafkaStore]:
    """A Kafka store over a state topic of its own (only that topic is created)."""
    catalog = Catalog(unique("c"), state_partitions=2)
    spec = catalog.state
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.config())]
        )
        assert [code for _, code, _ in response.topic_errors] == [0]
        store = KafkaStore(stack.bootstrap, catalog)
        try:
            yield store
        finally:
            await store.close()
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([spec.name])
        await admin.close()


@pytest.fixture
async def dir_store(tmp_path: Path) -> AsyncIterator[DirectoryStore]:
    store = DirectoryStore(tmp_path / "ckpt", "c1")
    yield store
    await store.close()


@pytest.fixture(params=["directory", pytest.param("kafka", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> StateStore:
    fixture = "dir_store" if request.param == "directory" else "kafka_store"
    result: StateStore = request.getfixturevalue(fixture)
    return result


# --- the contract, both stores ------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, MULTI_CHUNK], ids=["empty", "1B", "1KB", "multi"])
async def test_put_get_round_trip(store: StateStore, size: int) -> None:
    data = payload(size, seed=size % 13)
    handle = await store.put("job-1", 3, "count-0", data)
    assert len(handle.encode()) <= MAX_STATE_HANDLE_BYTES
    assert await store.get(handle) == data


async def test_discard_then_get_is_not_found_and_discard_is_idempotent(store: StateStore) -> None:
    kept = await store.put("job-1", 1, "a-0", b"kept")
    gone = [await store.put("job-1", 2, f"a-{i}", payload(2000, i)) for i in range(2)]
    await store.discard(gone)
    for handle in gone:
        with pytest.raises(StateNotFound):
            await store.get(handle)
    await store.discard(gone)  # again: nothing to do, no error
    await store.discard([])
    assert await store.get(kept) == b"kept"


async def test_concurrent_puts_each_get_their_own_state(store: StateStore) -> None:
    states = {f"v-{i}": payload(50_000 + i * 10_000, seed=i) for i in range(8)}
    handles = await asyncio.gather(*(store.put("job-c", 5, n, d) for n, d in states.items()))
    assert len(set(handles)) == len(states)
    got = await asyncio.gather(*(store.get(h) for h in handles))
    assert dict(zip(states, got, strict=True)) == states


async def test_longest_ids_give_a_handle_that_fits_the_journal(store: StateStore) -> None:
    handle = await store.put(LONGEST_JOB, 2**62, LONGEST_NAME, b"x")
    assert len(handle.encode()) <= MAX_STATE_HANDLE_BYTES
    assert await store.get(handle) == b"x"


@pytest.mark.parametrize(
    ("job", "checkpoint", "name", "problem"),
    [
        ("bad/job", 1, "n", "job id"),
        ("job", -1, "n", "checkpoint id"),
        ("job", 1, "../escape", "state name"),
        ("job", 1, "", "state name"),
    ],
)
async def test_bad_ids_and_names_are_refused(
    dir_store: DirectoryStore, job: str, checkpoint: int, name: str, problem: str
) -> None:
    with pytest.raises(StateStoreError, match=problem):
        await dir_store.put(job, checkpoint, name, b"")


async def test_state_over_the_task_limit_is_refused(dir_store: DirectoryStore) -> None:
    with pytest.raises(StateStoreError, match="MAX_TASK_STATE_BYTES"):
        await dir_store.put("job", 1, "big", bytes(MAX_TASK_STATE_BYTES + 1))


# --- directory store ------------------------------------------------------------


async def test_directory_layout_and_cleanup(dir_store: DirectoryStore) -> None:
    handle = await dir_store.put("job-1", 7, "src-0", b"state")
    assert handle == "dir:job-1/chk-7/src-0"
    path = dir_store.root / "c1" / "job-1" / "chk-7" / "src-0"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["src-0"]  # no temp file left
    await dir_store.discard([handle])
    assert not (dir_store.root / "c1" / "job-1").exists()


async def test_directory_store_detects_corruption(dir_store: DirectoryStore) -> None:
    handle = await dir_store.put("job-1", 1, "op-0", payload(5000))
    path = dir_store.root / "c1" / "job-1" / "chk-1" / "op-0"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StateCorrupt, match="sha256"):
        await dir_store.get(handle)
    path.write_bytes(b"not a state")
    with pytest.raises(StateCorrupt, match="not a state file"):
        await dir_store.get(handle)


async def test_directory_store_refuses_foreign_and_malformed_handles(
    dir_store: DirectoryStore,
) -> None:
    for handle in ("kafka:0/1/1/1/1/" + "0" * 64 + "/" + "0" * 32, "dir:../../etc/passwd"):
        with pytest.raises(StateStoreError):
            await dir_store.get(handle)


async def test_discard_never_removes_a_savepoint_directory(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path, "c1")
    handle = await store.put("job-1", 4, "op-0", b"s")
    chk = tmp_path / "c1" / "job-1" / "chk-4"
    (chk / "_metadata").write_text("{}")
    await store.discard([handle])
    assert (chk / "_metadata").exists()


def test_open_store_selects_by_url(tmp_path: Path) -> None:
    catalog = Catalog("c9")
    for url in (f"file://{tmp_path}", f"file://localhost{tmp_path}", str(tmp_path)):
        chosen = open_store(url, catalog=catalog)
        assert isinstance(chosen, DirectoryStore) and chosen.base == tmp_path / "c9"
    for url in ("kafka", "kafka:", "kafka://"):
        kafka = open_store(url, catalog=catalog, bootstrap="127.0.0.1:9092")
        assert isinstance(kafka, KafkaStore) and kafka.spec.name == "c9.state"
    with pytest.raises(StateStoreError, match="bootstrap"):
        open_store("kafka://", catalog=catalog)
    for bad in ("relative/dir", "file://otherhost/x", "s3://bucket/x"):
        with pytest.raises(StateStoreError, match="state storage URL"):
            open_store(bad, catalog=catalog)


# --- Kafka store ----------------------------------------------------------------


@pytest.mark.integration
async def test_kafka_store_chunks_and_seeks_by_handle(kafka_store: KafkaStore) -> None:
    data = payload(MULTI_CHUNK, seed=3)
    handle = KafkaHandle.parse(await kafka_store.put("job-k", 9, "keyed-1", data))
    assert handle.chunks == 4 and handle.size == len(data)
    assert handle.last_offset >= handle.first_offset + 3
    records = await kafkaio.read_partition(
        kafka_store.bootstrap, kafka_store.spec.name, handle.partition
    )
    ours = [r for r in records if r.key and r.key.startswith(handle.uid.encode())]
    assert [r.key for r in ours] == [handle.key(i) for i in range(4)]
    assert all(len(r.value or b"") <= STATE_CHUNK_BYTES for r in ours)
    assert dict(ours[0].headers)["jm-state"] == b"job-k/chk-9/keyed-1"


@pytest.mark.integration
async def test_kafka_store_detects_corruption_and_missing_chunks(kafka_store: KafkaStore) -> None:
    data = payload(2 * STATE_CHUNK_BYTES + 10, seed=5)
    good = KafkaHandle.parse(await kafka_store.put("job-k", 1, "op-0", data))
    wrong_sha = str(dataclasses.replace(good, sha256="0" * 64))
    with pytest.raises(StateCorrupt, match="sha256"):
        await kafka_store.get(wrong_sha)
    one_more = str(dataclasses.replace(good, chunks=good.chunks + 1))
    with pytest.raises(StateCorrupt, match=r"chunks \[3\] of 4 missing"):
        await kafka_store.get(one_more)
    short_range = str(dataclasses.replace(good, last_offset=good.first_offset))
    with pytest.raises(StateCorrupt, match="missing"):
        await kafka_store.get(short_range)
    never = str(dataclasses.replace(good, uid="f" * 32))
    with pytest.raises(StateNotFound, match="no chunk"):
        await kafka_store.get(never)
    with pytest.raises(StateStoreError, match="malformed"):
        await kafka_store.get("kafka:nonsense")
    assert await kafka_store.get(str(good)) == data


@pytest.mark.integration
async def test_a_discard_is_seen_by_another_store_instance(
    kafka_store: KafkaStore, stack: Stack
) -> None:
    handle = await kafka_store.put("job-k", 2, "op-0", payload(10_000))
    other = KafkaStore(stack.bootstrap, kafka_store.catalog)
    try:
        assert await other.get(handle) == payload(10_000)
        await other.discard([handle])
    finally:
        await other.close()
    with pytest.raises(StateNotFound, match="discarded"):
        await kafka_store.get(handle)


@pytest.mark.integration
async def test_kafka_store_without_its_topic_says_so(
    stack: Stack, unique: Callable[[str], str]
) -> None:
    store = KafkaStore(stack.bootstrap, Catalog(unique("none")))
    try:
        with pytest.raises(StateStoreError, match=r"\.state: missing"):
            await store.put("job", 1, "op-0", b"x")
    finally:
        await store.close()


# --- savepoints -----------------------------------------------------------------

VERTICES = {"src": 2, "count": 3}


def _states() -> dict[tuple[str, int], bytes]:
    return {(v, i): payload(100 * (i + 1), seed=i) for v, p in VERTICES.items() for i in range(p)}


def test_savepoint_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "savepoints" / savepoint_dir_name("job-s", 12)
    written = write_savepoint(
        target, job_id="job-s", checkpoint_id=12, vertices=VERTICES, states=_states()
    )
    savepoint = read_savepoint(target)
    assert savepoint.metadata == written
    assert read_savepoint(target / "_metadata").metadata == written  # the file works too
    meta = json.loads((target / "_metadata").read_text())
    assert meta["format_version"] == 1 and meta["job_id"] == "job-s"
    assert meta["checkpoint_id"] == 12 and meta["vertices"] == VERTICES
    assert {(s["vertex_id"], s["subtask_index"]) for s in meta["subtasks"]} == set(_states())
    for (vertex, index), data in _states().items():
        assert savepoint.load(vertex, index) == data
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging left


async def test_savepoint_from_a_checkpoint_restores_into_a_new_job(
    store: StateStore, tmp_path: Path
) -> None:
    handles = {k: await store.put("job-old", 4, f"{k[0]}-{k[1]}", d) for k, d in _states().items()}
    target = tmp_path / "sp"
    await export_savepoint(
        store, target, job_id="job-old", checkpoint_id=4, vertices=VERTICES, handles=handles
    )
    await store.discard(list(handles.values()))  # the checkpoint goes; the savepoint stays
    restored = await import_savepoint(read_savepoint(target), store, "job-new")
    assert set(restored) == set(_states())
    assert {k: await store.get(h) for k, h in restored.items()} == _states()
    # A state the store no longer has: an error, and no half-written savepoint.
    with pytest.raises(StateNotFound):
        await export_savepoint(
            store,
            tmp_path / "sp2",
            job_id="job-old",
            checkpoint_id=4,
            vertices=VERTICES,
            handles=handles,
        )
    assert sorted(n for n in os.listdir(tmp_path) if "sp" in n) == ["sp"]


def test_savepoint_is_never_overwritten_and_must_be_complete(tmp_path: Path) -> None:
    target = tmp_path / "sp"
    write_savepoint(target, job_id="j", checkpoint_id=1, vertices=VERTICES, states=_states())
    with pytest.raises(SavepointError, match="already exists"):
        write_savepoint(target, job_id="j", checkpoint_id=2, vertices=VERTICES, states=_states())
    partial = dict(_states())
    del partial[("count", 2)]
    with pytest.raises(SavepointError, match=r"missing \[\('count', 2\)\]"):
        write_savepoint(
            tmp_path / "sp2", job_id="j", checkpoint_id=1, vertices=VERTICES, states=partial
        )
    assert not (tmp_path / "sp2").exists()


def _corrupt_metadata(target: Path, change: Callable[[dict[str, object]], None]) -> None:
    meta = json.loads((target / "_metadata").read_text())
    change(meta)
    (target / "_metadata").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda t: None, None),
        (lambda t: (t / "_metadata").unlink(), "no _metadata file"),
        (lambda t: (t / "_metadata").write_text("{not json"), "_metadata cannot be read"),
        (lambda t: (t / "count-1.state").unlink(), "state file count-1.state missing"),
        (lambda t: (t / "src-0.state").write_bytes(b"short"), "corrupt: src-0.state is 5 bytes"),
        (
            lambda t: _corrupt_metadata(t, lambda m: m.update(format_version=99)),
            "format_version 99 is not 1",
        ),
        (
            lambda t: _corrupt_metadata(t, lambda m: m.update(vertices={"src": 3, "count": 3})),
            "each subtask of each vertex exactly once",
        ),
        (
            lambda t: _corrupt_metadata(t, lambda m: m.update(job_id=None)),
            "job_id",
        ),
    ],
    ids=["intact", "no-meta", "bad-json", "gone", "truncated", "version", "vertices", "job"],
)
def test_a_damaged_savepoint_is_refused_naming_path_and_problem(
    tmp_path: Path, damage: Callable[[Path], None], problem: str | None
) -> None:
    target = tmp_path / "sp"
    write_savepoint(target, job_id="j", checkpoint_id=1, vertices=VERTICES, states=_states())
    damage(target)
    if problem is None:
        assert read_savepoint(target).load("src", 1) == _states()[("src", 1)]
        return
    with pytest.raises(SavepointError, match=problem) as err:
        read_savepoint(target)
    assert str(target) in str(err.value)


def test_savepoint_load_checks_each_state(tmp_path: Path) -> None:
    target = tmp_path / "sp"
    write_savepoint(target, job_id="j", checkpoint_id=1, vertices=VERTICES, states=_states())
    savepoint = read_savepoint(target)
    file = target / "count-2.state"
    raw = bytearray(file.read_bytes())
    raw[-1] ^= 1
    file.write_bytes(bytes(raw))
    with pytest.raises(SavepointError, match=r"corrupt: .*sha256"):
        savepoint.load("count", 2)
    with pytest.raises(SavepointError, match="no state for other"):
        savepoint.load("other", 0)


def test_missing_savepoint_paths(tmp_path: Path) -> None:
    with pytest.raises(SavepointError, match="does not exist") as err:
        read_savepoint(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SavepointError, match="is not a directory"):
        read_savepoint(tmp_path / "file")


# --- the task snapshot envelope ---------------------------------------------------


@pytest.mark.parametrize(
    "snapshot",
    [
        TaskSnapshot(),
        TaskSnapshot(operator_state=b"\x00\xffraw", input_positions={"e.1": {0: 5, 3: 0}}),
        TaskSnapshot(
            operator_state={"counts": {"a": 3, "b": 4}, "next": 17},
            input_positions={"jm.edge.j.x": {1: 10}},
            source_positions={"orders": {0: 100, 1: 250}},
        ),
    ],
    ids=["empty", "bytes", "json"],
)
def test_snapshot_envelope_round_trip(snapshot: TaskSnapshot) -> None:
    data = encode_snapshot(snapshot)
    assert data[0] == ENVELOPE_VERSION
    assert decode_snapshot(data) == snapshot


_positions = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.integers(0, 1000), st.integers(0, 2**62), max_size=4),
    max_size=3,
)
_json_state = st.dictionaries(
    st.text(max_size=10), st.integers(-(2**53), 2**53) | st.text(max_size=10), max_size=5
)


@given(st.binary(max_size=200) | _json_state, _positions, _positions)
def test_snapshot_envelope_round_trips_any_snapshot(
    state: bytes | dict[str, object], inputs: Positions, sources: Positions
) -> None:
    snapshot = TaskSnapshot(operator_state=state, input_positions=inputs, source_positions=sources)
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "no bytes"),
        (bytes([2]) + b"\x00\x00\x00\x02{}", "envelope version 2 is unknown"),
        (bytes([0]), "envelope version 0 is unknown"),
        (bytes([1, 0, 0]), "truncated"),
        (bytes([1, 0, 0, 0, 9]) + b"{}", "header of 9 bytes"),
        (bytes([1, 0, 0, 0, 2]) + b"[]", '"state"'),
        (bytes([1, 0, 0, 0, 3]) + b"{x}", "not JSON"),
    ],
)
def test_snapshot_envelope_refuses_what_it_cannot_read(data: bytes, problem: str) -> None:
    with pytest.raises(SnapshotFormatError, match=problem) as err:
        decode_snapshot(data)
    assert isinstance(err.value, StateCorrupt)


def test_snapshot_envelope_refuses_bad_positions() -> None:
    header = b'{"state":"bytes","input_positions":{"t":{"0":-1}}}'
    data = bytes([1]) + len(header).to_bytes(4, "big") + header
    with pytest.raises(SnapshotFormatError, match="negative"):
        decode_snapshot(data)


async def test_directory_store_writes_through_a_rename(tmp_path: Path) -> None:
    # A crash mid-write leaves at most a hidden temp file, never a partial state:
    # the state file appears only by os.replace (a new inode, not a rewrite in place).
    store = DirectoryStore(tmp_path, "c1")
    handle = await store.put("j", 1, "op-0", b"first")
    path = tmp_path / "c1" / "j" / "chk-1" / "op-0"
    before = os.stat(path).st_ino
    await store.put("j", 1, "op-0", b"second")
    assert os.stat(path).st_ino != before
    assert await store.get(handle) == b"second"
