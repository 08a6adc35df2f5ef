"""A state file of the right version but the wrong contents: the exporter sets it aside (renamed, not deleted),
says so once, and runs; with a good previous generation beside it, it resumes from that one exactly, so the lines
written while it was down are counted once and nothing read before is counted again."""

from __future__ import annotations

import json
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
