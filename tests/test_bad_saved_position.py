"""A saved position that is not one, and a reader that fails: neither may leave a dead reader looking healthy, and
neither may count a line twice.

The first scenarios run the exporter as a process on a state file edited by hand; the last runs the daemon in this
process with a fault injected into a followed file's look, so the test decides when the reader fails and when it
may recover."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Exporter, append, sent_lines
from support import InProcessDaemon, wait_until

from exporter.sources.files import FollowedFile

LINES = 948


@pytest.mark.parametrize("position", ["x", {}, {"kind": "file", "offset": -1}], ids=["x", "{}", "offset -1"])
def test_a_malformed_saved_position_never_leaves_a_dead_reader_or_counts_twice(
    tmp_path: Path, position: Any
) -> None:
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    append(log, sent_lines(0, LINES))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_exporter_lines_total", LINES, source=str(log))
        assert exporter.stop() == 0
    generations = [g for g in (state, Path(f"{state}.1")) if g.exists()]
    for generation in generations:
        data = json.loads(generation.read_text())
        data["positions"][str(log)] = position
        generation.write_text(json.dumps(data))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.get("/-/healthy")[0] == 200
        assert exporter.get("/-/ready")[0] == 200
        # Neither generation can be trusted: no counter is kept, none is counted twice, reading goes on at the end.
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 0
        append(log, sent_lines(LINES, 5))
        exporter.wait_for("gmail_exporter_lines_total", 5, source=str(log))
        assert exporter.value("gmail_deliveries_total", status="sent") == 5
        assert exporter.value("gmail_exporter_source_up", source=str(log)) == 1
        assert exporter.stop() == 0
        output = exporter.output()
    assert output.count("is unusable") == len(generations) == 2  # each generation once
    assert "Traceback" not in output


def test_a_reader_that_fails_is_unhealthy_counted_and_resumes_without_counting_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the reader (not the file failing: that is the source's state, see test_read_errors) is simulated
    by a look that raises until the test lets it work again."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 20))
    broken = threading.Event()
    failures = 0
    real_look = FollowedFile.look

    def look(self: FollowedFile, stop: threading.Event) -> None:
        nonlocal failures
        if broken.is_set():
            failures += 1
            raise RuntimeError("injected bug")
        real_look(self, stop)

    monkeypatch.setattr(FollowedFile, "look", look)
    args = ("--log.path", str(log), "--from-beginning", "--state.file", str(tmp_path / "state.json"))
    with InProcessDaemon(*args) as running:
        assert running.value("gmail_exporter_lines_total", source=str(log)) == 20
        assert running.get("/-/healthy")[0] == 200

        broken.set()
        append(log, sent_lines(20, 10))
        # Until the reader has also set its state: unhealthy comes a moment before, and a reader starved on a busy
        # machine may not have got further when the metrics are read.
        wait_until(
            lambda: (
                failures >= 1
                and running.get("/-/healthy")[0] == 503
                and running.value("gmail_exporter_source_state", source=str(log), state="error") == 1
            ),
            "unhealthy and in error while it is down",
        )
        status, body = running.get("/-/healthy")
        assert status == 503 and f"{log}: reader failed: injected bug".encode() in body, body
        assert running.value("gmail_exporter_source_up", source=str(log)) == 0
        assert running.value("gmail_exporter_source_state", source=str(log), state="error") == 1
        assert running.value("gmail_exporter_lines_total", source=str(log)) == 20

        broken.clear()
        wait_until(lambda: running.value("gmail_exporter_lines_total", source=str(log)) >= 30, "recovery")
        wait_until(lambda: running.get("/-/healthy")[0] == 200, "healthy again")
        append(log, sent_lines(30, 3))
        wait_until(
            lambda: running.value("gmail_exporter_lines_total", source=str(log)) >= 33, "the next lines"
        )
        time.sleep(0.3)
        assert running.value("gmail_exporter_lines_total", source=str(log)) == 33
        assert running.value("gmail_deliveries_total", status="sent") == 33
        assert running.value("gmail_exporter_source_errors_total", source=str(log)) == failures
        assert running.value("gmail_exporter_source_up", source=str(log)) == 1
