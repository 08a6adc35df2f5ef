"""The stat safety net under inotify (exporter.sources.pacer): relaxed to `quiet` while inotify announces
everything, back to `poll` for `distrust` seconds as soon as a look finds news that inotify did not announce (an
overflow, a network filesystem). The pacer's decisions are tested with a clock the test drives; a real FileSource
with its real inotify watch shows that a wake-up reaches the reader and that a silenced watch is made up for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FakeClock, FakeWake, RecordingSink, running

from exporter.sources.files import FileSource
from exporter.sources.pacer import Pacer, Timing

TIMING = Timing(poll=1.0, quiet=10.0, distrust=60.0, announce_grace=0.5)


def test_a_trusted_watch_is_looked_at_every_quiet_period_an_untrusted_one_every_poll() -> None:
    pacer = Pacer(TIMING, FakeClock())
    assert pacer.timeout(trusted=True) == TIMING.quiet
    assert pacer.timeout(trusted=False) == TIMING.poll


def test_news_inotify_missed_brings_back_the_short_poll_for_the_distrust_period() -> None:
    clock = FakeClock()
    wake = FakeWake(clock)
    pacer = Pacer(TIMING, clock)
    pacer.looked(woke=False, news=True, trusted=True, wake=wake)  # found by a timed-out wait, never announced
    assert wake.waits == [TIMING.announce_grace]
    assert pacer.timeout(trusted=True) == TIMING.poll
    clock.advance(TIMING.distrust - 1)
    assert pacer.timeout(trusted=True) == TIMING.poll
    clock.advance(1)
    assert pacer.timeout(trusted=True) == TIMING.quiet


def test_news_announced_just_after_a_safety_net_look_keeps_the_net_relaxed() -> None:
    """A line written just before a safety-net look is found by that look and announced just after it: inotify
    missed nothing."""
    clock = FakeClock()
    wake = FakeWake(clock)
    wake.announce_at = clock.now + 0.3
    pacer = Pacer(TIMING, clock)
    pacer.looked(woke=False, news=True, trusted=True, wake=wake)
    assert pacer.timeout(trusted=True) == TIMING.quiet
    assert wake.is_set  # the announcement is not lost: the loop looks once more at once


def test_news_found_after_a_wake_up_or_while_untrusted_changes_nothing() -> None:
    clock = FakeClock()
    wake = FakeWake(clock)
    pacer = Pacer(TIMING, clock)
    pacer.looked(woke=True, news=True, trusted=True, wake=wake)
    pacer.looked(woke=False, news=True, trusted=False, wake=wake)
    pacer.looked(woke=False, news=False, trusted=True, wake=wake)
    assert wake.waits == [] and pacer.timeout(trusted=True) == TIMING.quiet


@pytest.fixture
def following(tmp_path: Path) -> Iterator[tuple[FileSource, RecordingSink, Path]]:
    """A FileSource whose safety net never fires on its own (quiet and poll of an hour): only inotify wakes it."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    sink = RecordingSink()
    source = FileSource([str(log)], sink, max_line_bytes=32768, timing=Timing(poll=3600.0, quiet=3600.0))
    with running(source):
        sink.wait_started()
        yield source, sink, log


def append(log: Path, line: bytes) -> None:
    with log.open("ab") as f:
        f.write(line + b"\n")


def test_inotify_wakes_the_reader_without_any_safety_net_look(
    following: tuple[FileSource, RecordingSink, Path],
) -> None:
    _, sink, log = following
    for n in range(5):
        append(log, b"line %d" % n)
        sink.wait_for(b"line %d" % n, 20)
    assert sink.seen == {b"line %d" % n: 1 for n in range(5)}


def test_a_log_directory_deleted_and_created_again_is_watched_again(tmp_path: Path) -> None:
    """The directory's watch dies with it; while it is gone the reader polls, and once it is back it is watched
    again: an append long after the re-creation is still announced (the safety net is an hour here)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "mail.log"
    log.write_bytes(b"")
    sink = RecordingSink()
    source = FileSource(
        [str(log)], sink, max_line_bytes=32768, timing=Timing(poll=0.2, quiet=3600.0, drain_grace=0.0)
    )
    with running(source):
        sink.wait_started()
        append(log, b"before")
        sink.wait_for(b"before", 20)
        log.unlink()
        logs.rmdir()
        logs.mkdir()
        append(log, b"first after")
        sink.wait_for(b"first after", 20)
        watch = source.watch
        assert watch is not None
        deadline = time.monotonic() + 20
        while not watch.covers(str(logs)):  # the new directory watched (settled again)
            assert time.monotonic() < deadline, "the new directory is never watched"
            time.sleep(0.05)
        append(log, b"second after")
        sink.wait_for(b"second after", 20)
        assert sink.seen == {b"before": 1, b"first after": 1, b"second after": 1}
