"""What every route table shares: the route record, API errors, JSON answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from pydantic import BaseModel

#: The journal offset an answer reflects (every replica sends it; docs/rest.md).
OFFSET_HEADER: Final = "X-JM-Journal-Offset"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One endpoint: served at `path` and at ``/v1`` + `path`; `response` (a pydantic
    model, or None for plain text) and `query` (name -> description) feed the
    OpenAPI document."""

    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None = None
    query: dict[str, str] = field(default_factory=dict)
    request: type[BaseModel] | None = None
    status: int = 200
    many: bool = False  # the answer is a JSON list of `response`


class ApiError(Exception):
    """An answer in Flink's error shape: ``{"errors": [...]}`` with `status`."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors)


def not_found(what: str) -> ApiError:
    return ApiError(404, what)


def bad_request(*reasons: str) -> ApiError:
    return ApiError(400, *reasons)


def json_answer(model: BaseModel, status: int = 200) -> web.Response:
    """A model as JSON with its aliases (Flink's field names)."""
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
    )


def int_query(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
    """An integer query parameter (400 naming it when it is not one)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name}: {raw!r} is not an integer") from None
    if value < minimum:
        raise bad_request(f"{name}: must be at least {minimum}, not {value}")
    return value
