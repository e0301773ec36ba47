"""The agent console's listener: HTTPS on 127.0.0.1 with the hub's certificate and no client
certificate asked for, serving the console page (``central_link/hq/console/``) and the agents' API.

Apart from the nodes' listener on purpose: that one demands a certificate of the deployment's CA,
which an agent's browser does not have (agents log in with a password), and a node has no business
with the agents' routes. The page is static and holds no data: everything it shows comes from the
API, which checks the session on every request. A strict Content-Security-Policy allows only the
console's own scripts, styles and connections (no CDN, no inline script, no framing).
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from ..tls import console_context
from .web import AgentApi

log = logging.getLogger("central_link.hq")
PAGE_DIR = Path(__file__).with_name("console")
FILES = {"index.html": "text/html", "console.js": "text/javascript", "console.css": "text/css"}
SECURITY = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
}


@web.middleware
async def _security_headers(request: web.Request, handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update({k: v for k, v in SECURITY.items() if k not in exc.headers})
        raise
    if not resp.prepared:  # a WebSocket is prepared already: its headers have gone
        resp.headers.update({k: v for k, v in SECURITY.items() if k not in resp.headers})
    return resp


def console_app(api: AgentApi) -> web.Application:
    """The page at ``/agent/`` (``/`` leads there) and the agents' API under ``/agent/``."""
    app = web.Application(middlewares=[_security_headers])
    pages = {name: (PAGE_DIR / name).read_bytes() for name in FILES}  # read once: a bad install fails at start

    def serve(name: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=pages[name], content_type=FILES[name], charset="utf-8")
        return handler

    async def to_console(request: web.Request) -> web.Response:
        raise web.HTTPFound("/agent/")

    app.router.add_get("/", to_console)
    app.router.add_get("/agent", to_console)
    app.router.add_get("/agent/", serve("index.html"))
    for name in FILES:
        if name != "index.html":
            app.router.add_get(f"/agent/{name}", serve(name))
    api.add_routes(app)
    return app


class ConsoleListener:
    """aiohttp's own TLS site: unlike the nodes' listener it has no refusal to name (a browser that
    does not trust the certificate yet simply closes the connection), so nothing of ours is needed."""

    def __init__(self, api: AgentApi, cert: Path, key: Path) -> None:
        self.api = api
        self._ctx = console_context(cert, key)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful when ``port`` is 0)."""
        self._runner = web.AppRunner(console_app(self.api), handle_signals=False, access_log=None,
                                     shutdown_timeout=3.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=self._ctx).start()
        return self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
