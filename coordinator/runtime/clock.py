"""Time for the leader: durations on the monotonic clock, the wall clock only to stamp.

A leader reads the wall clock once, when its term begins, and from then on
counts the monotonic clock forward from there (``LeaderClock``). Every
duration it measures (heartbeat ages, keepalive and tick cadence, restart
delays, checkpoint timeouts) is a difference of two such readings, so a step
of the host's wall clock in either direction changes none of them. Event
times stay close to the wall clock (they drift only by what the host's clock
is slewed or stepped during one term) and never go below the latest event
time in the journal, so they are monotonic across leaders whose clocks differ.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """The two readings a process needs, in milliseconds."""

    def wall_ms(self) -> int: ...

    def monotonic_ms(self) -> int: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


class LeaderClock:
    """Milliseconds that read like the wall clock and advance like the monotonic one."""

    def __init__(self, clock: Clock, not_before_ms: int = 0) -> None:
        self._clock = clock
        self._origin_mono = clock.monotonic_ms()
        self._origin_wall = max(clock.wall_ms(), not_before_ms)

    def now_ms(self) -> int:
        return self._origin_wall + (self._clock.monotonic_ms() - self._origin_mono)
