"""schemas.edges: the names, partitions and markers workers and coordinator share."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import edges
from schemas.catalog import Catalog, tm_partition
from schemas.events import Partitioning as P

ID = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}", fullmatch=True)
VALID_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def test_names_are_readable_when_the_ids_are_plain() -> None:
    name = edges.edge_topic(Catalog("jm"), "wordcount", 2, "split", "count")
    assert name == "jm.edge.wordcount.a2.split.count"
    assert edges.edge_topic_prefix(Catalog("jm"), "wordcount") == "jm.edge.wordcount."


@pytest.mark.parametrize(
    ("job", "other"),
    [("a.b", "a_b"), ("a", "a.b"), ("x" * 100, "x" * 99), ("a.b", "a.b.c")],
)
def test_one_jobs_prefix_is_never_a_prefix_of_anothers(job: str, other: str) -> None:
    catalog = Catalog("jm")
    mine, theirs = edges.edge_topic_prefix(catalog, job), edges.edge_topic_prefix(catalog, other)
    assert not mine.startswith(theirs) and not theirs.startswith(mine)


@given(job=ID, source=ID, target=ID, attempt=st.integers(0, 2**31 - 1))
def test_every_name_is_a_valid_kafka_topic_under_the_job_prefix(
    job: str, source: str, target: str, attempt: int
) -> None:
    for catalog in (Catalog("jm"), Catalog("c" * 200)):
        name = edges.edge_topic(catalog, job, attempt, source, target)
        assert len(name) <= edges.MAX_TOPIC_NAME
        assert name.startswith(edges.edge_topic_prefix(catalog, job))
        assert name.startswith(f"{catalog.prefix}.edge.")
        assert name.startswith(edges.edge_run_prefix(catalog, job, attempt))
        # The part after the prefix has exactly three dot-separated fields.
        tail = name.removeprefix(edges.edge_topic_prefix(catalog, job))
        assert tail.split(".")[0] == f"a{attempt}" and tail.count(".") == 2
        assert VALID_TOPIC.fullmatch(name)


def test_runs_and_edges_get_distinct_topics() -> None:
    catalog = Catalog("jm")
    names = {
        edges.edge_topic(catalog, "j", attempt, s, t)
        for attempt in (0, 1)
        for s, t in (("a", "b"), ("a.b", "c"), ("a", "b.c"), ("b", "a"))
    }
    assert len(names) == 8


@pytest.mark.parametrize(
    ("partitioning", "subtask", "partitions", "writable"),
    [
        (P.FORWARD, 2, 4, [2]),
        (P.HASH, 0, 3, [0, 1, 2]),
        (P.REBALANCE, 1, 2, [0, 1]),
        (P.BROADCAST, 0, 1, [0]),
    ],
)
def test_markers_go_wherever_a_subtask_may_write(
    partitioning: P, subtask: int, partitions: int, writable: list[int]
) -> None:
    assert list(edges.writable_partitions(partitioning, subtask, partitions)) == writable


@pytest.mark.parametrize(
    ("partitioning", "subtask", "upstream", "expected"),
    [
        (P.FORWARD, 2, 4, {2}),
        (P.HASH, 0, 3, {0, 1, 2}),
        (P.REBALANCE, 1, 1, {0}),
        (P.BROADCAST, 3, 2, {0, 1}),
    ],
)
def test_a_downstream_subtask_waits_for_every_upstream_that_may_write_to_it(
    partitioning: P, subtask: int, upstream: int, expected: set[int]
) -> None:
    assert edges.expected_upstreams(partitioning, subtask, upstream) == expected


@given(n=st.integers(1, 64), up=st.integers(1, 8), p=st.sampled_from(list(P)))
def test_writers_and_waiters_agree(n: int, up: int, p: P) -> None:
    """Downstream d waits for upstream u exactly when u may write to partition d."""
    if p is P.FORWARD:
        up = n
    for d in range(n):
        waits = edges.expected_upstreams(p, d, up)
        assert waits == {u for u in range(up) if d in edges.writable_partitions(p, u, n)}


@given(key=st.text(max_size=30), partitions=st.integers(1, 100))
def test_hash_of_a_string_key_is_kafkas_default_partitioner(key: str, partitions: int) -> None:
    assert edges.hash_partition(key, partitions) == tm_partition(key, partitions)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("a", "a"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        (1.5, "1.5"),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
    ],
)
def test_key_string(key: object, text: str) -> None:
    assert edges.key_string(key) == text


def test_rebalance_is_round_robin_from_the_subtask_index() -> None:
    assert [edges.rebalance_partition(1, i, 3) for i in range(4)] == [1, 2, 0, 1]
    with pytest.raises(ValueError, match="FORWARD"):
        edges.forward_partition(3, 3)


def test_headers_round_trip_and_refuse_strangers() -> None:
    data = edges.parse_edge_headers(edges.edge_headers("v", 2, 7))
    assert data == edges.Origin("v", 2, 7, end=False)
    assert edges.parse_edge_headers(edges.edge_headers("v", 0, 0, end=True)).end
    with pytest.raises(ValueError, match="jm-kind"):
        edges.parse_edge_headers([("jm-vertex", b"v")])
    with pytest.raises(ValueError, match="unknown"):
        edges.parse_edge_headers([*edges.edge_headers("v", 0, 0)[:3], ("jm-kind", b"?")])


def test_a_batch_value_round_trips_and_bad_ones_are_refused() -> None:
    # Records with fields in different orders: version 1 (one JSON array).
    records = [{"value": v, "key": str(v % 3), "s": "é"} for v in range(5)]
    records.append({"key": "x", "value": 5, "s": "é"})
    value = edges.encode_batch(records)
    assert value[:4] == b"JMB\x01" and int.from_bytes(value[4:8], "big") == 6
    assert edges.decode_batch(value) == records
    with pytest.raises(ValueError, match="not a record batch"):
        edges.decode_batch(b"JMB\x03" + value[4:])
    with pytest.raises(ValueError, match="announces"):
        edges.decode_batch(value[:4] + (7).to_bytes(4, "big") + value[8:])
    with pytest.raises(ValueError, match="does not decode"):
        edges.decode_batch(value[:-1])
    # The same fields in the same order: version 2, in columns.
    columns = edges.encode_batch(records[:5])
    assert columns[:4] == b"JMB\x02" and int.from_bytes(columns[4:8], "big") == 5
    assert edges.decode_batch(columns) == records[:5]
    for cut in range(4, len(columns)):
        with pytest.raises(ValueError):
            edges.decode_batch(columns[:cut])
    with pytest.raises(ValueError, match="past its columns"):
        edges.decode_batch(columns + b"\x00")
    with pytest.raises(ValueError, match="integer column"):  # 6 records announced
        edges.decode_batch(columns[:4] + (6).to_bytes(4, "big") + columns[8:])
    origin = edges.parse_edge_headers(edges.edge_headers("v", 1, 2, batch=True))
    assert origin.batch and not origin.end and origin.barrier is None


@given(key=st.integers())
def test_an_int_keys_string_is_its_json(key: int) -> None:
    assert edges.key_string(key) == json.dumps(key)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(
    fields=st.lists(st.text(), max_size=4, unique=True),
    rows=st.lists(st.lists(_values, min_size=4, max_size=4), min_size=1, max_size=20),
    shuffled=st.booleans(),
)
def test_a_batch_reads_back_what_one_json_array_would(
    fields: list[str], rows: list[list[object]], shuffled: bool
) -> None:
    """Whichever version a batch is written in, a reader gets the records the JSON array
    of version 1 gives: the same values (ints of any size, bools, None, floats, text,
    nested), the same fields in the same order."""
    records: list[object] = [dict(zip(fields, row, strict=False)) for row in rows]
    if shuffled and len(fields) > 1:  # one record's fields in another order: version 1
        records[-1] = dict(reversed(list(zip(fields, rows[-1], strict=False))))
    expected = json.loads(json.dumps(records, separators=(",", ":"), ensure_ascii=False))
    decoded = edges.decode_batch(edges.encode_batch(records))
    assert decoded == expected
    assert [list(r) for r in decoded] == [list(r) for r in expected]  # type: ignore[call-overload]
