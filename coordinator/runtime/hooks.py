"""The coordinator's test-only switches (``JM_TEST_HOOKS``, see schemas/testhooks.py),
which integration tests set on the coordinator processes they start to
rehearse failures:

- ``skip_lease_check``: do not check the lease before committing, so only
  Kafka's fencing stands between a frozen leader and the journal;
- ``hold_transaction_ms``: wait this long inside every input transaction
  before committing (freeze the leader while a transaction is open);
- ``block_loop_ms``: block the leader's event loop this long once, right after
  its first step (a stuck leader, to show it loses the lease).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from schemas import testhooks


@dataclass(frozen=True)
class TestHooks:
    __test__ = False  # not a pytest test class

    skip_lease_check: bool = False
    hold_transaction_ms: int = 0
    block_loop_ms: int = 0

    @classmethod
    def from_env(cls) -> TestHooks:
        return cls(**testhooks.read([f.name for f in fields(cls)]))

    def without_block(self) -> TestHooks:
        return replace(self, block_loop_ms=0)
