"""The aiohttp application of one replica: route tables, errors, the offset header.

Every route is served at its path and under ``/v1/`` (Flink's CLI prefixes
``/v1/``). Errors are Flink's ``{"errors": [...]}``; every answer carries the
journal offset the replica's state reflects (``X-JM-Journal-Offset``), so a
client reading a standby knows how current the answer is.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel

from coordinator.rest import archived, artifacts, dashboard, reads, writes
from coordinator.rest.api import OFFSET_HEADER, ApiError, Handler, Route
from coordinator.rest.context import RestContext

log = logging.getLogger(__name__)

VERSION_PREFIX: Final = "/v1"
CONTEXT_KEY: Final = web.AppKey("rest_context", RestContext)


def _error(status: int, *errors: str) -> web.Response:
    return web.Response(
        text=json.dumps({"errors": list(errors)}), status=status, content_type="application/json"
    )


def _middleware(ctx: RestContext) -> Any:
    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as err:
            response = _error(err.status, *err.errors)
        except web.HTTPException as err:
            if err.status < 400:
                raise
            # Unknown paths (404) and methods (405) in Flink's shape, not aiohttp's text.
            reason = "Not found: " + request.path if err.status == 404 else err.reason
            response = _error(err.status, reason)
            if err.status == 405 and "Allow" in err.headers:
                response.headers["Allow"] = err.headers["Allow"]
        except Exception as err:  # one bad request must not take the server down
            log.exception("REST %s %s failed", request.method, request.path)
            response = _error(500, "Internal server error.", f"{type(err).__name__}: {err}")
        response.headers[OFFSET_HEADER] = str(ctx.offset)
        return response

    return answer


def _all_routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    return [
        *reads.routes(ctx),
        *writes.routes(ctx),
        *artifacts.routes(ctx),
        *archived.routes(ctx),
        *dashboard.routes(ctx),
    ]


def build_app(ctx: RestContext) -> web.Application:
    """The REST application of `ctx`'s replica: every route at its path and under /v1."""
    app = web.Application(middlewares=[_middleware(ctx)])
    app[CONTEXT_KEY] = ctx
    table = _all_routes(ctx)
    document = openapi(table)

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    table.append(Route("GET", "/openapi.json", openapi_json, "This OpenAPI document"))
    document["paths"]["/openapi.json"] = {"get": {"summary": "This OpenAPI document"}}
    for route in table:
        for prefix in ("", VERSION_PREFIX):
            app.router.add_route(route.method, prefix + route.path, route.handler)
    return app


def openapi(table: list[Route | web.RouteDef]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `table`, its schemas generated from the same
    pydantic models the handlers answer with (Flink's field names: by alias)."""
    paths: dict[str, dict[str, Any]] = {}
    models: dict[str, type[BaseModel]] = {}
    for route in table:
        operation: dict[str, Any] = {"summary": getattr(route, "summary", "")}
        if isinstance(route, Route):
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(route.path)
            ]
            params += [
                {"name": name, "in": "query", "required": False, "description": text,
                 "schema": {"type": "string"}}
                for name, text in route.query.items()
            ]  # fmt: skip
            if params:
                operation["parameters"] = params
            if route.request is not None:
                models[route.request.__name__] = route.request
                body = {"$ref": f"#/components/schemas/{route.request.__name__}"}
                operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
            answer: dict[str, Any] = {"description": "OK"}
            if route.response is not None:
                models[route.response.__name__] = route.response
                ref: dict[str, Any] = {"$ref": f"#/components/schemas/{route.response.__name__}"}
                schema = {"type": "array", "items": ref} if route.many else ref
                answer["content"] = {"application/json": {"schema": schema}}
            operation["responses"] = {str(route.status): answer, "default": _ERROR_ANSWER}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kafka-jobmanager REST API",
            "version": "1",
            "description": "Flink's REST paths and field names, plus the cluster's own; "
            "every path is also served under /v1. See docs/rest.md.",
        },
        "paths": paths,
        "components": {"schemas": _schemas(models)},
    }


_ERROR_ANSWER: Final = {
    "description": "Flink's error shape",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


class ErrorResponse(BaseModel):
    errors: list[str]


def _schemas(models: dict[str, type[BaseModel]]) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    mode: Literal["serialization"] = "serialization"
    classes: list[type[BaseModel]] = [*models.values(), ErrorResponse]
    everything = [(m, mode) for m in classes]
    _, top = models_json_schema(
        everything, by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


@dataclass
class RestServer:
    """A started server: where it listens, and how to stop it."""

    runner: web.AppRunner
    context: RestContext
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.context.close()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket of host:port (0: a free port), bound before anything else
    starts so a taken port stops the process at once (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


async def start_rest(
    ctx: RestContext, host: str, port: int, sock: socket.socket | None = None
) -> RestServer:
    """Listen on host:port (0: a free port, see ``RestServer.port``), or on `sock`
    (from ``bind``)."""
    runner = web.AppRunner(build_app(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite = (
        web.TCPSite(runner, host, port) if sock is None else web.SockSite(runner, sock)
    )
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return RestServer(runner, ctx, host, bound)
