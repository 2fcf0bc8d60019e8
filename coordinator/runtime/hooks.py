"""Switches only tests use, kept out of every user-facing setting.

Read from the ``JM_TEST_HOOKS`` environment variable (JSON), so no CLI flag,
settings file or config object a user sees carries them. Integration tests
set it on the coordinator processes they start to rehearse failures:

- ``skip_lease_check``: do not check the lease before committing, so only
  Kafka's fencing stands between a frozen leader and the journal;
- ``hold_transaction_ms``: wait this long inside every input transaction
  before committing (freeze the leader while a transaction is open);
- ``block_loop_ms``: block the leader's event loop this long once, right after
  its first step (a stuck leader, to show it loses the lease).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Final

ENV: Final = "JM_TEST_HOOKS"


@dataclass(frozen=True)
class TestHooks:
    __test__ = False  # not a pytest test class

    skip_lease_check: bool = False
    hold_transaction_ms: int = 0
    block_loop_ms: int = 0

    @classmethod
    def from_env(cls) -> TestHooks:
        raw = os.environ.get(ENV)
        if not raw:
            return cls()
        values = json.loads(raw)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{ENV}: unknown hooks {sorted(unknown)} (known: {sorted(known)})")
        return cls(**values)

    def without_block(self) -> TestHooks:
        return replace(self, block_loop_ms=0)
