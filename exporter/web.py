"""HTTP: the landing page, /metrics, health and readiness, reload; TLS and basic auth from the web config."""

from __future__ import annotations

import gzip
import html
import io
import logging
import ssl
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.config import WebConfig
from exporter.metrics import Metrics
from exporter.sources import SourceStatus
from exporter.webconfig import WebSecurity
from exporter.webserver import ConnectionServer, Limits

log = logging.getLogger(__name__)

RELOAD_PATH: Final = "/-/reload"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1d2733;max-width:1100px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #dde3ea}
th{background:#f2f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#66717d}.zero{color:#a0a8b0}code{font-size:.95em}td.t{white-space:nowrap}
#categories{width:auto;min-width:28em}th.n{text-align:right}
"""


class App:
    """What the web stage shows and triggers; the daemon fills it in."""

    def __init__(
        self,
        *,
        version: str,
        metrics: Metrics,
        registry: CollectorRegistry,
        statuses: Callable[[], list[SourceStatus]],
        ready: Callable[[], bool],
        reload: Callable[[], str | None],
        healthy: Callable[[], str | None] = lambda: None,
        telemetry_path: str,
        security: WebSecurity,
    ) -> None:
        self.version = version
        self.metrics = metrics
        self.registry = registry
        self.statuses = statuses
        self.ready = ready
        self.healthy = healthy
        """None when healthy, else why not."""
        self.reload = reload
        self.telemetry_path = telemetry_path
        self.security = security


class Handler(BaseHTTPRequestHandler):
    """Answers one request whose head the connection server has read; the response is collected in wfile."""

    server: Server  # type: ignore[assignment]  # not a socketserver: the head comes as `request`
    request: bytes
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.rfile = io.BytesIO(self.request)
        self.wfile = io.BytesIO()

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        pass  # wfile stays readable: it holds the response

    def handle_expect_100(self) -> bool:
        return True  # the body, if any, was read before this request was handed over

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", **extra: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.app.security.headers, **extra}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.server.app.security.authorised(self.headers.get("Authorization")):
            return True
        self._send(401, b"Unauthorized\n", **{"WWW-Authenticate": 'Basic realm="gmail-rejection-exporter"'})
        return False

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        if not self._authorised():
            return
        app = self.server.app
        path = self._path()
        if path == app.telemetry_path:
            if not all(status.resumed for status in app.statuses()):
                # Counters restored from the state file lag what was served before a crash until the lines
                # logged since are read again: served now, they would go down, and Prometheus sees a reset.
                self._send(503, b"Not ready: reading what was logged while the exporter was down\n")
                return
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(app.registry)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, gzip.compress(body, 6), content_type, **{"Content-Encoding": "gzip"})
            else:
                self._send(200, body, content_type)
        elif path == "/":
            self._send(200, render_landing(app).encode(), "text/html; charset=utf-8")
        elif path == "/-/healthy":
            problem = app.healthy()
            if problem is None:
                self._send(200, b"Healthy\n")
            else:
                self._send(503, f"Unhealthy: {problem}\n".encode())
        elif path == "/-/ready":
            if app.ready():
                self._send(200, b"Ready\n")
            else:
                self._send(503, b"Not ready: opening sources\n")
        elif path == RELOAD_PATH:
            self._not_allowed()
        else:
            self._send(404, b"Not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self._path() != RELOAD_PATH:
            self._not_allowed()
            return
        error = self.server.app.reload()
        if error is None:
            self._send(200, b"Reloaded\n")
        else:
            self._send(500, f"Reload failed: {error}\n".encode())

    def _refuse_method(self) -> None:
        if self._authorised():
            self._not_allowed()

    do_PUT = do_DELETE = do_PATCH = _refuse_method

    def _not_allowed(self) -> None:
        allowed = "POST" if self._path() == RELOAD_PATH else "GET, HEAD"
        self._send(405, f"Method not allowed; use {allowed}\n".encode(), Allow=allowed)


class Server(ConnectionServer):
    """Serves the app over HTTP or, with a TLS config, HTTPS."""

    def __init__(self, host: str, port: int, app: App, limits: Limits | None = None) -> None:
        self.app = app
        self.tls_context: ssl.SSLContext | None = None
        self.set_security(app.security)
        super().__init__(host, port, self.respond, limits=limits, tls=lambda: self.tls_context)

    def set_security(self, security: WebSecurity) -> None:
        """Applies a (re)loaded web config to the next connections."""
        self.app.security = security
        self.tls_context = security.tls.context() if security.tls is not None else None

    def respond(self, head: bytes, client: tuple[str, int]) -> tuple[bytes, bool]:
        """The response to a request head, and whether the connection stays open for another request."""
        handler = Handler(head, client, self)  # type: ignore[arg-type]
        assert isinstance(handler.wfile, io.BytesIO)
        return handler.wfile.getvalue(), not handler.close_connection


def serve(host: str, port: int, app: App, settings: WebConfig | None = None) -> Server:
    """Binds (falling back to IPv4 where IPv6 is missing) and serves in background threads."""
    settings = settings or WebConfig()
    limits = Limits(read_timeout=settings.read_timeout, max_connections=settings.max_connections)
    try:
        server = Server(host, port, app, limits)
    except OSError as err:
        if host or err.errno not in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL: no IPv6 here
            raise
        server = Server("0.0.0.0", port, app, limits)
    server.start()
    return server


def stop(server: Server) -> None:
    """Stops serving and closes the socket and every connection."""
    server.stop()


def _age(then: float, now: float) -> str:
    if then <= 0:
        return "never"
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def render_landing(app: App) -> str:
    """The landing page: plain HTML a person can read, no JavaScript."""
    now = time.time()
    statuses = app.statuses()
    with app.metrics.lock:
        categories = app.metrics.by_category()
        recent = app.metrics.recent()[::-1]
        consecutive = app.metrics.consecutive
    e = html.escape
    source_rows = "".join(
        f"<tr><td><code>{e(s.name)}</code></td><td class='state {e(s.state)}'>{e(s.state.replace('_', ' '))}"
        f"{': ' + e(s.detail) if s.detail and s.state != 'open' else ''}</td><td class=n>{s.offset}</td><td class=n>{s.size}</td><td class=n>{max(0, s.size - s.offset)}</td>"
        f"<td>{_age(s.last_read, now)}</td></tr>"
        for s in statuses
    )
    total = sum(categories.values())
    category_rows = "".join(
        f"<tr class='{'zero' if count == 0 else ''}'><td>{e(name)}</td><td class=n>{int(count)}</td></tr>"
        for name, count in sorted(categories.items(), key=lambda item: (-item[1], item[0]))
    )
    recent_rows = "".join(
        f"<tr><td class=t>{e(time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.timestamp)))}</td>"
        f"<td>{e(r.category)}</td><td>{e(r.reason)}</td><td class=t>{e(r.code)} {e(r.enhanced_code)}</td>"
        f"<td>{e(r.text)}</td></tr>"
        for r in recent
    )
    recent_rows = recent_rows or "<tr><td colspan=5 class=muted>No rejection yet.</td></tr>"
    metrics_link = e(app.telemetry_path)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Gmail rejection exporter</title>
<style>{_CSS}</style></head><body>
<h1>Gmail rejection exporter</h1>
<p class=muted>Version {e(app.version)} · <a href="{metrics_link}">Metrics</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
<h2>Sources</h2>
<table id=sources><tr><th>Source</th><th>State</th><th>Read up to (bytes)</th><th>Size (bytes)</th>
<th>Behind (bytes)</th><th>Last line</th></tr>{source_rows}</table>
<h2>Rejections by category</h2>
<p>{int(total)} rejections since counting began; {consecutive} since the last accepted delivery.</p>
<table id=categories><tr><th>Category</th><th class=n>Rejections</th></tr>{category_rows}</table>
<h2>Latest rejections</h2>
<table id=recent><tr><th>Time (UTC, log)</th><th>Category</th><th>Reason</th><th>Code</th><th>Reply</th></tr>
{recent_rows}</table>
</body></html>
"""
