"""Requests that become events (submit, cancel, savepoints): any replica accepts them.

A write is a client command produced to the submissions topic, exactly what
``jm submit`` / ``jm cancel`` / ``jm savepoint`` / ``jm stop`` send, so a
standby takes it as well as the leader: the leader decides, the journal says
what it decided. ``POST /jobs`` answers once that decision is in the journal
(``coordinator.client.JobWatch``, opened before the send); a cancel answers
202 once the request is in Kafka; a savepoint answers with a trigger id
(coordinator/rest/triggers.py follows it). With a token configured, every
route here needs ``Authorization: Bearer <token>`` (coordinator/rest/auth.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Final, TypeVar

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from coordinator import client
from coordinator.commands.present import reasons
from coordinator.rest import writemodels as wm
from coordinator.rest.api import ApiError, Route, bad_request, int_query, json_answer, not_found
from coordinator.rest.auth import SCHEME, authorized
from coordinator.rest.context import RestContext
from coordinator.rest.submission import MAX_BODY_BYTES, SubmissionInvalid, parse_submission
from coordinator.rest.triggers import (
    TRIGGER_ID,
    Operation,
    SavepointOperations,
    TooManyOperations,
)
from schemas import events as ev
from schemas.jobgraph import JobSpec
from schemas.limits import MAX_NAME_BYTES, MAX_PATH_BYTES, clip

M = TypeVar("M", bound=BaseModel)

#: How long ``POST /jobs`` waits for the leader's decision unless ``?timeout=`` says.
SUBMIT_TIMEOUT_S: Final = 30
MAX_SUBMIT_TIMEOUT_S: Final = 600
#: How long a lagging replica waits to learn of a job a write names before a 404.
CATCH_UP_S: Final = 2.0
#: Savepoint and stop bodies are a few short fields.
MAX_TRIGGER_BODY_BYTES: Final = 16_384


class Writes:
    def __init__(self, ctx: RestContext) -> None:
        self.ctx = ctx
        self.operations = SavepointOperations(ctx.settings)
        self._by = clip(f"rest@{ctx.replica_id}", MAX_NAME_BYTES)  # submitted_by / requested_by

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/jobs", self.submit,
                  "Submit a JSON job graph; answers once the leader accepted or rejected it",
                  wm.JobSubmitResponse, {"timeout": "seconds to wait for the leader (default 30)",
                                    "jobId": "the job id (default: the body's job_id, else "
                                    "32 hex digits)"}, request=JobSpec, status=202),
            Route("PATCH", "/jobs/{job_id}", self.cancel, "Cancel a job (?mode=cancel)",
                  None, {"mode": "cancel (the only mode)"}, status=202),
            Route("GET", "/jobs/{job_id}/yarn-cancel", self.cancel,
                  "Cancel a job (the dashboard's GET form)", None, status=202),
            Route("POST", "/jobs/{job_id}/savepoints", self.savepoint,
                  "Trigger a savepoint; answers with its trigger id", wm.TriggerResponse,
                  request=wm.SavepointTrigger, status=202),
            Route("POST", "/jobs/{job_id}/stop", self.stop,
                  "Stop a job with a savepoint; answers with its trigger id",
                  wm.TriggerResponse, request=wm.StopWithSavepoint, status=202),
            Route("GET", "/jobs/{job_id}/savepoints/{trigger_id}", self.savepoint_status,
                  "Status of a savepoint or stop-with-savepoint asked through this replica",
                  wm.SavepointStatus),
        ]  # fmt: skip

    # ------------------------------------------------------------------ submit

    async def submit(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        timeout = min(int_query(request, "timeout", SUBMIT_TIMEOUT_S, 1), MAX_SUBMIT_TIMEOUT_S)
        body = await _body(request, MAX_BODY_BYTES)
        try:
            event = parse_submission(
                body, event_time=self.ctx.now_ms(), job_id=request.query.get("jobId"),
                submitted_by=self._by,
                default_checkpoint_interval_ms=self.ctx.checkpoint_interval_ms,
            )  # fmt: skip
        except SubmissionInvalid as err:
            raise bad_request(*err.errors) from None
        try:
            async with client.JobWatch(self.ctx.settings, event.job_id) as watch:
                sent = await client.produce(self.ctx.settings, event)
                answer = await watch.answer(event, sent, timeout)
        except client.WaitTimeout as err:
            raise ApiError(504, f"job {event.job_id}: {err}") from None
        except KafkaError as err:
            raise _kafka_down(err) from None
        if not answer.accepted:
            raise ApiError(
                422, f"job {event.job_id} rejected by the leader", *reasons(answer.reason or "")
            )
        offset = answer.offset if answer.event is not None else None
        found = wm.JobSubmitResponse(job_url=f"/jobs/{event.job_id}", jid=event.job_id,
                                journal_offset=offset)  # fmt: skip
        return json_answer(found, 202)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        mode = request.query.get("mode", "cancel")
        if mode != "cancel":
            raise bad_request(f"mode: {mode!r} is not supported: use mode=cancel, or "
                              "POST /jobs/{id}/stop to stop with a savepoint")  # fmt: skip
        job_id = request.match_info["job_id"]
        await self._running_job(job_id, "cancelled")
        command = client.cancel_request(job_id, requested_by=self._by)
        try:
            await client.produce(self.ctx.settings, command)
        except KafkaError as err:
            raise _kafka_down(err) from None
        return web.json_response({}, status=202)

    # -------------------------------------------------------------- savepoints

    async def savepoint(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        job_id = request.match_info["job_id"]
        body = await _model(request, wm.SavepointTrigger)
        await self._running_job(job_id, "savepointed")
        stop = body.cancel_job  # Flink's cancel-with-savepoint: here a stop with savepoint
        return await self._trigger(job_id, body.target_directory, body.trigger_id, stop=stop)

    async def stop(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._denied(request)) is not None:
            return denied
        job_id = request.match_info["job_id"]
        body = await _model(request, wm.StopWithSavepoint)
        if body.drain:
            raise bad_request("drain: not supported: a stop emits no end of input first")
        await self._running_job(job_id, "stopped")
        return await self._trigger(job_id, body.target_directory, body.trigger_id, stop=True)

    async def _trigger(
        self, job_id: str, target: str | None, trigger_id: str | None, *, stop: bool
    ) -> web.StreamResponse:
        name = "targetDirectory" if stop else "target-directory"
        directory = None if target is None else _directory(name, target)
        if trigger_id is not None and not TRIGGER_ID.fullmatch(trigger_id):
            raise bad_request(f"triggerId: must be 32 lowercase hex digits, not {trigger_id!r}")
        cls = ev.StopWithSavepointRequested if stop else ev.SavepointRequested
        command = cls(event_id=trigger_id or uuid.uuid4().hex, event_time=self.ctx.now_ms(),
                      job_id=job_id, target_directory=directory)  # fmt: skip
        try:
            op = await self.operations.trigger(command)
        except TooManyOperations as err:
            raise ApiError(503, str(err)) from None
        except KafkaError as err:
            raise _kafka_down(err) from None
        return json_answer(wm.TriggerResponse(request_id=op.trigger_id), 202)

    async def savepoint_status(self, request: web.Request) -> web.StreamResponse:
        job_id, trigger_id = request.match_info["job_id"], request.match_info["trigger_id"]
        op = self.operations.get(job_id, trigger_id)
        if op is None:
            raise not_found(
                f"There is no savepoint operation with triggerId={trigger_id} for job {job_id} "
                "on this replica (operations are known to the replica that took them)"
            )
        return web.Response(text=_status(op).model_dump_json(by_alias=True, exclude_none=True),
                            content_type="application/json")  # fmt: skip

    # ----------------------------------------------------------------- helpers

    def _denied(self, request: web.Request) -> web.Response | None:
        """401 unless the request carries the token (None: go on)."""
        if authorized(request.headers.get("Authorization"), self.ctx.token):
            return None
        return web.json_response(
            {"errors": [f"Unauthorized: {request.method} {request.path} needs the header "
                        f"'Authorization: {SCHEME} <token>' with the token of "
                        "--rest-token-file or $JM_REST_TOKEN"]},
            status=401, headers={"WWW-Authenticate": f'{SCHEME} realm="jm"'},
        )  # fmt: skip

    async def _running_job(self, job_id: str, what: str) -> None:
        """404 for a job this replica's state does not know, 409 for one that ended.

        A standby a few records behind may not know a job just accepted (submitted
        through another replica a moment ago): it waits up to CATCH_UP_S while it
        lags before saying 404."""
        deadline = time.monotonic() + CATCH_UP_S
        while job_id not in self.ctx.state.jobs and time.monotonic() < deadline:
            if await self.ctx.lag() <= 0:
                break
            await asyncio.sleep(0.05)  # the follower applies records meanwhile
        state = self.ctx.state
        job = state.jobs.get(job_id)
        if job is None:
            ended = state.ended_jobs.get(job_id)
            if ended is None:
                raise not_found(f"Job {job_id} not found (journal offset {self.ctx.offset})")
            raise ApiError(409, f"Job {job_id} cannot be {what}: it ended "
                                f"{ended.final_status} (archived)")  # fmt: skip
        if job.status.is_globally_terminal:
            raise ApiError(409, f"Job {job_id} cannot be {what}: it already reached the "
                                f"terminal state {job.status}")  # fmt: skip


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    return list(Writes(ctx).routes())


def _status(op: Operation) -> wm.SavepointStatus:
    if op.status == "IN_PROGRESS":
        return wm.SavepointStatus(status=wm.QueueStatus(id="IN_PROGRESS"))
    cause = None
    if op.failure is not None:
        cause = wm.FailureCause(class_name="SavepointFailed", stack_trace=op.failure)
    info = wm.SavepointInfo(location=op.location, failure_cause=cause)
    return wm.SavepointStatus(status=wm.QueueStatus(id="COMPLETED"), operation=info)


def _directory(name: str, target: str) -> str:
    """A savepoint target as an absolute local path (Flink's ``file://`` URIs too)."""
    path = target.removeprefix("file://") if target.startswith("file:///") else target
    path = path.removeprefix("file:") if path.startswith("file:/") else path
    if not os.path.isabs(path):
        raise bad_request(f"{name}: must be an absolute path (the leader writes it), "
                          f"not {target[:64]!r}")  # fmt: skip
    if len(path.encode()) > MAX_PATH_BYTES:
        raise bad_request(f"{name}: longer than {MAX_PATH_BYTES} bytes")
    return path


async def _body(request: web.Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes without reading it all."""
    too_large = ApiError(413, f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65_536):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _model(request: web.Request, model: type[M]) -> M:
    """An optional JSON body as `model` (400 naming each field that is wrong)."""
    raw = await _body(request, MAX_TRIGGER_BODY_BYTES)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad_request(f"(body): not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise bad_request("(body): must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise bad_request(
            *(".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in err.errors())
        ) from None


def _kafka_down(err: KafkaError) -> ApiError:
    return ApiError(503, f"Kafka did not take the request: {type(err).__name__}: {err}")
