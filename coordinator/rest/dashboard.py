"""The web dashboard: static files from coordinator/rest/static/, served at ``/``.

Plain HTML, CSS and JavaScript modules, no build step: the browser reads the
same REST API as any client (paths relative to where the page was served, so
the dashboard works at ``/`` and at ``/v1/``). The files are read once, when
the routes are built; only the names in the directory are served, so a
request can never name a path outside it.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from coordinator.rest.api import Route
from coordinator.rest.context import RestContext

CONTENT_TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",  # module scripts need a JavaScript MIME type
    ".svg": "image/svg+xml",
}


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type) of every file the dashboard serves."""
    folder = resources.files("coordinator.rest") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return files


def routes(ctx: RestContext) -> list[Route | web.RouteDef]:
    files = static_files()
    # Always revalidated: a restarted coordinator may serve a newer dashboard.
    headers = {"Cache-Control": "no-cache"}

    async def index(request: web.Request) -> web.Response:
        body, content_type = files["index.html"]
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, headers=headers)

    return [
        Route("GET", "/", index, "The web dashboard"),
        Route("GET", "/static/{name}", static, "The web dashboard's files"),
    ]
