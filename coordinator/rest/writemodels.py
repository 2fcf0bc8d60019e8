"""Request and response models of the writes (coordinator/rest/writes.py), with Flink's
field names: ``POST /jobs``, savepoints, stop. ``/openapi.json`` is built from them.

Request bodies ignore keys they do not know, as Flink's REST handlers do (newer
clients send more); a known key with a wrong type is a 400 naming it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from coordinator.rest.models import Model


class Request(Model):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class JobSubmitResponse(Model):
    """``POST /jobs``, 202: the leader accepted the job (Flink's JobSubmitResponseBody
    and more)."""

    job_url: str = Field(alias="jobUrl")
    jid: str
    status: Literal["accepted"] = "accepted"
    journal_offset: int | None = Field(
        None, alias="jm-journal-offset",
        description="journal offset of the JobAccepted; null when the job was submitted "
        "already with the same content (this copy changed nothing)",
    )  # fmt: skip


class SavepointTrigger(Request):
    """``POST /jobs/{id}/savepoints`` (Flink's SavepointTriggerRequestBody)."""

    target_directory: str | None = Field(None, alias="target-directory")
    cancel_job: bool = Field(False, alias="cancel-job")
    trigger_id: str | None = Field(None, alias="triggerId")
    format_type: Literal["CANONICAL", "NATIVE"] | None = Field(None, alias="formatType")


class StopWithSavepoint(Request):
    """``POST /jobs/{id}/stop`` (Flink's StopWithSavepointRequestBody)."""

    target_directory: str | None = Field(None, alias="targetDirectory")
    drain: bool = False
    trigger_id: str | None = Field(None, alias="triggerId")
    format_type: Literal["CANONICAL", "NATIVE"] | None = Field(None, alias="formatType")


class TriggerResponse(Model):
    """202 of a savepoint or stop: the trigger id to ask about."""

    request_id: str = Field(alias="request-id")


class QueueStatus(Model):
    id: Literal["IN_PROGRESS", "COMPLETED"]


class FailureCause(Model):
    """Flink's SerializedThrowable as JSON (no Java object to deserialise here)."""

    class_name: str = Field(alias="class")
    stack_trace: str = Field(alias="stack-trace")


class SavepointInfo(Model):
    location: str | None = None
    failure_cause: FailureCause | None = Field(None, alias="failure-cause")


class SavepointStatus(Model):
    """``GET /jobs/{id}/savepoints/{triggerid}`` (Flink's AsynchronousOperationResult)."""

    status: QueueStatus
    operation: SavepointInfo | None = None
