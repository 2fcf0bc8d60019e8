"""The worker's settings: one frozen object per process, passed in explicitly.

Read through the one settings model of coordinator and worker
(``schemas.config``: flags > environment > config file > defaults; keys
``taskmanager.*``, ``heartbeat.interval``, ...); this is the worker's view of
it, in the units its code uses. Where Kafka lives comes from
``schemas.settings.ClusterSettings``, shared with every other process.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import timing
from schemas.config import Effective, effective
from schemas.limits import MAX_ID_BYTES


def default_tm_id() -> str:
    """Host name plus a random suffix: two workers on one host never share an id.
    Give a stable ``--id`` to keep a worker's commands partition across restarts."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class WorkerSettings(BaseModel):
    """How one TaskManager runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tm_id: str = Field(default_factory=default_tm_id, min_length=1, max_length=MAX_ID_BYTES)
    slots: int = Field(default=max(1, os.cpu_count() or 1), ge=1, le=1024)
    heartbeat_interval_s: float = Field(default=timing.DEFAULT_WORKER_HEARTBEAT_INTERVAL_S, gt=0)
    # How long without hearing a leader before every task stops. It must outlast a
    # leader failover and late keepalives on a busy host, and end (with the cancel
    # timeout) before the coordinator's heartbeat timeout: schemas/timing.py.
    heartbeat_timeout_s: float = Field(default=timing.DEFAULT_WORKER_LEADER_TIMEOUT_S, gt=0)
    # Flink's task.cancellation.timeout is 180 s and then kills the whole
    # TaskManager; we kill only the slot process, so we can afford to be quick.
    cancel_timeout_s: float = Field(default=timing.DEFAULT_WORKER_CANCEL_TIMEOUT_S, gt=0)
    # The cluster setting state.checkpoints.dir: where tasks write their checkpoint
    # state (schemas/statestore.py): kafka (the cluster's state topic) or a directory.
    state_checkpoints_dir: str = Field(default="kafka", min_length=1)
    # Where jobs' user-code packages are installed, one directory per sha256
    # (worker/usercode.py); empty: <temp dir>/jm-artifacts/<tm_id>.
    artifact_cache_dir: str = ""
    # The package index a job's declared requirements are installed from (pip
    # --index-url); empty: offline, a requirement not installed here is refused.
    package_index: str = ""

    @model_validator(mode="after")
    def _timeout_above_interval(self) -> WorkerSettings:
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be longer than heartbeat_interval_s")
        return self

    @classmethod
    def of(cls, config: Effective) -> WorkerSettings:
        """The worker's part of the effective settings."""
        c = config.settings
        return cls(
            tm_id=c.tm_id or default_tm_id(),
            slots=c.slots,
            heartbeat_interval_s=c.heartbeat_interval_ms / 1000,
            heartbeat_timeout_s=c.leader_timeout_ms / 1000,
            cancel_timeout_s=c.cancel_timeout_ms / 1000,
            state_checkpoints_dir=c.state_checkpoints_dir,
            artifact_cache_dir=c.artifact_cache_dir,
            package_index=c.package_index,
        )

    @classmethod
    def load(cls, **overrides: Any) -> WorkerSettings:
        """Defaults, config file (``$JM_CONFIG_FILE``), environment, then `overrides`
        (flags by argparse dest) that are not None."""
        return cls.of(effective(flags=overrides))
