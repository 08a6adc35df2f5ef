"""HTTP: the landing page, /metrics, health and readiness, reload; TLS and basic auth from the web config."""

from __future__ import annotations

import gzip
import io
import logging
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

from exporter import landing
from exporter.config import DEFAULT_RUNBOOK_URL, WebConfig
from exporter.metrics import Metrics
from exporter.metrics.exposition import Exposition
from exporter.queue.reader import QueueSnapshot
from exporter.sources import SourceStatus
from exporter.webconfig import WebSecurity
from exporter.webserver import ConnectionServer, Limits

log = logging.getLogger(__name__)

RELOAD_PATH: Final = "/-/reload"


class App:
    """What the web stage shows and triggers; the daemon fills it in."""

    def __init__(
        self,
        *,
        version: str,
        metrics: Metrics,
        exposition: Exposition,
        statuses: Callable[[], list[SourceStatus]],
        ready: Callable[[], bool],
        reload: Callable[[], str | None],
        healthy: Callable[[], str | None] = lambda: None,
        telemetry_path: str,
        security: WebSecurity,
        queue: Callable[[], QueueSnapshot] | None = None,
        runbook_url: str = DEFAULT_RUNBOOK_URL,
    ) -> None:
        self.version = version
        self.metrics = metrics
        self.exposition = exposition
        self.statuses = statuses
        self.ready = ready
        self.healthy = healthy
        """None when healthy, else why not."""
        self.reload = reload
        self.telemetry_path = telemetry_path
        self.security = security
        self.queue = queue
        """The queue reader's latest snapshot; None when the reader is off."""
        self.runbook_url = runbook_url


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

    def _page_policy(self) -> dict[str, str]:
        """The page's own Content-Security-Policy, unless the web config sets one."""
        if "Content-Security-Policy" in self.server.app.security.headers:
            return {}
        return {"Content-Security-Policy": landing.CONTENT_SECURITY_POLICY}

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
            body, content_type = app.exposition.render(self.headers.get("Accept", ""))
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, gzip.compress(body, 6), content_type, **{"Content-Encoding": "gzip"})
            else:
                self._send(200, body, content_type)
        elif path == "/":
            page = landing.render(
                version=app.version,
                metrics=app.metrics,
                statuses=app.statuses(),
                queue=app.queue,
                runbook_url=app.runbook_url,
                telemetry_path=app.telemetry_path,
            )
            self._send(200, page.encode(), "text/html; charset=utf-8", **self._page_policy())
        elif path == landing.STYLESHEET_PATH:
            self._send(200, landing.CSS.encode(), "text/css; charset=utf-8", **self._page_policy())
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
