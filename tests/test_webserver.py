"""The connection server alone, with a trivial responder and limits too short for a real exporter: writes that
never drain, the connection bound, accept() failing for want of descriptors."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO
from support import wait_until
from test_web_connections import A_FIFTH_OF_A_CORE, _closed_by_server, _cpu_share

from exporter.webserver import ConnectionServer, Limits, Respond

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@contextlib.contextmanager
def serving(respond: Respond, limits: Limits) -> Iterator[tuple[str, int]]:
    server = ConnectionServer("127.0.0.1", 0, respond, limits=limits)
    server.start()
    try:
        yield server.server_address
    finally:
        server.stop()


def test_a_client_that_never_reads_its_response_is_closed_after_the_write_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = 16 << 20  # more than the kernel buffers of both ends hold
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    with (
        caplog.at_level(logging.DEBUG, logger="exporter.webserver"),
        serving(lambda head, client: (response, True), Limits(write_timeout=0.5)) as address,
        socket.socket() as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        sock.sendall(REQUEST)
        time.sleep(3)  # six write timeouts without reading
        # Not read before the server gave up on the write: its thread, starved on a busy machine, may not even have
        # accepted the connection in those 3 s, and a client that reads from then on is sent the whole response.
        wait_until(lambda: "timed out in state write" in caplog.text, "the write timeout", 30)
        received = 0
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
    assert 0 < received < size


def test_at_the_connection_bound_the_connection_waiting_longest_makes_room() -> None:
    with serving(lambda head, client: (OK, True), Limits(max_connections=3)) as address:
        idle = [socket.create_connection(address, timeout=5) for _ in range(3)]  # accepted in this order
        try:
            with socket.create_connection(address, timeout=5) as client:
                client.sendall(REQUEST)
                assert client.recv(100) == OK
            assert _closed_by_server(idle[0], 5)
            for still_open in idle[1:]:
                still_open.sendall(REQUEST)
                assert still_open.recv(100) == OK
        finally:
            for sock in idle:
                sock.close()


CHILD = """
import logging, os, resource, sys
from exporter.webserver import ConnectionServer
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
server = ConnectionServer("127.0.0.1", 0, lambda head, client: (ANSWER, True))
server.start()
taken = []
while True:
    try:
        taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
print(server.server_address[1], flush=True)
sys.stdin.readline()
for fd in taken:
    os.close(fd)
print("released", flush=True)
sys.stdin.readline()
server.stop()
"""


def test_accept_failing_for_want_of_descriptors_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    """Every descriptor is taken when clients connect: accept() fails with EMFILE while they wait in the kernel's
    queue, which leaves the listening socket readable, so a loop retrying at once would spin."""
    stderr = tmp_path / "server.log"
    with open(stderr, "w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.replace("ANSWER", repr(OK))], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=err, text=True,
        )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    clients: list[socket.socket] = []
    try:
        port = int(child.stdout.readline())
        clients += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
        for client in clients:
            client.sendall(REQUEST)
        # Measured once accept() has failed: the server's thread, starved on a busy machine, may not have tried
        # yet; released before it tries, it would accept at once and never fail.
        wait_until(lambda: "cannot accept connections" in stderr.read_text(), "accept() failing", 30)
        share = _cpu_share(child.pid, 3.0)
        print(f"\naccept failing: {share:.1%} of a core")
        assert share < A_FIFTH_OF_A_CORE
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "released\n"
        for client in clients:  # served once descriptors are back
            assert client.recv(100) == OK
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        for client in clients:
            client.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    log = stderr.read_text()
    assert log.count("cannot accept connections: Too many open files") == 1, log
    assert log.count("accepting connections again") == 1, log
