"""Rename rotation (logrotate `create`): the old file is drained, including lines appended after the rename."""

from __future__ import annotations

import os
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def test_rename_rotation_loses_no_line(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 10, status="sent")
        os.rename(log, tmp_path / "mail.log.1")
        append(tmp_path / "mail.log.1", sent_lines(10, 5))  # the MTA still writes to the renamed file
        append(log, sent_lines(15, 7) + bounced(22))
        exporter.wait_for("gmail_deliveries_total", 22, status="sent")
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        append(tmp_path / "mail.log.1", sent_lines(23, 2))  # a late write before the MTA reopens its log
        exporter.wait_for("gmail_deliveries_total", 24, status="sent")
        assert exporter.value("gmail_exporter_log_rotations_total", kind="rename") == 1
        assert exporter.value("gmail_exporter_log_rotations_total", kind="recreate") == 0
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 25
        assert exporter.value("gmail_rejections_total", category="authentication", reason="dmarc_policy") == 1


def test_without_state_starts_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, sent_lines(10, 3))
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
