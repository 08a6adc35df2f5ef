"""Two exporters given one state file (one exporter per log on a central syslog host, all with the default state
path): the second is refused at start with a message naming the file, and the first keeps running and counting."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def test_a_second_exporter_on_the_same_state_file_exits_2_and_the_first_keeps_counting(
    tmp_path: Path,
) -> None:
    first_log, second_log = tmp_path / "mail.log", tmp_path / "other.log"
    state = tmp_path / "state.json"
    append(first_log, sent_lines(0, 4))
    append(second_log, sent_lines(100, 7))
    with Exporter(tmp_path, "--log.path", str(first_log), "--from-beginning") as first:
        first.wait_for("gmail_deliveries_total", 4, status="sent")
        assert first.proc is not None
        second = Exporter(tmp_path, "--log.path", str(second_log), "--from-beginning", state_file=state)
        second.start(wait=False)
        with second:  # killed at the end of the block if it did not exit
            assert second.proc is not None
            assert second.proc.wait(15) == 2
            message = second.output()
        assert f"state file {state} is in use by another exporter (process {first.proc.pid})" in message
        assert "give each exporter its own --state.file" in message
        append(first_log, sent_lines(4, 3) + bounced(7))
        first.wait_for("gmail_deliveries_total", 7, status="sent")
        assert first.value("gmail_deliveries_total", status="bounced") == 1
        assert first.get("/-/healthy")[0] == 200
        assert first.stop() == 0
    saved = json.loads(state.read_text())
    assert list(saved["positions"]) == [str(first_log)]  # the second never wrote
    assert saved["positions"][str(first_log)]["offset"] == first_log.stat().st_size
    # Once the first has stopped, the file is free.
    with Exporter(tmp_path, "--log.path", str(first_log)) as again:
        assert again.value("gmail_deliveries_total", status="sent") == 7
        assert again.stop() == 0
