"""Digest stability and the snapshot dict round trip."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.domain import (
    STATE_FORMAT_VERSION,
    UnsupportedSnapshot,
    state_digest,
    state_from_dict,
    state_to_dict,
)
from coordinator.domain.digest import canonical_json
from schemas.events import ExecutionState, RestartStrategy, RestartStrategyKind
from tests.domain.cluster import Cluster

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
