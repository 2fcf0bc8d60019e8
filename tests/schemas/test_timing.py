"""The timing rules between coordinators and workers (schemas/timing.py), without processes."""

from __future__ import annotations

import pytest

from schemas import timing as t


def test_the_defaults_keep_every_rule_with_room_to_spare() -> None:
    w_ms = t.DEFAULT_WORKER_LEADER_TIMEOUT_S * 1000
    k_ms = t.DEFAULT_WORKER_CANCEL_TIMEOUT_S * 1000
    h_ms = t.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S * 1000
    c_ms = t.DEFAULT_COORDINATOR_HEARTBEAT_TIMEOUT_MS
    # Rule 1 (failover keeps tasks), with 2 s to spare, and room for keepalive gaps of
    # 5 s (the thread that sends them kept gaps at or under 1.6 s on a busy 2-core host).
    assert w_ms >= t.DEFAULT_LEASE_TTL_MS + t.TAKEOVER_ALLOWANCE_MS + 2_000
    assert w_ms >= 5_000 + t.DEFAULT_KEEPALIVE_INTERVAL_MS
    # Rule 3 (never two copies), with seconds to spare.
    assert w_ms + k_ms + h_ms + 3_000 <= c_ms
    assert (
        t.coordinator_problems(
            heartbeat_timeout_ms=c_ms,
            keepalive_interval_ms=t.DEFAULT_KEEPALIVE_INTERVAL_MS,
            lease_ttl_ms=t.DEFAULT_LEASE_TTL_MS,
        )
        == []
    )
    assert (
        t.worker_problems(
            leader_timeout_s=t.DEFAULT_WORKER_LEADER_TIMEOUT_S,
            cancel_timeout_s=t.DEFAULT_WORKER_CANCEL_TIMEOUT_S,
            heartbeat_interval_s=t.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S,
            coordinator_heartbeat_timeout_ms=c_ms,
            keepalive_interval_ms=t.DEFAULT_KEEPALIVE_INTERVAL_MS,
        )
        == []
    )


def worker(w: float, c_ms: int, k: float = 3.0, h: float = 1.0, i_ms: int = 1_000) -> list[str]:
    return t.worker_problems(
        leader_timeout_s=w, cancel_timeout_s=k, heartbeat_interval_s=h,
        coordinator_heartbeat_timeout_ms=c_ms, keepalive_interval_ms=i_ms,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("w", "c_ms", "k", "h", "i_ms", "unsafe"),
    [
        (10, 20_000, 3, 1, 1_000, False),
        (3, 6_000, 1, 1, 1_000, False),  # the integration tests' settings
        (15.9, 20_000, 3, 1, 1_000, False),
        (16, 20_000, 3, 1, 1_000, True),  # W + K + h == C: no margin at all
        (30, 5_000, 3, 1, 1_000, True),  # the case the issue saw accepted silently
        (5, 5_000, 3, 1, 1_000, True),  # the old defaults broke the rule themselves
        (2, 20_000, 3, 1, 1_000, True),  # one late keepalive would stop every task
    ],
)
def test_worker_rules(w: float, c_ms: int, k: float, h: float, i_ms: int, unsafe: bool) -> None:
    assert bool(worker(w, c_ms, k, h, i_ms)) is unsafe


def test_the_worker_is_told_what_to_change() -> None:
    (problem,) = worker(30, 5_000)
    assert "jm worker --heartbeat-timeout 30 + --cancel-timeout 3 + --heartbeat-interval 1" in (
        problem
    )
    assert "the coordinator's heartbeat timeout 5 s" in problem
    assert "--heartbeat-timeout below 1" in problem
    assert "--heartbeat-timeout-ms above 34000" in problem
    (late,) = worker(2, 20_000)
    assert "above twice the leader's keepalive interval 1 s" in late


@pytest.mark.parametrize(
    ("c_ms", "ttl_ms", "unsafe"),
    [(20_000, 3_000, False), (6_000, 1_500, False), (5_000, 3_000, True), (4_000, 3_000, True)],
)
def test_coordinator_rule(c_ms: int, ttl_ms: int, unsafe: bool) -> None:
    problems = t.coordinator_problems(
        heartbeat_timeout_ms=c_ms, keepalive_interval_ms=1_000, lease_ttl_ms=ttl_ms
    )
    assert bool(problems) is unsafe
    if unsafe:
        assert (
            f"--heartbeat-timeout-ms {c_ms} leaves workers no safe leader timeout" in (problems[0])
        )
        assert "raise --heartbeat-timeout-ms" in problems[0]
