"""The journalctl the exporter runs dies with it, even when the exporter is killed with SIGKILL and cannot clean
up: otherwise every crash or OOM kill leaves a `journalctl --follow` running for ever."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import Exporter, fake_journalctl
from support import process_running

# Streams one entry like `journalctl --follow -o json`, then follows for ever; records its pid.
FOLLOWING_JOURNALCTL = """#!{python}
import json, os, sys, time
open(os.environ["FAKE_PID"], "w").write(str(os.getpid()))
entry = {{"__CURSOR": "c1", "__REALTIME_TIMESTAMP": "1795991524000000", "SYSLOG_IDENTIFIER": "postfix/smtp",
         "SYSLOG_PID": "1", "_HOSTNAME": "mx1", "MESSAGE": {message!r}}}
print(json.dumps(entry), flush=True)
while True:
    time.sleep(3600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_journalctl_is_gone_soon_after_the_exporter_is_killed_with_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "journalctl.pid"
    env = fake_journalctl(tmp_path, FOLLOWING_JOURNALCTL, FAKE_PID=str(pid_file))
    child = 0
    try:
        with Exporter(tmp_path, "--journal", env=env) as exporter:
            exporter.wait_for("gmail_deliveries_total", 1, status="sent")
            child = int(pid_file.read_text())
            assert process_running(child)
            exporter.kill9()
        deadline = time.monotonic() + 10
        while process_running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_running(child), "journalctl outlived the exporter"
    finally:
        if child and process_running(child):
            os.kill(child, 9)
