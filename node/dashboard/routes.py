"""The dashboard's HTTP routes: the page and its assets (shipped in the package), the event
stream (`/events`, server-sent events) and one snapshot as JSON (`/dashboard.json`).

Every page response carries a Content-Security-Policy that allows only the node's own script,
style and connections: even a string that slipped past the page's escaping could not run.
"""

from __future__ import annotations

import logging
from importlib import resources

from aiohttp import web

from node.dashboard.feed import DashboardFeed

log = logging.getLogger(__name__)

ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "charts.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_dashboard(app: web.Application, feed: DashboardFeed) -> None:
    folder = resources.files("node.dashboard") / "assets"
    assets = {name: folder.joinpath(name).read_bytes() for name in ASSETS}

    def asset(name: str) -> web.Response:
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=HEADERS)

    async def index(_: web.Request) -> web.Response:
        return asset("index.html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets or name == "index.html":
            raise web.HTTPNotFound()
        return asset(name)

    async def snapshot(_: web.Request) -> web.Response:
        return web.Response(body=feed.current(), content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        queue = feed.subscribe()
        if queue is None:
            detail = f"{feed.config.max_clients} dashboard streams are open already"
            return web.json_response({"error": "too_many_clients", "detail": detail}, status=503)
        response = web.StreamResponse(
            headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 3000\n\n")
            item: bytes | None = feed.current()
            while item is not None:
                await response.write(b"event: snapshot\ndata: " + item + b"\n\n")
                item = await queue.get()
        except ConnectionError:
            pass  # the client went away
        finally:
            feed.unsubscribe(queue)
        return response

    async def close_streams(_: web.Application) -> None:
        feed.close()

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/{name}", static)
    app.router.add_get("/dashboard.json", snapshot)
    app.router.add_get("/events", events)
    app.on_shutdown.append(close_streams)
