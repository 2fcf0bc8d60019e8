"""``jm list``, ``jm status`` and ``jm cancel`` through a replica's REST API.

With ``--url`` (or ``$JM_REST_URL``) these commands ask that replica first: no
journal to fold, the answer of a replica that has it folded already. When no
API answers there (nothing listening, a timeout, a server error) they say so on
stderr and read Kafka as they do without ``--url``. Standard library only
(urllib, imported when a request is made): ``jm --help`` imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

URL_ENV: Final = "JM_REST_URL"
TOKEN_ENV: Final = "JM_REST_TOKEN"
#: Seconds one request may take before the API counts as not answering.
REQUEST_TIMEOUT_S: Final = 5.0


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("REST API")
    group.add_argument(
        "--url",
        help="a replica's REST API (default $JM_REST_URL), e.g. http://127.0.0.1:8081; "
        "when it does not answer, Kafka is read instead",
    )
    group.add_argument("--token", help="bearer token for writes (default $JM_REST_TOKEN)")


class Unreachable(Exception):
    """No API answered: the caller reads Kafka instead."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the decoded JSON ({} when there was none)
    headers: dict[str, str]

    @property
    def errors(self) -> list[str]:
        """Flink's ``{"errors": [...]}``, as lines."""
        found = self.body.get("errors") if isinstance(self.body, dict) else None
        return [str(e) for e in found] if isinstance(found, list) else [f"HTTP {self.status}"]


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, query: dict[str, str] | None = None) -> Reply:
        """One request; Unreachable when nothing (or a failing server) answers."""
        import urllib.error  # only when a request is made: `jm --help` stays fast
        import urllib.request

        target = f"{self.url}{path}"
        if query:
            target += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(target, method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return _reply(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as err:
            if err.code >= 500 and err.code != 504:
                raise Unreachable(f"{target} answered HTTP {err.code}") from None
            return _reply(err.code, err.read(), dict(err.headers))
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(f"no REST API answers at {self.url} ({reason})") from None


def _reply(status: int, raw: bytes, headers: dict[str, str]) -> Reply:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise Unreachable(f"HTTP {status} without JSON: not a jm REST API") from None
    return Reply(status, body, headers)


def api_from(args: argparse.Namespace) -> Api | None:
    """The API named by --url / $JM_REST_URL, or None (read Kafka)."""
    url = getattr(args, "url", None) or os.environ.get(URL_ENV)
    if not url:
        return None
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    return Api(url, token)


def falling_back(err: Unreachable) -> None:
    print(f"jm: {err}; reading Kafka instead", file=sys.stderr)


# ------------------------------------------------------------------ commands
# Each returns the exit code, or None when the caller should read Kafka instead.


def list_jobs(api: Api, as_json: bool) -> int | None:
    """``jm list --url``: ``GET /jobs/overview``, printed as ``jm list`` prints the journal."""
    from coordinator.commands.common import format_ms

    try:
        reply = api.call("GET", "/jobs/overview")
    except Unreachable as err:
        falling_back(err)
        return None
    if reply.status != 200:
        return _failed(reply)
    jobs = sorted(reply.body.get("jobs", []), key=lambda j: (j.get("start-time", 0), j["jid"]))
    rows = [
        {"job_id": j["jid"], "name": j.get("name", ""), "status": j.get("state", ""),
         "since": j.get("last-modification", j.get("start-time", 0)),
         "tasks_running": j.get("tasks", {}).get("running", 0),
         "tasks_total": j.get("tasks", {}).get("total", 0),
         "restarts": j.get("jm-restarts"), "waiting_reason": j.get("jm-waiting-reason")}
        for j in jobs
    ]  # fmt: skip
    offset = _offset(reply)
    if as_json:
        print(json.dumps({"offset": offset, "jobs": rows}))
        return 0
    print(f"{'JOB':24} {'STATUS':12} {'TASKS':>9} {'RESTARTS':>8}  SINCE                     NAME")
    for r in rows:
        tasks = f"{r['tasks_running']}/{r['tasks_total']}"
        restarts = "-" if r["restarts"] is None else r["restarts"]
        print(f"{r['job_id']:24} {r['status']:12} {tasks:>9} {restarts:>8}  "
              f"{format_ms(r['since']):25} {r['name']}")  # fmt: skip
    print(f"(journal offset {offset}, from the REST API at {api.url})", file=sys.stderr)
    return 0


def job_status(api: Api, job_id: str, as_json: bool) -> int | None:
    """``jm status --url``: ``GET /jobs/{id}``: status and vertices. A job the API
    does not hold (404: rejected, archived, unknown) is looked up in Kafka."""
    from coordinator.commands.common import format_ms

    try:
        reply = api.call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")
    except Unreachable as err:
        falling_back(err)
        return None
    if reply.status == 404:
        print(f"jm: the REST API at {api.url} holds no job {job_id}; reading Kafka for "
              "its history", file=sys.stderr)  # fmt: skip
        return None
    if reply.status != 200:
        return _failed(reply)
    job = reply.body
    if as_json:
        print(json.dumps(job))
        return 0
    since = job.get("timestamps", {}).get(job.get("state"), job.get("start-time", 0))
    restarts = "" if job.get("jm-restarts") is None else f", restarts {job['jm-restarts']}"
    print(f"{job['jid']}  {job.get('name', '')}\n  status   {job.get('state')} since "
          f"{format_ms(since)}{restarts}")  # fmt: skip
    if job.get("jm-waiting-reason"):
        print(f"  waiting  {job['jm-waiting-reason']}")
    if job.get("vertices"):
        print("  vertices")
    for v in job.get("vertices", []):
        counts = " ".join(f"{k}={n}" for k, n in sorted(v.get("tasks", {}).items()) if n)
        print(f"    {v.get('name', v.get('id'))} x{v.get('parallelism')} "
              f"{v.get('status', '')} {counts}".rstrip())  # fmt: skip
    print(f"(journal offset {_offset(reply)}, from the REST API at {api.url})", file=sys.stderr)
    return 0


#: How often ``jm cancel --url --wait`` asks for the job's status.
POLL_S: Final = 0.2
_TERMINAL: Final = frozenset({"FINISHED", "CANCELED", "FAILED"})


def cancel(api: Api, job_id: str, wait: bool, timeout_s: float) -> int | None:
    """``jm cancel --url``: ``PATCH /jobs/{id}?mode=cancel`` (202: the request is in
    Kafka); with `wait`, ``GET /jobs/{id}`` until the job is CANCELED."""
    import time

    path = f"/jobs/{urllib.parse.quote(job_id, safe='')}"
    try:
        reply = api.call("PATCH", path, {"mode": "cancel"})
    except Unreachable as err:
        falling_back(err)
        return None
    if reply.status != 202:
        return _failed(reply)
    print(f"cancel requested for {job_id} (REST API at {api.url})", file=sys.stderr)
    if not wait:
        return 0
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        try:
            reply = api.call("GET", path)
        except Unreachable as err:
            print(f"jm: {err}", file=sys.stderr)
            return 3
        state = reply.body.get("state") if reply.status == 200 else None
        if state in _TERMINAL:
            print(state)
            return 0 if state == "CANCELED" else 1
        time.sleep(POLL_S)
    print(f"jm: job {job_id} did not reach CANCELED within {timeout_s:g}s (last status: "
          f"{state})", file=sys.stderr)  # fmt: skip
    return 3


def _offset(reply: Reply) -> str:
    for name, value in reply.headers.items():
        if name.lower() == "x-jm-journal-offset":
            return value
    return "?"


def _failed(reply: Reply) -> int:
    errors = reply.errors
    print(f"jm: {errors[0]}" if len(errors) == 1 else "jm: " + "\n  - ".join(errors),
          file=sys.stderr)  # fmt: skip
    return 1
