"""The status HTTP endpoint (aiohttp): /healthz, /status, /peers, /metrics and the dashboard.

The server knows nothing of the node: it is given callables that build the JSON documents.
Errors (unknown path, wrong method, a failing provider) are answered as JSON with a reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from node.dashboard.feed import DashboardConfig, DashboardFeed
from node.dashboard.routes import add_dashboard
from node.metrics import NodeMetrics

log = logging.getLogger(__name__)

Provider = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(kw_only=True, slots=True)
class HttpConfig:
    listen: str = "127.0.0.1:8420"
    """HOST:PORT to serve on; port 0 picks a free port (written to the home's endpoints file)."""
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    """The live dashboard at `/` (read-only; served where the status endpoint is)."""

    def __post_init__(self) -> None:
        parse_listen(self.listen)

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"http.listen must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def build_app(
    *,
    status: Provider,
    peers: Provider,
    metrics: NodeMetrics,
    dashboard: DashboardFeed | None = None,
) -> web.Application:
    @web.middleware
    async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        label = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            response = _error(exc.status, code, f"{request.method} {request.path}: {exc.reason}")
        except Exception:
            log.exception("status endpoint %s failed", request.path)
            response = _error(500, "internal_error", f"{request.path} failed; see the node's log")
        metrics.http_requests.labels(label, str(response.status)).inc()
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def get_status(_: web.Request) -> web.Response:
        return web.json_response(status())

    async def get_peers(_: web.Request) -> web.Response:
        return web.json_response(peers())

    async def get_metrics(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app = web.Application(middlewares=[errors_as_json])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", get_status)
    app.router.add_get("/peers", get_peers)
    app.router.add_get("/metrics", get_metrics)
    if dashboard is not None:
        add_dashboard(app, dashboard)
    return app


class StatusServer:
    """Runs the app on a TCP site; `url` is known once started (also with port 0)."""

    def __init__(self, config: HttpConfig, app: web.Application) -> None:
        self._config = config
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            msg = f"cannot serve HTTP on {self._config.listen}: {exc.strerror}"
            raise OSError(exc.errno, msg) from None
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()
