"""A log, or the filesystem under it, failing: an I/O error on read(), no descriptor left while resuming, a rotated
generation whose compressed data is damaged, a symbolic link loop at the log path. Each is the source's trouble
(its state says so, it is counted and retried), never the exporter's (it stays healthy), and none makes a line
count twice or the reader start the log again from its start. Faults are injected in this process, so the test
decides when they happen."""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import logging
import lzma
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import append, sent, sent_lines
from support import FakeClock, InProcessDaemon, RecordingSink, wait_until

from exporter.sources import backlog
from exporter.sources.files import FollowedFile
from exporter.sources.pacer import Pacer, Timing
from exporter.sources.position import FilePosition
from exporter.sources.reader import Reader

MAX_LINE = 32768
QUICK = Timing(poll=0.05, quiet=0.05, drain_grace=0.0, retry=(0.05, 0.2))


def _lines(start: int, count: int) -> set[bytes]:
    return {sent(n).rstrip("\n").encode() for n in range(start, start + count)}


def test_an_io_error_reading_a_log_is_the_sources_error_and_reading_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 20))
    failing = threading.Event()
    failures = 0
    real_read = Reader.read_chunk

    def read_chunk(self: Reader) -> bytes:
        nonlocal failures
        if failing.is_set():
            failures += 1
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self)

    monkeypatch.setattr(Reader, "read_chunk", read_chunk)
    args = ("--log.path", str(log), "--from-beginning", "--state.file", str(tmp_path / "state.json"))
    with InProcessDaemon(*args) as running:
        assert running.value("gmail_exporter_lines_total", source=str(log)) == 20
        failing.set()
        append(log, sent_lines(20, 10))
        wait_until(
            lambda: running.value("gmail_exporter_source_state", source=str(log), state="error") == 1,
            "the error",
        )
        assert running.get("/-/healthy")[0] == 200  # a disk failing is not cured by restarting the exporter
        assert running.value("gmail_exporter_source_up", source=str(log)) == 0
        assert "Input/output error" in running.get("/")[1].decode()
        failing.clear()
        wait_until(lambda: running.value("gmail_exporter_lines_total", source=str(log)) >= 30, "recovery")
        time.sleep(0.3)
        assert running.value("gmail_exporter_lines_total", source=str(log)) == 30
        assert running.value("gmail_deliveries_total", status="sent") == 30
        assert running.value("gmail_exporter_source_errors_total", source=str(log)) == failures
        assert running.value("gmail_exporter_source_up", source=str(log)) == 1


