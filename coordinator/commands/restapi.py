"""``jm list``, ``jm status`` and ``jm cancel`` through a replica's REST API.

With ``--url`` (or ``$JM_REST_URL``) these commands ask that replica first: no
journal to fold, the answer of a replica that has it folded already. When no
API answers there (nothing listening, a timeout, a server error) they say so on
stderr and read Kafka as they do without ``--url``. Standard library only
(urllib): ``jm --help`` imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
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
