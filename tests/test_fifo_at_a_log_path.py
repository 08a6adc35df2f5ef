"""Something at a log path that is not a regular file (a FIFO, a character device behind a symbolic link): reading
it could block for ever or never end, so it is not opened. It must stall nothing: the other followed files are
counted, readiness is not held up, its state says what it is, and SIGTERM stops the exporter at once."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import Exporter, append, sent_lines
from support import RecordingSink

from exporter.analyse import MAX_LINE_BYTES
from exporter.sources.files import FileSource, FollowedFile


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _symlink_to_a_fifo(path: Path) -> None:
    os.mkfifo(path.with_name("pipe"))
    path.symlink_to(path.with_name("pipe"))


ODD_FILES: dict[str, Callable[[Path], None]] = {
    "a FIFO": _fifo,
    "a symlink to /dev/zero": _symlink_to_dev_zero,
    "a symlink to a FIFO": _symlink_to_a_fifo,
}


def _assert_refused_and_stopped_promptly(exporter: Exporter, odd: Path) -> None:
    assert exporter.value("gmail_exporter_source_state", source=str(odd), state="not_regular_file") == 1
    assert exporter.value("gmail_exporter_source_up", source=str(odd)) == 0
    assert exporter.get("/-/ready")[0] == 200
    assert exporter.get("/-/healthy")[0] == 200
    assert exporter.stop() == 0
    output = exporter.output()
    assert "did not stop" not in output
    assert f"{odd} is not a regular file (a FIFO, device or directory); not following it" in output


@pytest.mark.parametrize("make", ODD_FILES.values(), ids=ODD_FILES.keys())
def test_a_fifo_or_device_at_a_log_path_stalls_no_other_file(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    odd, other = tmp_path / "odd.log", tmp_path / "mail.log"
    make(odd)
    other.touch()
    with Exporter(tmp_path, "--log.path", str(odd), "--log.path", str(other)) as exporter:
        append(other, sent_lines(0, 50))
        exporter.wait_for("gmail_deliveries_total", 50, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(other)) == 50
        _assert_refused_and_stopped_promptly(exporter, odd)


def test_a_log_replaced_by_a_fifo_while_the_exporter_is_down_stalls_nothing(tmp_path: Path) -> None:
    """The saved position names a file that is gone; looking for it among the log's names must not open the
    FIFO now at its path (an open for reading waits for a writer)."""
    log, other = tmp_path / "odd.log", tmp_path / "mail.log"
    append(log, sent_lines(0, 5))
    other.touch()
    args = ("--log.path", str(log), "--log.path", str(other))
    with Exporter(tmp_path, *args, "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")
        assert exporter.stop() == 0
    assert str(log) in json.loads((tmp_path / "state.json").read_text())["positions"]
    log.unlink()
    os.mkfifo(log)
    with Exporter(tmp_path, *args) as exporter:
        append(other, sent_lines(5, 50))
        exporter.wait_for("gmail_deliveries_total", 55, status="sent")
        _assert_refused_and_stopped_promptly(exporter, log)


def test_a_fifo_among_the_rotated_generations_stalls_nothing(tmp_path: Path) -> None:
    """A FIFO named like a rotated generation (mail.log.1) is looked at when the log is rotated and when a saved
    position is looked for; it must not be opened."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 5))
    os.mkfifo(tmp_path / "mail.log.1")
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")
        # copytruncate looks for the copy among the generations; a rename makes the reader look for skipped ones
        log.write_text("")
        append(log, sent_lines(5, 5))
        exporter.wait_for("gmail_deliveries_total", 10, status="sent")
        os.rename(log, tmp_path / "mail.log-20261201")
        append(log, sent_lines(10, 5))
        exporter.wait_for("gmail_deliveries_total", 15, status="sent")
        assert exporter.stop() == 0
    os.rename(
        log, tmp_path / "mail.log-20261202"
    )  # rotated while down: the saved file is looked for by its first bytes
    append(log, sent_lines(15, 5))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 20, status="sent")
        assert exporter.stop() == 0
        assert "did not stop" not in exporter.output()


def test_a_file_on_a_hung_filesystem_stalls_no_other_file_and_is_named_when_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read that never returns (a hung network filesystem) is simulated by a look that blocks until the test
    releases it."""
    hung, other = tmp_path / "hung.log", tmp_path / "mail.log"
    hung.touch()
    other.touch()
    release, hanging = threading.Event(), threading.Event()
    real_look = FollowedFile.look

    def look(self: FollowedFile, stop: threading.Event) -> None:
        if self.path == str(hung):
            hanging.set()
            release.wait()
        real_look(self, stop)

    monkeypatch.setattr(FollowedFile, "look", look)
    sink = RecordingSink()
    source = FileSource([str(hung), str(other)], sink, max_line_bytes=MAX_LINE_BYTES)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with sink.changed:
            assert sink.changed.wait_for(lambda: len(sink.starts) == 1, 10), "mail.log never started"
        append(other, sent_lines(0, 50))
        with sink.changed:
            assert sink.changed.wait_for(lambda: sum(sink.seen.values()) >= 50, 10), sink.seen
        assert sum(sink.seen.values()) == 50 and len(sink.seen) == 50
        # Stopped only once the hung file's reader is inside its read: a reader that has not reached it yet (a
        # starved thread on a busy machine) sees the stop and ends, and there is nothing to name.
        assert hanging.wait(10), "the hung file was never read"
        with caplog.at_level(logging.WARNING, logger="exporter.sources.files"):
            stop.set()
            source.stop_waking()
            thread.join(30)
            assert not thread.is_alive()
        assert f"follow {hung} did not stop within 4 s" in caplog.text
        assert "follow " + str(other) not in caplog.text
    finally:
        stop.set()
        release.set()
