"""Kubernetes probes the exporter from the moment it listens: before its sources have started, /-/ready says not
ready and /-/healthy says healthy, never an internal error (the health check once paired threads with sources
before the threads existed)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from daemon_harness import append, sent_lines
from support import InProcessDaemon, wait_until

from exporter.daemon import Daemon
from exporter.sources.files import FollowedFile


def test_probes_before_the_sources_start_answer_not_ready_and_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 2))
    listening, go_on = threading.Event(), threading.Event()
    real_start = Daemon._start_sources

    def start_sources(self: Daemon) -> None:
        listening.set()
        go_on.wait(30)
        real_start(self)

    monkeypatch.setattr(Daemon, "_start_sources", start_sources)
    running = InProcessDaemon(
        "--log.path", str(log), "--from-beginning", "--state.file", str(tmp_path / "s.json")
    )
    running.thread.start()
    try:
        assert listening.wait(20)
        assert running.get("/-/ready") == (503, b"Not ready: opening sources\n")
        assert running.get("/-/healthy") == (200, b"Healthy\n")
        go_on.set()
        wait_until(lambda: running.get("/-/ready")[0] == 200, "ready")
        assert running.value("gmail_deliveries_total", status="sent") == 2
    finally:
        go_on.set()
        running.__exit__()


def test_not_ready_until_the_first_look_has_read_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A followed file is `open` as soon as it is opened, before its first look reads it: ready then, the exporter
    served a /metrics without the lines it was started to read (seen as 0 of 20 under load)."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 20))
    release = threading.Event()
    real_look = FollowedFile.look

    def slow_first_look(self: FollowedFile, stop: threading.Event) -> None:
        release.wait(30)
        real_look(self, stop)

    monkeypatch.setattr(FollowedFile, "look", slow_first_look)
    daemon = InProcessDaemon(
        "--log.path", str(log), "--from-beginning", "--state.file", str(tmp_path / "s.json")
    )
    daemon.thread.start()
    try:
        wait_until(lambda: [s.state for s in daemon.daemon.statuses()] == ["open"], "the log opened")
        assert daemon.get("/-/ready")[0] == 503
        release.set()
        wait_until(lambda: daemon.get("/-/ready")[0] == 200, "ready")
        assert daemon.value("gmail_exporter_lines_total", source=str(log)) == 20
    finally:
        release.set()
        daemon.__exit__()
