"""Helpers shared by the tests: a recording sink for sources, a clock and wake-up that tests drive, the daemon run
in the test's own process (to inject faults into its parts), a small filesystem to fill or make read-only."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from daemon_harness import free_port, no_queue_unless_asked, parse_metrics

if TYPE_CHECKING:
    from exporter.sources import Source
    from exporter.sources.position import Position


class RecordingSink:
    """A Sink that records every line delivered (with when it arrived), the last position and what happened."""

    def __init__(self) -> None:
        self.seen: Counter[bytes] = Counter()
        self.arrived: dict[bytes, float] = {}
        self.position: Position | None = None
        self.starts: list[Position] = []
        self.rotations: list[str] = []
        self.errors = 0
        self.retirements: list[str] = []
        self.changed = threading.Condition()

    def lines(self, source: str, lines: list[bytes], nbytes: int, position: Position | None) -> None:
        with self.changed:
            self.seen.update(lines)
            now = time.monotonic()
            for line in lines:
                self.arrived.setdefault(line, now)
            self.position = position or self.position
            self.changed.notify_all()

    def block(self, source: str, block: bytes, nbytes: int, position: Position | None) -> None:
        self.lines(source, block.splitlines(), nbytes, position)

    def started(self, source: str, position: Position) -> None:
        with self.changed:
            self.starts.append(position)
            self.position = position
            self.changed.notify_all()

    def rotated(self, source: str, kind: str) -> None:
        self.rotations.append(kind)

    def error(self, source: str) -> None:
        self.errors += 1

    def retired(self, source: str) -> None:
        with self.changed:
            self.retirements.append(source)
            self.changed.notify_all()

    def wait_started(self, timeout: float = 10.0) -> None:
        """Waits until a source has recorded where following began (its file is open and read)."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.starts, timeout), "the file was never opened"

    def wait_for(self, line: bytes, timeout: float) -> float:
        """When `line` arrived; fails after `timeout` seconds without it."""
        with self.changed:
            assert self.changed.wait_for(lambda: line in self.arrived, timeout), f"{line!r} never arrived"
            return self.arrived[line]


class FakeClock:
    """A monotonic clock that moves only when a test (or a FakeWake's wait) moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWake:
    """A wake-up whose wait() returns at once: set -> True; unset -> the clock moves by the timeout, False. An
    `announce_at` time makes a wait that reaches it return True there (an inotify event arriving late)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.is_set = False
        self.announce_at: float | None = None
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.is_set:
            return True
        if self.announce_at is not None and (timeout is None or self.clock.now + timeout >= self.announce_at):
            self.clock.now = max(self.clock.now, self.announce_at)
            self.announce_at = None
            self.is_set = True
            return True
        assert timeout is not None, "a wait without timeout and nothing to wake it"
        self.clock.advance(timeout)
        return False

    def set(self) -> None:
        self.is_set = True

    def clear(self) -> None:
        self.is_set = False


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted at `where` (created): easy to fill, and to remount read-only
    (`remount(where, "ro")`). Skips the test where mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    """Remounts a small_tmpfs read-only ("ro") or writable ("rw")."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def open_fds(pid: int, path: Path) -> list[int]:
    """The exporter's descriptors open on the file `path` names now (by inode, whatever its name becomes)."""
    st = os.stat(path)
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (target.st_dev, target.st_ino) == (st.st_dev, st.st_ino):
            found.append(int(fd))
    return found


def process_running(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie waiting for its parent to reap it has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class InProcessDaemon:
    """The `run` command's daemon in a thread of the test process, on a free loopback port, so a test can inject a
    fault into one of its parts; stopped as by SIGTERM when the `with` block ends."""

    def __init__(self, *args: str) -> None:
        from exporter.cli import build_parser
        from exporter.daemon import Daemon

        self.port = free_port()
        parsed = build_parser("run").parse_args(
            ["run", "--web.listen-address", f"127.0.0.1:{self.port}", *no_queue_unless_asked(args), *args]
        )
        self.daemon = Daemon(parsed)
        self.thread = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    def __enter__(self) -> InProcessDaemon:
        self.thread.start()
        wait_until(lambda: self.get("/-/ready")[0] == 200, "the daemon ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the daemon did not stop"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        status, body = self.get("/metrics")
        assert status == 200, body
        wanted = set(labels.items())
        return sum(v for (n, ls), v in parse_metrics(body.decode()).items() if n == name and wanted <= ls)


@contextlib.contextmanager
def running(source: Source) -> Iterator[None]:
    """`source` reading in a thread of its own until the block ends; then stopped, and its thread must end."""
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        source.stop_waking()
        thread.join(10)
        assert not thread.is_alive(), "the source did not stop"
