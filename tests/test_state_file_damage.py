"""A state file of the right version but the wrong contents: the exporter sets it aside (renamed, not deleted),
says so once, and runs; with a good previous generation beside it, it resumes from that one exactly, so the lines
written while it was down are counted once and nothing read before is counted again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Exporter, append, sent_lines

Damage = Callable[[dict[str, Any], str], None]


def _mapping_is_a_list(data: dict[str, Any], log: str) -> None:
    data["metrics"]["connection_errors"] = ["timeout", 3]


def _counter_is_a_word(data: dict[str, Any], log: str) -> None:
    data["metrics"]["lines"][log] = "x"


def _recent_rejection_too_short(data: dict[str, Any], log: str) -> None:
    data["metrics"]["recent"] = [[1764451969.0, "authentication"]]


def _position_is_a_word(data: dict[str, Any], log: str) -> None:
    data["positions"][log] = "x"


def _position_is_empty(data: dict[str, Any], log: str) -> None:
    data["positions"][log] = {}


DAMAGES: dict[str, Damage] = {
    "a list where a mapping belongs": _mapping_is_a_list,
    'a counter value "x"': _counter_is_a_word,
    "a too-short recent rejection": _recent_rejection_too_short,
    'a position "x"': _position_is_a_word,
    "a position {}": _position_is_empty,
}


def _run_once(tmp_path: Path, log: Path, expected_sent: int, *args: str) -> None:
    """Runs the exporter until it has counted `expected_sent` deliveries, then stops it cleanly."""
    with Exporter(tmp_path, "--log.path", str(log), *args) as exporter:
        exporter.wait_for("gmail_deliveries_total", expected_sent, status="sent")
        assert exporter.stop() == 0


def _damage(state: Path, damage: Damage, log: Path) -> bytes:
    data = json.loads(state.read_text())
    damage(data, str(log))
    damaged = json.dumps(data).encode()
    state.write_bytes(damaged)
    return damaged


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_state_file_is_set_aside_logged_once_and_survived(tmp_path: Path, damage: Damage) -> None:
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    append(log, sent_lines(0, 10))
    _run_once(tmp_path, log, 10, "--from-beginning")
    damaged = _damage(state, damage, log)
    Path(f"{state}.1").unlink(missing_ok=True)  # no previous generation to fall back to
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.get("/metrics")[0] == 200
        assert exporter.get("/-/healthy")[0] == 200
        # Nothing usable was saved: counters start at 0 and following at the end of the log.
        assert exporter.value("gmail_deliveries_total", status="sent") == 0
        append(log, sent_lines(10, 3))
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 3
        assert exporter.stop() == 0
        output = exporter.output()
    set_aside = list(tmp_path.glob("state.json.unusable-*"))
    assert len(set_aside) == 1 and set_aside[0].read_bytes() == damaged
    assert output.count("is unusable") == 1, output
    assert f"ERROR exporter.state: state file {state} is unusable (" in output
    assert f"moved to {set_aside[0]}" in output
    assert "Traceback" not in output
    # The file written since is good: the next start resumes from it without complaint.
    with Exporter(tmp_path, "--log.path", str(log)) as again:
        assert again.value("gmail_deliveries_total", status="sent") == 3
        assert again.stop() == 0
    assert "is unusable" not in again.output()


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_newest_state_falls_back_to_the_previous_generation_losing_nothing(
    tmp_path: Path, damage: Damage
) -> None:
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    append(log, sent_lines(0, 10))
    _run_once(tmp_path, log, 10, "--from-beginning")
    append(log, sent_lines(10, 5))
    _run_once(tmp_path, log, 15)  # a second run: both generations now hold positions and counters
    previous = json.loads(Path(f"{state}.1").read_text())
    assert str(log) in previous["positions"]
    _damage(state, damage, log)
    append(log, sent_lines(15, 7))  # written while the exporter is down
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 22, status="sent")
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 22
        append(log, sent_lines(22, 2))
        exporter.wait_for("gmail_deliveries_total", 24, status="sent")
        assert exporter.stop() == 0
        output = exporter.output()
    assert output.count("is unusable") == 1, output
    assert f"WARNING exporter.state: resuming from the previous state generation {state}.1" in output
    assert len(list(tmp_path.glob("state.json.unusable-*"))) == 1


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _gigabytes(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB of zeros that take no disk space


NOT_A_STATE_FILE: dict[str, Callable[[Path], None]] = {
    "a FIFO": _fifo,
    "a symlink to /dev/zero": _symlink_to_dev_zero,
    "4 GiB": _gigabytes,
}


@pytest.mark.parametrize("make", NOT_A_STATE_FILE.values(), ids=NOT_A_STATE_FILE.keys())
def test_something_at_the_state_path_that_cannot_be_a_state_file_is_set_aside_without_reading_it(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    """Reading a FIFO would wait for a writer for ever; reading a device or a huge file would take the memory of
    what is read. Neither is read: the size and kind are checked first."""
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    append(log, sent_lines(0, 3))
    make(state)
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        assert exporter.proc is not None
        peak_kib = _peak_rss_kib(exporter.proc.pid)
        assert exporter.stop() == 0
        output = exporter.output()
    assert output.count("is unusable") == 1, output
    assert len(list(tmp_path.glob("state.json.unusable-*"))) == 1
    assert json.loads(state.read_text())["positions"][str(log)]["offset"] == log.stat().st_size
    with Exporter(tmp_path, "--log.path", str(log), state_file=tmp_path / "fresh.json") as fresh:
        assert fresh.proc is not None
        fresh_peak_kib = _peak_rss_kib(fresh.proc.pid)
    # Side by side with an exporter that had no state to read: the 64 MiB a read would take do not show.
    assert peak_kib < fresh_peak_kib + 32 * 1024, (peak_kib, fresh_peak_kib)


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_state_file_that_is_a_symlink_is_read_through_it_and_replaced_by_a_regular_file(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    elsewhere = tmp_path / "volume" / "state.json"
    elsewhere.parent.mkdir()
    append(log, sent_lines(0, 4))
    _run_once(tmp_path, log, 4, "--from-beginning")
    state.rename(elsewhere)
    state.symlink_to(elsewhere)
    append(log, sent_lines(4, 2))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 6, status="sent")
        assert exporter.stop() == 0
    assert not state.is_symlink()  # written in place of the link, never through it
    assert json.loads(elsewhere.read_text())["positions"][str(log)]["offset"] < log.stat().st_size


def _lock_fifo(lock: Path) -> None:
    os.mkfifo(lock)


def _lock_directory(lock: Path) -> None:
    lock.mkdir()


ODD_LOCKS: dict[str, Callable[[Path], None]] = {"a FIFO": _lock_fifo, "a directory": _lock_directory}


@pytest.mark.parametrize("make", ODD_LOCKS.values(), ids=ODD_LOCKS.keys())
def test_a_lock_file_that_is_a_fifo_or_directory_neither_hangs_nor_lets_a_second_exporter_in(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 3))
    make(tmp_path / "state.json.lock")
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as first:
        first.wait_for("gmail_deliveries_total", 3, status="sent")
        second = Exporter(tmp_path, "--log.path", str(log))
        second.start(wait=False)
        with second:
            assert second.proc is not None
            assert second.proc.wait(15) == 2
        assert "is in use by another exporter" in second.output()
        assert first.stop() == 0
