"""Flink's restart strategies as pure functions.

Two halves, so that replay never re-runs the strategy:

- ``plan_restart`` (decide side): may the job restart after a failure at
  `now`, and after which delay? None means the strategy is exhausted.
- ``record_restart`` (evolve side): fold a journaled ``RestartScheduled``
  into the tracker, using only facts the event carries (its time and delay).
  A future change to the planning rules therefore never changes how an old
  journal folds.

Semantics (Flink's parameters, see RestartStrategy's docstring):

- FIXED_DELAY: at most `attempts` restarts, each after `delay_ms`.
- FAILURE_RATE: a restart is allowed while fewer than
  `max_failures_per_interval` restarts happened in the last
  `failure_rate_interval_ms` (documented meaning: "maximum number of restarts
  in the given interval before failing the job"); each after `delay_ms`.
- EXPONENTIAL_DELAY: the first failure (or the first after a quiet period of
  `reset_backoff_threshold_ms`) waits `initial_backoff_ms`; each further one
  waits the previous delay times `backoff_multiplier`, capped at
  `max_backoff_ms`, plus jitter. At most `attempts_before_reset_backoff`
  restarts between resets. As in Flink, the jittered delay is the base of the
  next one.
- NONE: never restart.

Jitter is deterministic: a sha256 of job id and restart number picks the
offset in [-jitter, +jitter] * delay, so every replica and every replay of the
decision computes the same delay (and the journal carries it anyway).
"""

import hashlib
from dataclasses import dataclass, field

from schemas.events import RestartStrategy, RestartStrategyKind


@dataclass(slots=True)
class RestartTracker:
    """What the strategies remember about past restarts of one job.

    attempts: restarts since the last backoff reset (ever, for FIXED_DELAY).
    last_restart_at: time of the failure that caused the last restart.
    last_delay_ms: the delay of the last restart (base of the next backoff).
    recent: failure times of the latest restarts, newest last, at most
        max_failures_per_interval of them (FAILURE_RATE's sliding window).
    """

    attempts: int = 0
    last_restart_at: int | None = None
    last_delay_ms: int = 0
    recent: list[int] = field(default_factory=list)

    def clone(self) -> "RestartTracker":
        return RestartTracker(
            self.attempts, self.last_restart_at, self.last_delay_ms, list(self.recent)
        )


def _backoff_resets(strategy: RestartStrategy, tracker: RestartTracker, now: int) -> bool:
    return (
        tracker.last_restart_at is None
        or now - tracker.last_restart_at >= strategy.reset_backoff_threshold_ms
    )


def jitter_ms(delay_ms: int, jitter_factor: float, job_id: str, restart_count: int) -> int:
    """A deterministic offset in [-spread, +spread], spread = delay * factor."""
    spread = int(delay_ms * jitter_factor)
    if spread <= 0:
        return 0
    digest = hashlib.sha256(f"{job_id}:{restart_count}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2 * spread + 1) - spread


def plan_restart(
    strategy: RestartStrategy,
    tracker: RestartTracker,
    now: int,
    job_id: str,
    restart_count: int,
) -> int | None:
    """Delay in ms before restart number `restart_count`, or None if exhausted."""
    kind = strategy.kind
    if kind is RestartStrategyKind.FIXED_DELAY:
        return strategy.delay_ms if tracker.attempts < strategy.attempts else None
    if kind is RestartStrategyKind.FAILURE_RATE:
        window_start = now - strategy.failure_rate_interval_ms
        in_window = sum(1 for t in tracker.recent if t > window_start)
        return strategy.delay_ms if in_window < strategy.max_failures_per_interval else None
    if kind is RestartStrategyKind.EXPONENTIAL_DELAY:
        if _backoff_resets(strategy, tracker, now):
            return (
                strategy.initial_backoff_ms if strategy.attempts_before_reset_backoff > 0 else None
            )
        if tracker.attempts >= strategy.attempts_before_reset_backoff:
            return None
        base = min(
            int(tracker.last_delay_ms * strategy.backoff_multiplier), strategy.max_backoff_ms
        )
        delay = base + jitter_ms(base, strategy.jitter_factor, job_id, restart_count)
        return max(0, min(delay, strategy.max_backoff_ms))
    return None  # NONE


def record_restart(
    strategy: RestartStrategy, tracker: RestartTracker, failed_at: int, delay_ms: int
) -> None:
    """Fold one journaled restart (failure time, chosen delay) into `tracker`."""
    if strategy.kind is RestartStrategyKind.EXPONENTIAL_DELAY and _backoff_resets(
        strategy, tracker, failed_at
    ):
        tracker.attempts = 0
    tracker.attempts += 1
    tracker.last_restart_at = failed_at
    tracker.last_delay_ms = delay_ms
    tracker.recent.append(failed_at)
    keep = max(strategy.max_failures_per_interval, 1)
    if len(tracker.recent) > keep:
        del tracker.recent[: len(tracker.recent) - keep]
