"""What the exporter says about its state file is what happened: a final write that failed is not reported as
written, and a state file that could not be moved aside is not reported as moved (the state directory here is a
small tmpfs remounted read-only)."""

from __future__ import annotations

from pathlib import Path

from daemon_harness import Exporter, append, sent_lines
from support import remount, small_tmpfs


def test_a_final_state_write_that_failed_is_reported_as_failed(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with small_tmpfs(tmp_path / "state") as state_dir:
        state = state_dir / "state.json"
        with Exporter(tmp_path, "--log.path", str(log), state_file=state) as exporter:
            append(log, sent_lines(0, 3))
            exporter.wait_for("gmail_deliveries_total", 3, status="sent")
            exporter.wait_until(
                lambda: state.exists() and b'"offset":0' not in state.read_bytes(), 15, "the lines' write"
            )
            remount(state_dir, "ro")
            append(log, sent_lines(3, 2))  # a change the final write must save, and cannot
            exporter.wait_for("gmail_deliveries_total", 5, status="sent")
            assert exporter.stop() == 0
            output = exporter.output()
    assert "stopped; state written" not in output
    assert (
        f"ERROR exporter: stopped; the final state write to {state} failed: Read-only file system" in output
    ), output


def test_a_state_file_that_cannot_be_moved_aside_is_not_reported_as_moved(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with small_tmpfs(tmp_path / "state") as state_dir:
        state = state_dir / "state.json"
        state.write_text('{"version": 1, "positions": [], "metrics": {}}')
        remount(state_dir, "ro")
        with Exporter(tmp_path, "--log.path", str(log), state_file=state) as exporter:
            append(log, sent_lines(0, 2))
            exporter.wait_for("gmail_deliveries_total", 2, status="sent")
            assert exporter.stop() == 0
            output = exporter.output()
        assert state.read_text() == '{"version": 1, "positions": [], "metrics": {}}'
    assert "moved to" not in output, output
    assert (
        f"ERROR exporter.state: state file {state} is unusable (positions: expected a mapping, got list) and "
        "cannot be moved aside (Read-only file system); not using it"
    ) in output
    assert output.count(f"state file {state} is unusable") == 1
