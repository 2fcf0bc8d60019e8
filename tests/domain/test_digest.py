"""Digest stability and the snapshot dict round trip."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.domain import (
    STATE_FORMAT_VERSION,
    UnsupportedSnapshot,
    state_digest,
    state_from_dict,
    state_to_dict,
)
from coordinator.domain.digest import canonical_json, digest_and_text, json_pieces, plain_digest
from schemas.events import ExecutionState, RestartStrategy, RestartStrategyKind
from schemas.limits import MAX_SLOTS_PER_WORKER, MAX_SUBTASKS, MAX_SUBTASKS_PER_JOB
from tests.domain.cluster import Cluster, submission

REPO = Path(__file__).resolve().parents[2]


def busy_cluster() -> Cluster:
    c = Cluster()
    c.register("tm-a", slots=2)
    c.register("tm-b", slots=2)
    exp = RestartStrategy(kind=RestartStrategyKind.EXPONENTIAL_DELAY, backoff_multiplier=1.7)
    c.submit("j1", (("src", "map", 2), ("out", "sink", 1)), restart=exp)
    c.submit("j2", (("src", "map", 3),))  # waits
    c.run_all("j1")
    c.report(c.tasks("j1")[0], ExecutionState.FAILED, error="Boom")
    return c


def test_round_trip_keeps_the_digest_and_is_json() -> None:
    state = busy_cluster().state
    data = json.loads(json.dumps(state_to_dict(state)))
    again = state_from_dict(data)
    assert state_digest(again) == state_digest(state)
    assert canonical_json(again) == canonical_json(state)
    assert again.jobs["j1"].submission == state.jobs["j1"].submission


def test_the_restored_state_equals_the_state_field_for_field() -> None:
    """The generated decoders (serde._RecordDecoders) rebuild every dataclass of the
    state equal to the original, not only to the same digest."""
    state = busy_cluster().state
    again = state_from_dict(json.loads(json.dumps(state_to_dict(state))))
    assert again == state
    assert type(again.jobs["j1"].status) is type(state.jobs["j1"].status)


def test_fields_missing_from_older_data_take_their_defaults() -> None:
    state = busy_cluster().state
    data = json.loads(json.dumps(state_to_dict(state)))
    stats = data["state"]["jobs"]["j1"]["checkpoints"]["stats"]
    del stats["restored"], stats["end_to_end_duration"]["max"]
    again = state_from_dict(data)
    assert again.jobs["j1"].checkpoints.stats.restored == 0
    assert again.jobs["j1"].checkpoints.stats.end_to_end_duration.max == 0
    assert again.jobs["j1"].checkpoints == dataclasses.replace(
        state.jobs["j1"].checkpoints, stats=again.jobs["j1"].checkpoints.stats
    )


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("epoch",), "3", TypeError),  # an int field given a string
        (("jobs", "j1", "status"), "NO_SUCH_STATUS", ValueError),  # not an enum value
        (("jobs", "j1", "exceptions"), 7, TypeError),  # not a list
    ],
)
def test_values_of_the_wrong_kind_are_refused(
    path: tuple[str, ...], value: object, error: type[Exception]
) -> None:
    data = json.loads(json.dumps(state_to_dict(busy_cluster().state)))
    where = data["state"]
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises(error):
        state_from_dict(data)


def test_the_digest_and_the_printed_text_come_from_one_encoding() -> None:
    plain = state_to_dict(busy_cluster().state)
    digest, text = digest_and_text(plain)
    assert digest == plain_digest(plain) == state_digest(busy_cluster().state)
    assert json.loads(text) == json.loads(json.dumps(plain["state"]))
    assert canonical_json(busy_cluster().state) == (
        f'{{"format_version":{STATE_FORMAT_VERSION},"state":{text}}}'.encode()
    )


def test_other_format_versions_are_refused() -> None:
    data = state_to_dict(busy_cluster().state)
    data["format_version"] = STATE_FORMAT_VERSION + 1
    with pytest.raises(UnsupportedSnapshot):
        state_from_dict(data)


def test_digest_is_stable_across_hash_seeds() -> None:
    code = (
        "from tests.domain.test_digest import busy_cluster\n"
        "from coordinator.domain import state_digest\n"
        "print(state_digest(busy_cluster().state))\n"
    )
    digests = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        digests.add(out.stdout.strip())
    assert digests == {state_digest(busy_cluster().state)}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=5),
    max_leaves=40,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=json_values, sort_keys=st.booleans(), depth=st.integers(0, 6))
def test_json_pieces_join_to_what_json_dumps_writes(
    value: object, sort_keys: bool, depth: int
) -> None:
    expected = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=True)
    assert "".join(json_pieces(value, sort_keys, depth)) == expected


def test_a_large_state_is_encoded_in_pieces_of_a_job_at_most() -> None:
    """The digest and a snapshot of a quarter of the largest state the coordinator holds
    (16,384 subtasks): the same text as one json.dumps, but no single C-encoder call over
    more than a job's worth (the encoder holds the interpreter lock, and the lease renewer
    waits, for the whole of a call)."""
    c = Cluster()
    subtasks = MAX_SUBTASKS // 4
    for w in range(subtasks // MAX_SLOTS_PER_WORKER):
        c.register(f"tm-{w:03d}", slots=MAX_SLOTS_PER_WORKER)
    jobs = subtasks // MAX_SUBTASKS_PER_JOB
    for j in range(jobs):
        s = submission(f"job-{j:02d}", (("src", "map", MAX_SUBTASKS_PER_JOB),))
        (v,) = s.job_graph.vertices
        graph = dataclasses.replace(
            s.job_graph, vertices=(dataclasses.replace(v, max_parallelism=MAX_SUBTASKS_PER_JOB),)
        )
        c.feed(dataclasses.replace(s, job_graph=graph))
    assert sum(len(job.executions) for job in c.state.jobs.values()) == subtasks
    data = state_to_dict(c.state)
    for sort_keys in (True, False):
        pieces = list(json_pieces(data, sort_keys))
        whole = json.dumps(data, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=True)
        assert "".join(pieces) == whole
        assert max(map(len, pieces)) < len(whole) // jobs, (max(map(len, pieces)), len(whole))
    assert canonical_json(c.state) == json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")
