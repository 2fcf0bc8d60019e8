"""Response models with Flink's field names (aliases); ``/openapi.json`` is built from them.

Construct by field name, serialise ``by_alias`` (``api.json_answer``). Fields
Flink has keep its names and meaning; ours are named ``jm-...`` (Flink's
clients ignore fields they do not know).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Reflecting(Model):
    """An answer from a replica's folded state: which journal offset it reflects
    (also in the ``X-JM-Journal-Offset`` header)."""

    journal_offset: int = Field(alias="jm-journal-offset")


class Health(Model):
    status: str
    replica_id: str = Field(alias="replica-id")
    role: str


class Features(Model):
    web_submit: bool = Field(alias="web-submit")
    web_cancel: bool = Field(alias="web-cancel")
    web_rescale: bool = Field(alias="web-rescale")
    web_history: bool = Field(alias="web-history")


class DashboardConfig(Model):
    """Flink's ``/config`` (what the dashboard reads first)."""

    refresh_interval: int = Field(alias="refresh-interval")
    timezone_name: str = Field(alias="timezone-name")
    timezone_offset: int = Field(alias="timezone-offset")
    flink_version: str = Field(alias="flink-version")
    flink_revision: str = Field(alias="flink-revision")
    features: Features


class ClusterOverview(Reflecting):
    """Flink's ``/overview``."""

    taskmanagers: int
    slots_total: int = Field(alias="slots-total")
    slots_available: int = Field(alias="slots-available")
    jobs_running: int = Field(alias="jobs-running")
    jobs_finished: int = Field(alias="jobs-finished")
    jobs_cancelled: int = Field(alias="jobs-cancelled")
    jobs_failed: int = Field(alias="jobs-failed")
    flink_version: str = Field(alias="flink-version")
    flink_commit: str = Field(alias="flink-commit")
