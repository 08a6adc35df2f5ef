"""A line written in two pieces is read once whole; an endless line is cut, never buffered."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent, sent_lines


def test_line_in_two_pieces_counts_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    line = bounced(1)
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, line[:150])
        time.sleep(1.5)
        assert exporter.value("gmail_deliveries_total", status="bounced") == 0
        append(log, line[150:])
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 1


def test_unterminated_last_line_is_read_when_the_file_rotates(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, sent_lines(0, 2) + sent(2).rstrip("\n"))
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        os.rename(log, tmp_path / "mail.log.1")
        os.unlink(tmp_path / "mail.log.1")
        append(log, sent(3))
        exporter.wait_for("gmail_deliveries_total", 4, status="sent", timeout=15)


def test_overlong_line_is_skipped_and_the_next_line_counts(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        with open(log, "a") as f:
            f.write(sent(1).rstrip("\n"))
            for _ in range(200):  # 20 MB in pieces: the exporter must drop it as it comes
                f.write("x" * 100_000)
                f.flush()
            f.write("\n" + sent(2))
        exporter.wait_for("gmail_deliveries_total", 1, status="sent")
        exporter.wait_for("gmail_exporter_lines_skipped_total", 1, reason="too_long")
        rss = exporter.value("process_resident_memory_bytes")
        assert rss < 150e6, rss
