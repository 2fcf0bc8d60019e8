"""Switches only tests use, kept out of every user-facing setting (CLI flags,
settings, config objects): a test sets them on a process it starts through the
``JM_TEST_HOOKS`` environment variable, a JSON object. Each process reads the
hooks it knows (coordinator/runtime/hooks.py, worker/hooks.py) and refuses any
other name, so a typo cannot silently disable a drill.

Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from typing import Any, Final

ENV: Final = "JM_TEST_HOOKS"


def read(known: Collection[str]) -> dict[str, Any]:
    """The hooks set for this process ({} when none); ValueError on an unknown name."""
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    values = json.loads(raw)
    if not isinstance(values, dict):
        raise ValueError(f"{ENV} must be a JSON object, got {raw!r}")
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{ENV}: unknown hooks {sorted(unknown)} (known: {sorted(known)})")
    return values
