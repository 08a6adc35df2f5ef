"""HTTP: the landing page, /metrics, health and readiness, reload; TLS and basic auth from the web config."""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.metrics import Metrics
from exporter.sources import SourceStatus
from exporter.webconfig import WebSecurity

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0

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
    """Routes one request."""

    server: Server
    protocol_version = "HTTP/1.1"

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

    def do_GET(self) -> None:
        if not self._authorised():
            return
        app = self.server.app
        path = self.path.split("?", 1)[0]
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
        elif path == "/-/reload":
            self._send(405, b"Use POST\n", Allow="POST")
        else:
            self._send(404, b"Not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path.split("?", 1)[0] != "/-/reload":
            self._send(405, b"Method not allowed\n")
            return
        error = self.server.app.reload()
        if error is None:
            self._send(200, b"Reloaded\n")
        else:
            self._send(500, f"Reload failed: {error}\n".encode())

    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    """A threading HTTP server; with TLS, each connection's handshake runs in its own thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in host or not host else socket.AF_INET
        self._any_address = not host
        self.tls_context: ssl.SSLContext | None = None
        self.set_security(app.security)
        super().__init__((host or "::", port), Handler)

    def server_bind(self) -> None:
        if self._any_address:
            # One socket for IPv4 and IPv6: ":9791" means every address, like Go's net.Listen.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def set_security(self, security: WebSecurity) -> None:
        """Applies a (re)loaded web config to the next connections."""
        self.app.security = security
        self.tls_context = security.tls.context() if security.tls is not None else None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hangs up mid-response is not worth a traceback on stderr.
        log.debug("request from %s failed", client_address, exc_info=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.tls_context
        if context is not None:
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as err:
                log.debug("TLS handshake with %s failed: %s", client_address, err)
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


def serve(host: str, port: int, app: App) -> Server:
    """Binds (falling back to IPv4 where IPv6 is missing) and serves in a background thread."""
    try:
        server = Server(host, port, app)
    except OSError as err:
        if host or err.errno not in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL: no IPv6 here
            raise
        server = Server("0.0.0.0", port, app)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": IDLE_POLL_SECONDS}, name="web", daemon=True
    ).start()
    return server


IDLE_POLL_SECONDS = 30.0
"""How often the idle server loop wakes on its own; stop() wakes it at once."""


def stop(server: Server) -> None:
    """Stops serving and closes the socket without waiting for the poll interval: serve_forever only
    notices shutdown() when select() returns, so a throwaway connection makes it return."""
    stopper = threading.Thread(target=server.shutdown, name="web-stop", daemon=True)
    stopper.start()
    host, port = str(server.server_address[0]), int(server.server_address[1])
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if server.address_family == socket.AF_INET else "::1"
    with contextlib.suppress(OSError):
        socket.create_connection((host, port), timeout=1).close()
    stopper.join(IDLE_POLL_SECONDS)
    server.server_close()


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
