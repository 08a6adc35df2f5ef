"""Processes under measurement: starting and stopping them, and what /proc says about their CPU and memory."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Self

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_runtimes(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread: (ns on a CPU, times scheduled), from /proc/PID/task/TID/schedstat."""
    found: dict[int, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            run_ns, _, slices = (int(x) for x in (task / "schedstat").read_text().split())
        except (OSError, ValueError):
            continue
        found[int(task.name)] = (run_ns, slices)
    return found


def memory_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB: VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@dataclass
class Finished:
    """A command that ran to its end."""

    returncode: int
    seconds: float
    max_rss_kb: int
    stdout: bytes
    stderr: bytes


TIME: Final = "/usr/bin/time"
"""GNU time, which reports the peak RSS of the command alone (bench/install-peers.sh installs it)."""


def run_timed(argv: Sequence[str], *, cwd: Path | None = None) -> Finished:
    """Run a command to completion; wall time from spawn to exit and its peak RSS.

    The peak comes from GNU time, which runs the command as its own child. A process's peak RSS as wait4()
    reports it is the largest of every memory image the process had, and a child spawned from this process
    (fork or vfork, then exec) starts with this process's image: wait4() would report this process's size
    whenever it is the larger (`true` run from a 200 MB parent: 225 MB). GNU time's own image is about 1 MB."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "--format=%M", f"--output={peak.name}", *argv], stdout=subprocess.PIPE, stderr=err, cwd=cwd
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, _ = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
        # GNU time writes "Command exited with non-zero status N" before the figure when the command fails.
        max_rss_kb = int(peak.read().split()[-1])
    return Finished(proc.returncode, seconds, max_rss_kb, stdout, stderr)


class Server:
    """A long-running process that serves Prometheus metrics on a loopback port."""

    def __init__(self, argv: Sequence[str], port: int, log: IO[bytes], *, path: str = "/metrics") -> None:
        self.argv = list(argv)
        self.port = port
        self.path = path
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """The status and text of a page of the server."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def scrape(self, timeout: float = 10.0) -> str:
        """The metrics page, as text."""
        status, body = self.get(self.path, timeout)
        if status != 200:
            raise RuntimeError(f"{self.argv[0]}: {self.path} answered {status}")
        return body

    def wait_ready(self, timeout: float = 30.0, path: str | None = None) -> None:
        """Until `path` (the metrics page by default) answers 200."""
        path = path or self.path
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.argv)} exited with {self.proc.returncode}")
            try:
                status, _ = self.get(path, timeout=1.0)
                if status == 200:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(self.argv)}: {path} answered {status} for {timeout:g} s")
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
