"""Delete-and-recreate, and a file that appears only after the exporter started."""

from __future__ import annotations

import os
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def test_deleted_and_recreated_file_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 4))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 4, status="sent")
        os.unlink(log)
        append(log, sent_lines(4, 3) + bounced(7))
        exporter.wait_for("gmail_deliveries_total", 7, status="sent")
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.value("gmail_exporter_log_rotations_total", kind="recreate") == 1
        assert exporter.value("gmail_exporter_log_rotations_total", kind="rename") == 0


def test_late_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "mail.log"
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.value("gmail_deliveries_total", status="sent") == 0
        log.parent.mkdir()
        append(log, sent_lines(0, 5))
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")


def test_glob_picks_up_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(sent_lines(0, 2))
    with Exporter(tmp_path, "--log.path", str(tmp_path / "*.log"), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        append(tmp_path / "b.log", sent_lines(2, 3))
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(tmp_path / "b.log")) == 3
