"""copytruncate rotation: the file shrinks under the reader, which starts again at offset 0."""

from __future__ import annotations

import shutil
from pathlib import Path

from daemon_harness import Exporter, append, deferred, sent_lines


def test_copytruncate_reads_the_new_content_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 20))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 20, status="sent")
        shutil.copy(log, tmp_path / "mail.log.1")
        with open(log, "r+") as f:
            f.truncate(0)
        append(log, deferred(100) + sent_lines(101, 2))
        exporter.wait_for("gmail_deliveries_total", 22, status="sent")
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred")
        assert exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1
        assert exporter.value("gmail_rejections_total", category="rate_limit") == 1
        assert exporter.value("gmail_exporter_log_offset_bytes", source=str(log)) == log.stat().st_size


def test_truncation_then_growth_past_the_old_offset_is_seen(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 2))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        exporter.stop()
    # While the exporter is down the file is truncated and grows beyond the saved offset.
    with open(log, "w") as f:
        f.write(sent_lines(10, 6))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 8, status="sent")
