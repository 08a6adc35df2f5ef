"""The stat safety net under inotify: relaxed to QUIET_POLL_SECONDS while inotify announces everything, back to
POLL_SECONDS as soon as a look finds news that inotify did not announce (an overflow, a network filesystem).

A real FileSource with its real watchdog observer on real files; a silent inotify is made by removing the
observer's watch after start, which is what a network filesystem looks like: the watch exists, nothing fires."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from exporter.sources import Position, files
from exporter.sources.files import ANNOUNCE_GRACE_SECONDS, POLL_SECONDS, QUIET_POLL_SECONDS, FileSource


class Arrivals:
    """Records when each line arrives."""

    def __init__(self) -> None:
        self.seen: dict[bytes, float] = {}
        self.changed = threading.Condition()

    def lines(
        self, source: str, lines: list[bytes], nbytes: int, key: str, position: Position | None
    ) -> None:
        self._add(lines)

    def block(self, source: str, block: bytes, nbytes: int, key: str, position: Position | None) -> None:
        self._add(block.splitlines())

    def _add(self, lines: list[bytes]) -> None:
        with self.changed:
            for line in lines:
                self.seen[line] = time.monotonic()
            self.changed.notify_all()

    def rotated(self, source: str, kind: str) -> None:
        pass

    def error(self, source: str) -> None:
        pass

    def wait_for(self, line: bytes, timeout: float) -> float:
        with self.changed:
            assert self.changed.wait_for(lambda: line in self.seen, timeout), f"{line!r} never arrived"
            return self.seen[line]


@pytest.fixture
def following(tmp_path: Path) -> Iterator[tuple[FileSource, Arrivals, Path]]:
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    sink = Arrivals()
    source = FileSource([str(log)], sink, max_line_bytes=32768)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)  # the observer is watching and the file is open
    yield source, sink, log
    stop.set()
    source._wake.set()
    thread.join(10)
    assert not thread.is_alive()


def append(log: Path, line: bytes) -> float:
    with log.open("ab") as f:
        f.write(line + b"\n")
    return time.monotonic()


def test_inotify_wakes_the_reader_at_once_while_the_safety_net_is_relaxed(
    following: tuple[FileSource, Arrivals, Path],
) -> None:
    source, sink, log = following
    assert source._inotify_covers_all()
    for n in range(5):
        time.sleep(0.3)
        written = append(log, b"line %d" % n)
        assert sink.wait_for(b"line %d" % n, QUIET_POLL_SECONDS) - written < 0.5


def test_an_idle_settled_file_is_looked_at_every_quiet_poll_seconds(
    following: tuple[FileSource, Arrivals, Path],
) -> None:
    source, _, _ = following
    time.sleep(1)  # past the first scan
    looks = source.looks
    time.sleep(2 * QUIET_POLL_SECONDS + 0.5)
    assert source.looks - looks in (2, 3), source.looks - looks


def test_news_inotify_missed_brings_back_the_one_second_safety_net(
    following: tuple[FileSource, Arrivals, Path],
) -> None:
    source, sink, log = following
    source._observer.unschedule_all()  # the watch is still counted, but nothing fires any more
    time.sleep(0.2)
    written = append(log, b"first")
    first = sink.wait_for(b"first", QUIET_POLL_SECONDS + 2) - written
    # Found by the relaxed safety net (inotify did not announce it, not even in the grace after the look): then
    # every look is 1 s apart again.
    time.sleep(ANNOUNCE_GRACE_SECONDS + 0.1)
    looks = source.looks
    time.sleep(3.5)
    assert source.looks - looks in (3, 4), source.looks - looks
    delays = []
    for n in range(4):
        time.sleep(0.35)
        written = append(log, b"next %d" % n)
        delays.append(sink.wait_for(b"next %d" % n, POLL_SECONDS + 2) - written)
    print(f"first {first:.2f} s, then {', '.join(f'{d:.2f}' for d in delays)} s")
    assert max(delays) <= POLL_SECONDS + 0.3, delays


@pytest.fixture
def late_announcements(monkeypatch: pytest.MonkeyPatch) -> None:
    """inotify's events reach the reader 0.3 s after the write: watchdog's thread, made slow."""

    class LateWake(files._Wake):
        def on_any_event(self, event: FileSystemEvent) -> None:
            time.sleep(0.3)
            super().on_any_event(event)

    monkeypatch.setattr(files, "_Wake", LateWake)


def test_news_inotify_announces_just_after_a_safety_net_look_keeps_the_net_relaxed(
    late_announcements: None, following: tuple[FileSource, Arrivals, Path]
) -> None:
    """A line written just before a safety-net look is found by that look and announced just after it: inotify
    missed nothing, so the net stays at QUIET_POLL_SECONDS."""
    source, sink, log = following
    time.sleep(1)  # past the first scan: settled, looking every QUIET_POLL_SECONDS
    looks = source.looks
    while source.looks == looks:  # a safety-net look just happened; the next is QUIET_POLL_SECONDS away
        time.sleep(0.005)
    time.sleep(QUIET_POLL_SECONDS - 0.1)
    looks = source.looks
    append(log, b"just before")
    sink.wait_for(b"just before", 1)
    assert source.looks == looks + 1  # found by the safety-net look, not by the (later) announcement
    time.sleep(3)  # the announcements (open, modify, close: 0.3 s each) and the looks they bring
    looks = source.looks
    time.sleep(2 * QUIET_POLL_SECONDS)
    assert source.looks - looks in (2, 3), source.looks - looks  # 1 s looks would be about 10


def test_a_missing_file_is_looked_for_every_second(tmp_path: Path) -> None:
    """Not settled (the name cannot be opened): no relaxing, even though the directory is watched."""
    log = tmp_path / "later.log"
    sink = Arrivals()
    source = FileSource([str(log)], sink, max_line_bytes=32768, from_beginning=True)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        assert not source._inotify_covers_all()
        source._observer.unschedule_all()
        time.sleep(0.2)
        written = append(log, b"appeared")
        assert sink.wait_for(b"appeared", POLL_SECONDS + 2) - written <= POLL_SECONDS + 0.3
    finally:
        stop.set()
        source._wake.set()
        thread.join(10)
