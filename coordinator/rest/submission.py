"""The body of ``POST /jobs`` -> a validated ``JobSubmitted``, or every problem per field.

The body is the JSON form of a job file (docs/examples/clicks.json: ``name``,
``vertices``, ``edges``, ``restart_strategy``, ``checkpoint_config``, ...): the
same document ``jm submit job.json`` sends, checked by the same two passes
(schemas.jobgraph: shape, then semantics). Flink's own ``POST /jobs`` body
names an uploaded, Java-serialized JobGraph file (``jobGraphFileName``); no such
file can run here, and the answer says so instead of listing unknown keys.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Final

from schemas import events as ev
from schemas.jobgraph import JobGraphInvalid, parse_job_spec, to_job_submitted

#: Bodies larger than this are refused unread (413): the largest valid submission
#: (schemas.limits: 128 vertices, 32 KiB of config per job) is far smaller.
MAX_BODY_BYTES: Final = 1_048_576

#: Keys of Flink's JobSubmitRequestBody: a client that sends them uploads a jar.
_FLINK_UPLOAD_KEYS: Final = ("jobGraphFileName", "jobJarFileNames", "artifactFileNames")


class SubmissionInvalid(ValueError):
    """A body that is no valid job: `fields` maps each location to its problems
    (``(body)`` for the document as a whole)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{k}: {m}" for k, ms in fields.items() for m in ms))

    @property
    def errors(self) -> list[str]:
        """One line per problem, location first (Flink's ``{"errors": [...]}``)."""
        return [f"{k}: {m}" for k, ms in self.fields.items() for m in ms]


BODY: Final = "(body)"


def by_field(problems: list[str]) -> dict[str, list[str]]:
    """``"vertices[0].parallelism: must be ..."`` lines grouped by their location."""
    out: dict[str, list[str]] = {}
    for problem in problems:
        where, sep, what = problem.partition(": ")
        if not sep or " " in where:
            where, what = BODY, problem
        out.setdefault(where, []).append(what)
    return out


def parse_submission(
    body: bytes,
    *,
    event_time: int,
    job_id: str | None = None,
    submitted_by: str | None = None,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    default_checkpoint_interval_ms: int = 0,
) -> ev.JobSubmitted:
    """The JobSubmitted a ``POST /jobs`` body asks for (SubmissionInvalid otherwise).

    `job_id` (the ``jobId`` query parameter) overrides the body's ``job_id``; a
    body naming none gets a 32-hex id, the shape of a Flink JobID."""
    if len(body) > MAX_BODY_BYTES:
        raise SubmissionInvalid({BODY: [f"larger than {MAX_BODY_BYTES} bytes"]})
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionInvalid({BODY: ["not UTF-8 text"]}) from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise SubmissionInvalid({BODY: [f"not valid JSON: {err.msg} ({where})"]}) from None
    if not isinstance(data, dict):
        raise SubmissionInvalid({BODY: ["must be a JSON object: a job graph (docs/rest.md)"]})
    uploads = [k for k in _FLINK_UPLOAD_KEYS if k in data]
    if uploads:
        raise SubmissionInvalid({
            k: ["Flink's serialized JobGraph and jar uploads cannot run here: send the job "
                "graph as JSON (vertices, edges; docs/rest.md)"]
            for k in uploads
        })  # fmt: skip
    if job_id is not None:
        data["job_id"] = job_id
    if submitted_by is not None and data.get("submitted_by") is None:
        data["submitted_by"] = submitted_by
    try:
        spec = parse_job_spec(data, "body")
        return to_job_submitted(
            spec,
            event_time=event_time,
            new_id=new_id,
            source="body",
            default_checkpoint_interval_ms=default_checkpoint_interval_ms,
        )
    except JobGraphInvalid as err:
        raise SubmissionInvalid(by_field(err.problems)) from None
