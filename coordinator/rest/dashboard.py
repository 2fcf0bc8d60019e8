"""The web dashboard: static files from coordinator/rest/static/, served at ``/``."""

from __future__ import annotations

from aiohttp import web

from coordinator.rest.api import Route
from coordinator.rest.context import RestContext


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    return []
