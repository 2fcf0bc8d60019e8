"""Requests that become events (submit, cancel, savepoints): any replica accepts them."""

from __future__ import annotations

from aiohttp import web

from coordinator.rest.api import Route
from coordinator.rest.context import RestContext


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    return []
