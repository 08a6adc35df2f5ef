"""kill -9 in the first seconds of a fresh exporter, after lines were read and the log rotated: where following
began is saved before /-/ready turns 200, so the restart reads from there, every line once (122 of 122), instead
of starting at the end of the log again and counting none."""

from __future__ import annotations

import os
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def test_kill_9_right_after_ready_then_a_restart_counts_every_line_of_both_generations(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))  # there before the first start: not counted (tail -F)
    first = Exporter(tmp_path, "--log.path", str(log))
    with first:
        append(log, sent_lines(10, 100))
        first.wait_for("gmail_deliveries_total", 100, status="sent")  # read
        os.rename(log, tmp_path / "mail.log.1")
        append(log, sent_lines(110, 20) + bounced(130) + bounced(131))
        first.kill9()  # seconds after start: before any periodic state write
    with Exporter(tmp_path, "--log.path", str(log)) as second:
        second.wait_for("gmail_deliveries_total", 120, status="sent")
        assert second.value("gmail_deliveries_total", status="bounced") == 2
        assert second.value("gmail_exporter_lines_total", source=str(log)) == 122
        assert second.stop() == 0
