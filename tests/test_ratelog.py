"""The coordinator's one-line-per-event log cannot be flooded."""

from __future__ import annotations

import logging
import time

import pytest

from coordinator.runtime.ratelog import RateLimitedLog


def test_burst_then_summary(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelog")
    say = RateLimitedLog(logger, burst=3, window_s=0.2)
    with caplog.at_level(logging.INFO, logger="test.ratelog"):
        for n in range(10):
            say("bad record %d", n)
        assert [r.getMessage() for r in caplog.records] == [
            "bad record 0", "bad record 1", "bad record 2",
        ]  # fmt: skip
        time.sleep(0.25)
        say("bad record %d", 10)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[3].startswith("... and 7 more like these")
    assert messages[4] == "bad record 10"
