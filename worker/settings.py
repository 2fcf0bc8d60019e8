"""The worker's settings: one frozen object per process, passed in explicitly.

Flags win over the environment (``JM_WORKER_SLOTS``, ``JM_WORKER_TM_ID``, ...),
which wins over the defaults. Where Kafka lives comes from
``schemas.settings.ClusterSettings``, shared with every other process.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import timing
from schemas.limits import MAX_ID_BYTES


def default_tm_id() -> str:
    """Host name plus a random suffix: two workers on one host never share an id.
    Give a stable ``--id`` to keep a worker's commands partition across restarts."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class WorkerSettings(BaseSettings):
    """How one TaskManager runs."""

    model_config = SettingsConfigDict(env_prefix="JM_WORKER_", frozen=True, extra="ignore")

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
    def load(cls, **overrides: Any) -> WorkerSettings:
        """Environment first, then explicit overrides (flags) that are not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
