"""One log line per event, at most ``burst`` per ``window``: the rest are counted and
summed up in one line when the window ends, so a flood of bad input cannot flood the log."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 20,
        window_s: float = 10.0,
        level: int = logging.INFO,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.level = level
        self._window_start = time.monotonic()
        self._logged = 0
        self._suppressed = 0

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.window_s:
            if self._suppressed:
                self.logger.log(self.level, "... and %d more like these in the last %.0fs",
                                self._suppressed, now - self._window_start)  # fmt: skip
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            self.logger.log(self.level, msg, *args)
        else:
            self._suppressed += 1