def _supervised(start_at_end: bool) -> Iterator[Callable[..., tuple[FollowedFile, RecordingSink]]]:
    """Runs FollowedFiles (supervised, as FileSource runs them) in threads stopped at the end of the test."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(path: Path, saved: FilePosition | None = None) -> tuple[FollowedFile, RecordingSink]:
        sink = RecordingSink()
        reader = FollowedFile(
            str(path), sink, max_line_bytes=MAX_LINE, start_at_end=start_at_end, saved=saved, timing=QUICK
        )
        thread = threading.Thread(
            target=reader.supervise, args=(stop, threading.Event(), Pacer(QUICK), None), daemon=True
        )
        threads.append(thread)
        thread.start()
        return reader, sink

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def followed() -> Iterator[Callable[..., tuple[FollowedFile, RecordingSink]]]:
    yield from _supervised(start_at_end=False)


@pytest.fixture
def followed_at_end() -> Iterator[Callable[..., tuple[FollowedFile, RecordingSink]]]:
    yield from _supervised(start_at_end=True)


def _position_after(path: Path, lines: int) -> FilePosition:
    """Where a reader that has read the first `lines` lines of `path` resumes."""
    sink = RecordingSink()
    reader = FollowedFile(str(path), sink, max_line_bytes=MAX_LINE, start_at_end=False)
    stop = threading.Event()
    reader.start(stop)
    reader.close()
    assert sum(sink.seen.values()) == lines
    assert isinstance(sink.position, FilePosition)
    return sink.position


def test_no_descriptor_left_while_resuming_never_reads_the_log_again_from_its_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    followed: Callable[..., tuple[FollowedFile, RecordingSink]],
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))
    saved = _position_after(log, 10)
    append(log, sent_lines(10, 5))
    refusals = 3
    real_open = backlog.open_plain

    def open_plain(*args: object, **kwargs: object) -> Reader:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(backlog, "open_plain", open_plain)
    reader, sink = followed(log, saved)
    sink.wait_for(sent(14).rstrip("\n").encode(), 10)
    time.sleep(0.3)
    assert sink.seen == dict.fromkeys(_lines(10, 5), 1)
    assert refusals == 0 and sink.errors >= 1
    assert reader.status.state == "open"


def _damage_gzip(data: bytes) -> bytes:
    """Damages the middle of a gzip stream: its CRC no longer matches (gzip raises BadGzipFile at the end)."""
    middle = len(data) // 2
    return data[:middle] + bytes(255 - b for b in data[middle : middle + 8]) + data[middle + 8 :]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip, damaged": (".gz", gzip.compress, _damage_gzip),
    "gzip, cut short": (".gz", gzip.compress, _truncate),
    "bzip2, cut short": (".bz2", lambda data: bz2.compress(data, 1), _truncate),  # blocks of 100 kB
    "xz, cut short": (".xz", lzma.compress, _truncate),
}


@pytest.mark.parametrize(("suffix", "compress", "damage"), COMPRESSORS.values(), ids=COMPRESSORS.keys())
def test_a_damaged_compressed_generation_is_read_up_to_the_damage_then_the_newer_files(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
    compress: Callable[[bytes], bytes],
    damage: Callable[[bytes], bytes],
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))
    saved = _position_after(log, 10)
    # While the exporter is down: 2,000 more lines, two rotations, the older generation compressed and damaged.
    append(log, sent_lines(10, 2000))
    broken = damage(compress(log.read_bytes()))
    with pytest.raises((OSError, EOFError, lzma.LZMAError)):
        {".gz": gzip, ".bz2": bz2, ".xz": lzma}[suffix].open(io.BytesIO(broken)).read()  # type: ignore[attr-defined]
    (tmp_path / f"mail.log.2{suffix}").write_bytes(broken)
    log.unlink()
    append(tmp_path / "mail.log.1", sent_lines(2010, 50))
    append(log, sent_lines(2060, 5))
    sink = RecordingSink()
    reader = FollowedFile(str(log), sink, max_line_bytes=MAX_LINE, start_at_end=False, saved=saved)
    with caplog.at_level(logging.WARNING):
        reader.start(threading.Event())
    reader.close()
    seen = set(sink.seen)
    assert max(sink.seen.values()) == 1
    assert not seen & _lines(0, 10)  # read before the stop: never again
    assert _lines(2010, 55) <= seen  # the newer generation and the live file, whole
    assert len(seen & _lines(10, 2000)) < 2000  # the damaged file up to its damage
    assert f"mail.log.2{suffix} is damaged" in caplog.text
    assert reader.status.state == "open"


def test_a_symlink_loop_at_the_log_path_is_an_error_state_and_a_file_there_again_is_read(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 3))
    clock = FakeClock()
    sink = RecordingSink()
    reader = FollowedFile(
        str(log),
        sink,
        max_line_bytes=MAX_LINE,
        start_at_end=False,
        timing=Timing(drain_grace=5.0),
        clock=clock,
    )
    stop = threading.Event()
    reader.start(stop)
    log.unlink()
    log.symlink_to(log)  # ELOOP for every open and stat
    reader.look(stop)
    clock.advance(6.0)  # the old file idle past the drain grace
    reader.look(stop)
    reader.look(stop)
    assert (reader.status.state, reader.status.detail) == ("error", "Too many levels of symbolic links")
    assert sink.errors == 1
    log.unlink()
    append(log, sent_lines(3, 2))
    reader.look(stop)
    reader.close()
    assert sink.seen == dict.fromkeys(_lines(0, 5), 1)
    assert sink.rotations == ["recreate"]
    assert reader.status.state == "open"


def test_a_rotation_while_the_start_position_is_recorded_loses_nothing_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MTA rotates between the look that opened the log and the recording of where following began; the
    process is then killed. The restart reads from the recorded position: the old file's tail, then the new one."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 3))
    real_record = FollowedFile._record_start

    def record_start(self: FollowedFile) -> None:
        os.rename(log, tmp_path / "mail.log.1")
        append(tmp_path / "mail.log.1", sent_lines(3, 4))  # written after the rename, before the MTA reopened
        append(log, sent_lines(7, 5))
        real_record(self)

    monkeypatch.setattr(FollowedFile, "_record_start", record_start)
    first = RecordingSink()
    reader = FollowedFile(str(log), first, max_line_bytes=MAX_LINE, start_at_end=True)
    reader.start(threading.Event())
    reader.close()
    monkeypatch.setattr(FollowedFile, "_record_start", real_record)
    assert first.seen == {} and isinstance(
        first.position, FilePosition
    )  # killed here: only the start is saved
    second = RecordingSink()
    again = FollowedFile(str(log), second, max_line_bytes=MAX_LINE, start_at_end=True, saved=first.position)
    again.start(threading.Event())
    again.close()
    assert second.seen == dict.fromkeys(_lines(3, 9), 1)


@pytest.mark.parametrize("fault", [RuntimeError("injected bug"), OSError(errno.EIO, "Input/output error")])
def test_a_reader_failing_before_its_first_line_goes_on_where_it_opened_the_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    followed_at_end: Callable[[Path], tuple[FollowedFile, RecordingSink]],
    fault: Exception,
) -> None:
    """A fresh exporter opens the log at its end and fails at its first look; lines written meanwhile are read
    when it starts again, not skipped by opening at the (new) end once more."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))  # there before the start: not counted (tail -F)
    real_look = FollowedFile.look
    failed = False

    def look(self: FollowedFile, stop: threading.Event) -> None:
        nonlocal failed
        if not failed:
            failed = True
            append(log, sent_lines(10, 3))  # written after the open, before the failure
            raise fault
        real_look(self, stop)

    monkeypatch.setattr(FollowedFile, "look", look)
    _, sink = followed_at_end(log)
    sink.wait_for(sent(12).rstrip("\n").encode(), 10)
    append(log, sent_lines(13, 2))
    sink.wait_for(sent(14).rstrip("\n").encode(), 10)
    time.sleep(0.2)
    assert sink.seen == dict.fromkeys(_lines(10, 5), 1)
    assert sink.errors == 1
