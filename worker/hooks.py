"""The worker's test-only switches (``JM_TEST_HOOKS``, see schemas/testhooks.py):

- ``partition_after_s``: after this many seconds the worker behaves as if cut
  off from Kafka's control topics (no commands read, no heartbeats or reports
  sent) while its tasks keep running (the network-partition drill).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from schemas import testhooks


@dataclass(frozen=True)
class WorkerTestHooks:
    __test__ = False  # not a pytest test class

    partition_after_s: float | None = None

    @classmethod
    def from_env(cls) -> WorkerTestHooks:
        return cls(**testhooks.read([f.name for f in fields(cls)]))
