"""A log cut to a middle offset (its first bytes unchanged, so not copytruncate) and then written again: the lines
still in the file were counted already, the lines cut off too, and only the lines appended since are new. 300
lines written, cut to 200, 150 appended: 450 written, 450 counted (not 650, as when such a cut was taken for
copytruncate and the file read again from 0).

The cut and the append either reach the exporter in two looks, or, with the exporter stopped (SIGSTOP) while both
happen, in one look that finds the file grown past where it was read, its bytes there different. (The cut lies
within the last 64 KiB read, whose bytes the reader keeps to find it.)"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from daemon_harness import Exporter, append, sent_lines


def _cut_after_line(log: Path, lines: int) -> None:
    with open(log, "rb+") as f:
        offset = 0
        for _ in range(lines):
            offset += len(f.readline())
        f.truncate(offset)


@contextmanager
def _paused(exporter: Exporter) -> Iterator[None]:
    """The exporter stopped (as a busy machine may not schedule it) while the body runs: nothing it does can look
    at the file in between."""
    assert exporter.proc is not None
    os.kill(exporter.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(exporter.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize(
    ("written", "kept"),
    [(300, 200), (1000, 100)],
    ids=["cut within the last 64 KiB read", "cut further back"],
)
def test_a_cut_seen_before_the_append_counts_exactly_the_lines_written(
    tmp_path: Path, written: int, kept: int
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, written))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", written, status="sent")
        _cut_after_line(log, kept)
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1, 10, "the cut"
        )
        append(log, sent_lines(written, 150))
        exporter.wait_for("gmail_deliveries_total", written + 150, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == written + 150
        assert exporter.value("gmail_exporter_log_offset_bytes", source=str(log)) == log.stat().st_size
        assert exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1
        output = exporter.output()
    far = (
        f"{log}: cut to {sum(len(sent_lines(n, 1)) for n in range(kept))} bytes, more than 65536 bytes before"
    )
    assert (far in output) == (written == 1000), output


@pytest.mark.parametrize(
    ("written", "kept", "appended"),
    [(300, 200, 150), (300, 200, 20), (300, 250, 150)],
    ids=["grown back to below the old end", "appended less than was cut", "grown past the old end"],
)
def test_a_cut_and_an_append_between_two_looks_count_exactly_the_lines_written(
    tmp_path: Path, written: int, kept: int, appended: int
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, written))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", written, status="sent")
        with _paused(exporter):
            _cut_after_line(log, kept)
            append(log, sent_lines(written, appended))
        exporter.wait_for("gmail_deliveries_total", written + appended, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == written + appended
        assert exporter.value("gmail_exporter_log_offset_bytes", source=str(log)) == log.stat().st_size
        assert exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1
        assert exporter.value("gmail_exporter_lines_skipped_total") == 0
