"""Connection settings every process shares: one frozen object, passed in explicitly.

Read from flags (the caller passes overrides), the environment and an optional
``.env``-style file. Environment names: ``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL`` and ``JM_CLUSTER_ID`` (the same names the Docker image, the
Makefile and the test fixtures use).
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClusterSettings(BaseSettings):
    """Where the cluster lives and what it is called."""

    model_config = SettingsConfigDict(
        env_prefix="JM_", env_file=None, frozen=True, extra="ignore", populate_by_name=True
    )

    cluster_id: str = Field(
        default="jm",
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,99}$",
        description="namespaces topics, transactional id, consumer groups and Redis keys",
    )
    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "JM_BOOTSTRAP_SERVERS"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "JM_REDIS_URL"),
    )

    @classmethod
    def load(cls, **overrides: Any) -> ClusterSettings:
        """Environment first, then explicit overrides (flags) that are not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
