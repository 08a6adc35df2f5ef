"""Rotations while the exporter is down: the saved file is found again among its siblings, .gz included."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def _gzip(path: Path) -> None:
    with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.unlink(path)


def _counted_then_stopped(tmp_path: Path, lines: int) -> Path:
    """A log whose first `lines` lines an exporter counted before it stopped cleanly (state saved)."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, lines))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", lines, status="sent")
        assert exporter.stop() == 0
    return log


def test_two_rotations_while_down_one_compressed(tmp_path: Path) -> None:
    log = _counted_then_stopped(tmp_path, 10)
    # Down: the file grows, is rotated to .1, the new one grows, then both move on (.1 -> .2.gz).
    append(log, sent_lines(10, 5))
    os.rename(log, tmp_path / "mail.log.1")
    append(log, sent_lines(15, 7) + bounced(22))
    os.rename(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
    _gzip(tmp_path / "mail.log.2")
    os.rename(log, tmp_path / "mail.log.1")
    append(log, sent_lines(23, 3))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 25, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 26
        append(log, sent_lines(26, 1))
        exporter.wait_for("gmail_deliveries_total", 26, status="sent")


def test_dated_rotation_while_down(tmp_path: Path) -> None:
    log = _counted_then_stopped(tmp_path, 3)
    append(log, sent_lines(3, 2))
    os.rename(log, tmp_path / "mail.log-20261129")
    append(log, sent_lines(5, 4))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 9, status="sent")


def test_copytruncate_while_down(tmp_path: Path) -> None:
    log = _counted_then_stopped(tmp_path, 3)
    append(log, sent_lines(3, 2))
    shutil.copy(log, tmp_path / "mail.log.1")
    with open(log, "w") as f:
        f.write(sent_lines(5, 1))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 6, status="sent")
