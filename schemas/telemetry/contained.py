"""Telemetry never breaks the process it observes: every entry point contains its errors."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
_failed_once: set[str] = set()


def contained(fn: Callable[P, R | None]) -> Callable[P, R | None]:
    """Telemetry that fails logs it (once per entry point) and returns None."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return fn(*args, **kwargs)
        except Exception:
            if fn.__qualname__ not in _failed_once:
                _failed_once.add(fn.__qualname__)
                log.warning("telemetry %s failed (contained; logged once)", fn.__qualname__,
                            exc_info=True)  # fmt: skip
            return None

    return wrapper
