"""A saved position that is not one, and a reader that fails: neither may leave a dead reader looking healthy, and
neither may count a line twice.

The first scenarios run the exporter as a process on a state file edited by hand; the last runs the daemon in this
process with a fault injected into a followed file's look, so the test decides when the reader fails and when it
may recover."""

from __future__ import annotations

import errno
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Exporter, append, free_port, parse_metrics, sent_lines

from exporter.cli import build_parser
from exporter.daemon import Daemon
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


class InProcessDaemon:
    """The daemon of `run` in a thread of the test process, on a free loopback port."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        parsed = build_parser("run").parse_args(
            ["run", "--web.listen-address", f"127.0.0.1:{self.port}", *args]
        )
        self.daemon = Daemon(parsed)
        self.thread = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def value(self, name: str, **labels: str) -> float:
        status, body = self.get("/metrics")
        assert status == 200, body
        wanted = set(labels.items())
        return sum(v for (n, ls), v in parse_metrics(body.decode()).items() if n == name and wanted <= ls)


@pytest.fixture
def daemon_in_process(tmp_path: Path) -> Iterator[list[InProcessDaemon]]:
    started: list[InProcessDaemon] = []
    yield started
    for running in started:
        running.daemon.stop()
        running.thread.join(15)
        assert not running.thread.is_alive()


def _until(condition: Any, what: str, timeout: float = 20.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_reader_that_fails_is_unhealthy_counted_and_resumes_without_counting_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon_in_process: list[InProcessDaemon]
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 20))
    broken = threading.Event()
    failures = 0
    real_look = FollowedFile.look

    def look(self: FollowedFile, stop: threading.Event) -> None:
        nonlocal failures
        if broken.is_set():
            failures += 1
            raise OSError(errno.EIO, "Input/output error (injected)")
        real_look(self, stop)

    monkeypatch.setattr(FollowedFile, "look", look)
    running = InProcessDaemon(
        "--log.path", str(log), "--from-beginning", "--state.file", str(tmp_path / "s.json")
    )
    daemon_in_process.append(running)
    running.thread.start()
    _until(lambda: running.get("/-/ready")[0] == 200, "ready")
    assert running.value("gmail_exporter_lines_total", source=str(log)) == 20
    assert running.get("/-/healthy")[0] == 200

    broken.set()
    append(log, sent_lines(20, 10))
    _until(
        lambda: failures >= 1 and running.get("/-/healthy")[0] == 503, "unhealthy while the reader is down"
    )
    status, body = running.get("/-/healthy")
    assert status == 503 and str(log).encode() in body, body
    assert running.value("gmail_exporter_source_up", source=str(log)) == 0
    assert running.value("gmail_exporter_source_state", source=str(log), state="error") == 1
    assert running.value("gmail_exporter_lines_total", source=str(log)) == 20

    broken.clear()
    _until(lambda: running.value("gmail_exporter_lines_total", source=str(log)) >= 30, "recovery")
    _until(lambda: running.get("/-/healthy")[0] == 200, "healthy again")
    append(log, sent_lines(30, 3))
    _until(lambda: running.value("gmail_exporter_lines_total", source=str(log)) >= 33, "the next lines")
    threading.Event().wait(0.3)
    assert running.value("gmail_exporter_lines_total", source=str(log)) == 33
    assert running.value("gmail_deliveries_total", status="sent") == 33
    assert running.value("gmail_exporter_source_errors_total", source=str(log)) == failures
    assert running.value("gmail_exporter_source_up", source=str(log)) == 1
