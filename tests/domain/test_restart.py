"""Restart strategies: pure tables."""

import pytest

from coordinator.domain.restart import RestartTracker, jitter_ms, plan_restart, record_restart
from schemas.events import RestartStrategy
from schemas.events import RestartStrategyKind as K


def _run(strategy: RestartStrategy, failures: list[int], job_id: str = "j") -> list[int | None]:
    """Delays planned for failures at the given times, recording each restart."""
    tracker = RestartTracker()
    out: list[int | None] = []
    for n, t in enumerate(failures, start=1):
        delay = plan_restart(strategy, tracker, t, job_id, n)
        out.append(delay)
        if delay is not None:
            record_restart(strategy, tracker, t, delay)
    return out


@pytest.mark.parametrize(
    ("strategy", "failures", "expected"),
    [
        (RestartStrategy(kind=K.NONE), [0], [None]),
        (RestartStrategy(kind=K.FIXED_DELAY, attempts=2, delay_ms=500), [0, 10, 20],
         [500, 500, None]),
        (RestartStrategy(kind=K.FIXED_DELAY, attempts=0), [0], [None]),
        # 2 restarts per 1000 ms window
        (RestartStrategy(kind=K.FAILURE_RATE, max_failures_per_interval=2,
                         failure_rate_interval_ms=1000, delay_ms=7),
         [0, 100, 200], [7, 7, None]),
        (RestartStrategy(kind=K.FAILURE_RATE, max_failures_per_interval=2,
                         failure_rate_interval_ms=1000, delay_ms=7),
         [0, 100, 1001, 1099, 1100], [7, 7, 7, None, 7]),
        # no jitter: 1000, 2000, 4000, capped 5000
        (RestartStrategy(kind=K.EXPONENTIAL_DELAY, initial_backoff_ms=1000, max_backoff_ms=5000,
                         backoff_multiplier=2.0, jitter_factor=0.0),
         [0, 10, 20, 30, 40], [1000, 2000, 4000, 5000, 5000]),
        # quiet period resets the backoff
        (RestartStrategy(kind=K.EXPONENTIAL_DELAY, initial_backoff_ms=1000, backoff_multiplier=2.0,
                         jitter_factor=0.0, reset_backoff_threshold_ms=100),
         [0, 10, 500, 510], [1000, 2000, 1000, 2000]),
        (RestartStrategy(kind=K.EXPONENTIAL_DELAY, attempts_before_reset_backoff=2,
                         jitter_factor=0.0),
         [0, 1, 2], [1000, 1500, None]),
    ],
)  # fmt: skip
def test_strategy_table(
    strategy: RestartStrategy, failures: list[int], expected: list[int | None]
) -> None:
    assert _run(strategy, failures) == expected


def test_exponential_jitter_is_deterministic_and_bounded() -> None:
    s = RestartStrategy(kind=K.EXPONENTIAL_DELAY, backoff_multiplier=2.0, jitter_factor=0.1)
    a = _run(s, [0, 1, 2, 3], "job-a")
    assert a == _run(s, [0, 1, 2, 3], "job-a")
    assert a[0] == 1000
    prev = 1000
    for d in a[1:]:
        assert d is not None
        assert 0.9 * 2 * prev - 1 <= d <= 1.1 * 2 * prev + 1
        prev = d
    spread = {jitter_ms(1000, 0.1, f"job-{i}", 1) for i in range(50)}
    assert len(spread) > 10 and all(-100 <= j <= 100 for j in spread)
