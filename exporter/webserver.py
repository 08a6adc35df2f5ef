"""The HTTP server's connections: one thread owns every socket (accepting, TLS handshakes, reading requests,
writing responses) and a few worker threads turn complete requests into responses.

Modelled on Go's http.Server and netutil.LimitListener as Prometheus uses them (--web.read-timeout,
--web.max-connections): every wait on a client has a deadline, a client that is idle or slow costs one descriptor
and never a thread, connections stay fewer than the descriptor limit allows so the logs and the state file can
always be opened, and accept errors back off instead of spinning.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import logging
import math
import os
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Final

log = logging.getLogger(__name__)

Address = tuple[str, int]
Respond = Callable[[bytes, Address], tuple[bytes, bool]]
"""Turns a request's head (request line and headers) into a response and whether the connection stays open."""

ACCEPT_BACKOFF_FIRST: Final = 0.005
ACCEPT_BACKOFF_MAX: Final = 1.0
"""Pauses after an accept() that failed for want of resources, doubling from the first to the last (as Go's)."""
DESCRIPTOR_RESERVE: Final = 32
"""Descriptors kept out of the connections' reach (at least this, or an eighth of the limit): followed logs and
their rotated generations, the state file and its temporary copy, inotify, journalctl's pipe."""
SWEEP_GRANULARITY: Final = 0.05
"""Deadlines are checked at most this often, so many connections cost few scans."""
SEND_CHUNK: Final = 16 * 1024
"""At most one TLS record per send: a non-blocking TLS write is retried with the same bytes."""


@dataclass(frozen=True)
class Limits:
    """How long a client may keep the server waiting, and how much of it one client may hold."""

    read_timeout: float = 30.0
    """For a TLS handshake, for a request (head and body) from its first byte, and for a keep-alive connection
    waiting for its next request."""
    write_timeout: float = 30.0
    """For writing one response."""
    max_connections: int = 512
    max_head_bytes: int = 16 * 1024
    """Request line and headers: what this server reads needs a few hundred bytes."""
    max_body_bytes: int = 64 * 1024
    """No endpoint reads a body; one this small is read and dropped so the connection can be kept."""
    workers: int = 4
    """Threads answering requests. A wrong password costs a bcrypt check (which releases the GIL) and a reload
    reads files: with a few, a scrape does not wait behind one of them."""


