"""Clients that hold connections as an attacker would (idle, dribbling, oversized, smuggling a request in a body)
against a real exporter: it keeps answering, keeps descriptors for its log and state file, stays idle on the
CPU, and closes what waits too long."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from daemon_harness import Exporter, append, sent_lines
from test_web_security import _self_signed, https_exporter

from bench.procs import cpu_seconds

NOFILE = 64
"""The exporter's descriptor limit in the flood tests: far fewer than the connections opened."""
FLOOD = 200
A_FIFTH_OF_A_CORE = 0.2
"""Before connections were bounded, the accept loop spun at up to 96 % of a core once descriptors ran out (less
when other processes share the CPU); bounded, the flooded exporter stays under 1 %."""


class LimitedExporter(Exporter):
    """The exporter with at most NOFILE open descriptors (util-linux prlimit execs it in place)."""

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", *super().command()]


def _connect(port: int, timeout: float = 2) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _flood(count: int, hold: list[socket.socket], opener: Callable[[], socket.socket]) -> None:
    """Opens up to `count` connections and keeps them; stops at the first the server no longer takes."""
    for _ in range(count):
        try:
            hold.append(opener())
        except OSError:
            return


def _cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over the next `seconds`."""
    cpu, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - wall)


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _modified(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (what it sent before is read and
    dropped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
    return False


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a TLS handshake, to send and then never finish."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@contextlib.contextmanager
def _closing(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _survives_the_flood(exporter: Exporter, log: Path) -> None:
    """Checks, while the connections are held, what the flood used to break."""
    assert exporter.proc is not None
    pid = exporter.proc.pid
    share = _cpu_share(pid, 3.0)
    print(f"\nflooded: {share:.1%} of a core, {_descriptors(pid)} descriptors of {NOFILE}")
    assert share < A_FIFTH_OF_A_CORE
    assert exporter.get("/metrics")[0] == 200
    append(log, sent_lines(0, 10))
    exporter.wait_for("gmail_deliveries_total", 10, status="sent")
    written = _modified(exporter.state_file)
    log.rename(log.with_name("mail.log.1"))
    log.write_text(sent_lines(10, 5))  # a rotation: the new log must be opened
    exporter.wait_for("gmail_deliveries_total", 15, status="sent")
    exporter.wait_until(lambda: _modified(exporter.state_file) > written, 15, "a state write")
    assert _descriptors(pid) < NOFILE
    assert "Too many open files" not in exporter.output()


def test_idle_connections_past_the_descriptor_limit_leave_metrics_the_log_and_the_state_file_working(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with LimitedExporter(tmp_path, "--log.path", str(log)) as exporter, _closing([]) as idle:
        _flood(FLOOD, idle, lambda: _connect(exporter.port))
        _survives_the_flood(exporter, log)
        assert "web.max-connections 512 lowered to" in exporter.output()


def test_tls_connections_idle_before_during_and_after_the_handshake_leave_the_exporter_working(
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path, "server")
    client = ssl.create_default_context(cafile=str(cert))
    web = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    exporter = https_exporter(tmp_path, web, client, kind=LimitedExporter)
    hello = _client_hello(client)

    def half_handshake() -> socket.socket:
        sock = _connect(exporter.port)
        sock.sendall(hello)
        return sock

    def after_handshake() -> socket.socket:
        return client.wrap_socket(_connect(exporter.port), server_hostname="localhost")

    with exporter, _closing([]) as idle:
        _flood(FLOOD // 3, idle, lambda: _connect(exporter.port))
        _flood(FLOOD // 3, idle, half_handshake)
        _flood(FLOOD // 3, idle, after_handshake)
        _survives_the_flood(exporter, tmp_path / "mail.log")


def _dribble(sock: socket.socket, stop: threading.Event) -> None:
    """A header that never ends, one byte at a time: each read is quick, the request never completes."""
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        while not stop.wait(0.2):
            sock.sendall(b"a")


def test_connections_that_idle_or_dribble_are_closed_after_the_read_timeout(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    stalls = {
        "silent": b"",
        "request line without end": b"GET /metrics HTTP/1.1",
        "headers without end": b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        "body shorter than announced": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    }
    stop = threading.Event()
    with (
        Exporter(tmp_path, "--log.path", str(log), "--web.read-timeout", "2s") as exporter,
        _closing([]) as socks,
    ):
        for sent in stalls.values():
            socks.append(_connect(exporter.port))
            socks[-1].sendall(sent)
        # Its answers may come late from an exporter starved on a busy machine.
        keep_alive = _connect(exporter.port, timeout=30)
        socks.append(keep_alive)
        for _ in range(2):  # the server keeps the connection for a second request
            keep_alive.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            assert keep_alive.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        dribbling = _connect(exporter.port)
        socks.append(dribbling)
        threading.Thread(target=_dribble, args=(dribbling, stop), daemon=True).start()
        try:
            names = [*stalls, "idle keep-alive", "dribbling header"]
            still_open = [
                name for name, sock in zip(names, socks, strict=True) if not _closed_by_server(sock, 15)
            ]
        finally:
            stop.set()
        assert still_open == []
        assert exporter.get("/-/healthy") == (200, b"Healthy\n")


def test_tls_connections_that_stall_are_closed_after_the_read_timeout(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "server")
    client = ssl.create_default_context(cafile=str(cert))
    web = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    exporter = https_exporter(tmp_path, web, client, "--web.read-timeout", "2s")
    with exporter, _closing([]) as socks:
        socks.append(_connect(exporter.port))  # never starts the handshake
        socks.append(_connect(exporter.port))
        socks[-1].sendall(_client_hello(client))  # never finishes it
        # Then idles; its handshake may be answered late by an exporter starved on a busy machine.
        socks.append(client.wrap_socket(_connect(exporter.port, timeout=30), server_hostname="localhost"))
        still_open = [
            name
            for name, sock in zip(("before", "during", "after the handshake"), socks, strict=True)
            if not _closed_by_server(sock, 15)
        ]
        assert still_open == []
        assert exporter.get("/-/healthy") == (200, b"Healthy\n")


def _exchange(port: int, data: bytes) -> list[int]:
    """Sends `data` on one connection and returns the status of every response until the server closes it."""
    with _connect(port) as sock:
        sock.sendall(data)
        received = b""
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return [int(status) for status in re.findall(rb"^HTTP/1\.[01] (\d{3}) ", received, re.MULTILINE)]


def test_an_oversized_request_head_is_refused_and_the_server_keeps_answering(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        # 90 headers of 4 kB each: every line is within what http.server allows, the whole is 360 kB.
        fillers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 4000) for i in range(90))
        assert _exchange(exporter.port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n" + fillers + b"\r\n") == [
            431
        ]
        assert _exchange(exporter.port, b"GET /" + b"a" * 20000) == [414]  # a request line without end
        assert exporter.get("/-/healthy") == (200, b"Healthy\n")


def test_a_request_body_is_never_read_as_the_next_request(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        loaded = exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds")
        with_length = b"POST /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
            len(inner),
            inner,
        )
        assert _exchange(exporter.port, with_length + last) == [405, 200]
        chunked = (
            b"POST /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        )
        assert _exchange(exporter.port, chunked % (len(inner), inner) + last) == [501]
        too_long = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + inner
        assert _exchange(exporter.port, too_long + last) == [413]
        assert exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds") == loaded