def connection_bound(wanted: int) -> int:
    """`wanted`, lowered so that connections leave the descriptors the rest of the process needs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = DESCRIPTOR_RESERVE
    bound = max(1, min(wanted, soft - in_use - max(DESCRIPTOR_RESERVE, soft // 8)))
    if bound < wanted:
        log.warning(
            "web.max-connections %d lowered to %d: the descriptor limit (RLIMIT_NOFILE, systemd's LimitNOFILE=) "
            "is %d and the logs and the state file need some",
            wanted,
            bound,
            soft,
        )
    return bound


class _State(Enum):
    HANDSHAKE = "handshake"
    READ = "read"
    """Waiting for (the rest of) a request head; idle between keep-alive requests."""
    BODY = "body"
    """Reading and dropping a request body."""
    BUSY = "busy"
    """A worker is answering the request."""
    WRITE = "write"
    DRAIN = "drain"
    """Response sent and output closed; reading what the client still sends until it closes too, so that closing
    does not reset the connection before the client has read the response."""


class _Connection:
    """One client connection and where it stands."""

    def __init__(self, sock: socket.socket, address: Address, state: _State, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.state = state
        self.deadline = deadline
        self.events = 0
        """Events registered with the selector (0: not registered)."""
        self.buffer = bytearray()
        """Received bytes not yet part of a dispatched request."""
        self.idle = False
        """Waiting for the first byte of a keep-alive request: its deadline restarts when that byte comes."""
        self.body_left = 0
        self.head = b""
        self.out = memoryview(b"")
        self.close_after = False
        self.closed = False


_LISTENER: Final = "listener"
_WAKE: Final = "wake"


class ConnectionServer:
    """Listens on host:port and serves every connection with `respond`, within `limits`."""

    def __init__(
        self,
        host: str,
        port: int,
        respond: Respond,
        *,
        limits: Limits | None = None,
        tls: Callable[[], ssl.SSLContext | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = _listen(host, port)
        self.address_family = self._listener.family
        self.server_address: Address = self._listener.getsockname()[:2]
        self._respond = respond
        self._limits = limits = limits or Limits()
        self._tls = tls
        self._clock = clock
        self._bound = connection_bound(limits.max_connections)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        for sock in (self._wake_read, self._wake_write):
            sock.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, _WAKE)
        self._connections: set[_Connection] = set()
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        """Connections waiting on their client, longest waiting first: the first to close when the bound is
        reached (as nginx reuses idle keep-alive connections when it runs out)."""
        self._sweep_at = math.inf
        self._accepting = False
        self._paused_until = 0.0
        """While not accepting: when to try again (inf: when a connection closes)."""
        self._accept_delay = 0.0
        self._accept_errors: set[int] = set()
        """Errnos of the accept failures logged since the last successful accept."""
        self._jobs: queue.SimpleQueue[tuple[_Connection, bytes] | None] = queue.SimpleQueue()
        self._done: list[tuple[_Connection, bytes, bool]] = []
        self._done_lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Serves in background threads until stop()."""
        self._accept_again()
        self._threads = [threading.Thread(target=self._run, name="web", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"web-worker-{i}", daemon=True)
            for i in range(self._limits.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Closes the listening socket and every connection; a request being answered is abandoned."""
        self._stopping = True
        self._wake()
        for _ in range(self._limits.workers):
            self._jobs.put(None)
        if self._threads:
            self._threads[0].join(timeout)
        else:
            self._close_all()

    # The event loop; everything below runs in the "web" thread, except _work and _wake.

    def _run(self) -> None:
        try:
            while not self._stopping:
                wake_at = min(self._sweep_at, self._paused_until or math.inf)
                timeout = None if wake_at == math.inf else max(0.0, wake_at - self._clock())
                for key, _ in self._selector.select(timeout):
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        self._finish_responses()
                    elif not key.data.closed:
                        self._advance(key.data)
                now = self._clock()
                if now >= self._sweep_at:
                    self._sweep(now)
                if self._paused_until and now >= self._paused_until:
                    self._accept_again()
        finally:
            self._close_all()

    def _accept(self) -> None:
        for _ in range(64):  # then let the other sockets have a turn
            if len(self._connections) >= self._bound and not self._waiting:
                # Every connection is being answered: new ones wait in the kernel's queue until one closes.
                self._pause_accepting(math.inf)
                return
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ECONNABORTED:  # the client gave up while queued
                    continue
                self._back_off(err.errno or 0)
                return
            if self._accept_errors:
                log.info("accepting connections again")
                self._accept_errors.clear()
            self._accept_delay = 0.0
            if len(self._connections) >= self._bound:
                self._evict("the connection limit is reached")
            self._open(sock, (str(address[0]), int(address[1])))

    def _back_off(self, number: int) -> None:
        """Pauses accepting instead of retrying at once: a failing accept() is readable again at once."""
        if number not in self._accept_errors:
            self._accept_errors.add(number)
            log.warning(
                "cannot accept connections: %s; retrying after pauses growing to %.0f s",
                os.strerror(number),
                ACCEPT_BACKOFF_MAX,
            )
        if number in (errno.EMFILE, errno.ENFILE):
            self._evict("descriptors ran out")
        self._accept_delay = min(max(2 * self._accept_delay, ACCEPT_BACKOFF_FIRST), ACCEPT_BACKOFF_MAX)
        self._pause_accepting(self._clock() + self._accept_delay)

    def _pause_accepting(self, until: float) -> None:
        if self._accepting:
            self._selector.unregister(self._listener)
            self._accepting = False
        self._paused_until = until

    def _accept_again(self) -> None:
        self._paused_until = 0.0
        if not self._accepting and not self._stopping:
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
            self._accepting = True

    def _evict(self, why: str) -> None:
        if self._waiting:
            oldest = next(iter(self._waiting))
            self._close(oldest, f"{why}; closing the connection that waited longest")

    def _open(self, sock: socket.socket, address: Address) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            context = self._tls()
            if context is not None:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as err:
            log.debug("connection from %s failed: %s", address, err)
            sock.close()
            return
        state = _State.HANDSHAKE if context is not None else _State.READ
        conn = _Connection(sock, address, state, self._deadline(self._limits.read_timeout))
        self._connections.add(conn)
        self._wait_on_client(conn)
        self._advance(conn)

    def _deadline(self, seconds: float) -> float:
        deadline = self._clock() + seconds
        self._sweep_at = min(self._sweep_at, deadline)
        return deadline

    def _sweep(self, now: float) -> None:
        next_deadline = math.inf
        for conn in list(self._connections):
            if conn.deadline <= now:
                self._close(conn, f"timed out in state {conn.state.value}")
            else:
                next_deadline = min(next_deadline, conn.deadline)
        self._sweep_at = max(next_deadline, now + SWEEP_GRANULARITY) if next_deadline < math.inf else math.inf

    def _advance(self, conn: _Connection) -> None:
        """Moves the connection on as far as its socket allows, then waits on the socket."""
        try:
            if conn.state is _State.HANDSHAKE:
                self._handshake(conn)
            elif conn.state in (_State.READ, _State.BODY, _State.DRAIN):
                self._read(conn)
            elif conn.state is _State.WRITE:
                self._write(conn)
        except ssl.SSLWantReadError:
            self._wait(conn, selectors.EVENT_READ)
        except BlockingIOError:
            self._wait(conn, selectors.EVENT_WRITE if conn.state is _State.WRITE else selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._wait(conn, selectors.EVENT_WRITE)
        except OSError as err:  # ssl.SSLError included: a failed handshake, a reset, a broken pipe
            self._close(conn, f"failed: {err}")

    def _handshake(self, conn: _Connection) -> None:
        assert isinstance(conn.sock, ssl.SSLSocket)
        conn.sock.do_handshake()
        conn.state = _State.READ
        conn.deadline = self._deadline(self._limits.read_timeout)
        self._wait_on_client(conn)
        self._read(conn)

    def _read(self, conn: _Connection) -> None:
        limits = self._limits
        while not conn.closed:
            if conn.state is _State.READ and self._take_request(conn):
                return
            if conn.state is _State.BODY:
                size = min(conn.body_left, 64 * 1024)
            elif conn.state is _State.DRAIN:
                size = 64 * 1024
            else:
                size = limits.max_head_bytes + 1 - len(conn.buffer)
            data = conn.sock.recv(size)
            if not data:
                self._close(conn, "closed by the client" if conn.state is _State.DRAIN else "client hung up")
                return
            if conn.state is _State.BODY:
                conn.body_left -= len(data)
                if conn.body_left == 0:
                    self._dispatch(conn)
                    return
            elif conn.state is _State.READ:
                if conn.idle:  # a keep-alive request begins: it gets a whole read timeout
                    conn.idle = False
                    conn.deadline = self._deadline(limits.read_timeout)
                conn.buffer += data

    def _take_request(self, conn: _Connection) -> bool:
        """Whether the buffer holds a whole request head (now dispatched or refused), else False."""
        buffer = conn.buffer
        while buffer and buffer[0] in b"\r\n":  # stray line ends between requests
            del buffer[:1]
        if buffer:
            conn.idle = False
        ends = [at + len(blank) for blank in (b"\n\r\n", b"\n\n") if (at := buffer.find(blank)) >= 0]
        end = min(ends, default=-1)
        if end < 0:
            if len(buffer) <= self._limits.max_head_bytes:
                return False
            first_line_ended = b"\n" in buffer[: self._limits.max_head_bytes]
            self._refuse(
                conn,
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                if first_line_ended
                else HTTPStatus.REQUEST_URI_TOO_LONG,
            )
            return True
        if end > self._limits.max_head_bytes:
            self._refuse(conn, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return True
        conn.head = bytes(buffer[:end])
        del buffer[:end]
        length = _body_length(conn.head)
        if isinstance(length, HTTPStatus):
            self._refuse(conn, length)
        elif length > self._limits.max_body_bytes:
            self._refuse(conn, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        else:
            present = min(length, len(buffer))
            del buffer[:present]
            conn.body_left = length - present
            if conn.body_left:
                conn.state = _State.BODY
                return False
            self._dispatch(conn)
        return True

    def _dispatch(self, conn: _Connection) -> None:
        conn.state = _State.BUSY
        conn.deadline = math.inf
        self._unwait(conn)
        self._waiting.pop(conn, None)
        self._jobs.put((conn, conn.head))

    def _refuse(self, conn: _Connection, status: HTTPStatus) -> None:
        body = f"{status.phrase}\n".encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        log.debug("refused a request from %s: %d %s", conn.address, status.value, status.phrase)
        self._waiting.pop(conn, None)
        conn.buffer.clear()
        self._send(conn, head.encode() + body, keep_open=False)

    def _send(self, conn: _Connection, response: bytes, *, keep_open: bool) -> None:
        conn.state = _State.WRITE
        conn.out = memoryview(response)
        conn.close_after = not keep_open
        conn.deadline = self._deadline(self._limits.write_timeout)
        self._advance(conn)

    def _write(self, conn: _Connection) -> None:
        while conn.out:
            sent = conn.sock.send(conn.out[:SEND_CHUNK])
            conn.out = conn.out[sent:]
        if conn.close_after:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.state = _State.DRAIN
            conn.buffer.clear()
            conn.deadline = self._deadline(min(2.0, self._limits.read_timeout))
        else:
            conn.state = _State.READ
            conn.idle = True
            conn.deadline = self._deadline(self._limits.read_timeout)
        self._wait_on_client(conn)
        self._read(conn)

    def _wait_on_client(self, conn: _Connection) -> None:
        """Marks the connection as the newest one waiting on its client, the last to close at the bound."""
        self._waiting.pop(conn, None)
        self._waiting[conn] = None
        if self._paused_until == math.inf:
            self._accept_again()

    def _wait(self, conn: _Connection, events: int) -> None:
        if conn.closed or conn.events == events:
            return
        if conn.events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._selector.register(conn.sock, events, conn)
        conn.events = events

    def _unwait(self, conn: _Connection) -> None:
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0

    def _close(self, conn: _Connection, why: str) -> None:
        if conn.closed:
            return
        log.debug("connection from %s %s", conn.address, why)
        conn.closed = True
        self._unwait(conn)
        self._connections.discard(conn)
        self._waiting.pop(conn, None)
        conn.sock.close()
        if self._paused_until == math.inf:
            self._accept_again()

    def _close_all(self) -> None:
        for conn in list(self._connections):
            self._close(conn, "closed: the server stops")
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()
        self._selector.close()

    def _finish_responses(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._done_lock:
            done, self._done = self._done, []
        for conn, response, keep_open in done:
            if not conn.closed:
                self._send(conn, response, keep_open=keep_open)

    # Worker threads.

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, head = job
            try:
                response, keep_open = self._respond(head, conn.address)
            except Exception:
                log.exception("answering a request from %s failed", conn.address)
                response, keep_open = _INTERNAL_ERROR, False
            with self._done_lock:
                self._done.append((conn, response, keep_open))
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the loop will wake anyway) or closed (stopping)
            self._wake_write.send(b"\0")


_INTERNAL_ERROR: Final = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n"
    b"Connection: close\r\n\r\nInternal Server Error\n"
)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket; an empty host means every address, IPv4 and IPv6 on one socket as Go's net.Listen."""
    family = socket.AF_INET6 if ":" in host or not host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host or "::", port))
        # Connections the loop does not take yet wait in the kernel's queue, which costs no descriptor.
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _body_length(head: bytes) -> int | HTTPStatus:
    """The length of the body that follows a request head, or the status refusing the request.

    A body is framed by one Content-Length only: a transfer coding (chunked) is refused rather than guessed at,
    so that a body can never be read as the next request.
    """
    _, _, fields = head.partition(b"\n")
    try:
        headers = http.client.parse_headers(io.BytesIO(fields))
    except http.client.HTTPException:
        return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    if headers.get_all("Transfer-Encoding"):
        return HTTPStatus.NOT_IMPLEMENTED
    lengths = {value.strip() for value in headers.get_all("Content-Length") or ()}
    if not lengths:
        return 0
    value = lengths.pop()
    if lengths or not (value.isascii() and value.isdigit()):
        return HTTPStatus.BAD_REQUEST
    return int(value)
