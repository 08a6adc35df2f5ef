"""Source trouble: each gets a clear log message, gmail_exporter_source_errors_total, retries and recovers
without a restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from daemon_harness import (
    NOBODY,
    Exporter,
    UnprivilegedExporter,
    append,
    bounced,
    fake_journalctl,
    sent_lines,
)


def test_log_missing_at_start_is_reported_once_and_read_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1
        append(log, sent_lines(0, 3) + bounced(3))
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1
        output = exporter.output()
    assert (
        f"WARNING exporter.sources.files: {log} does not exist (yet); it is read from its start when it appears"
        in output
    )
    assert output.count("does not exist (yet)") == 1
    assert f"INFO exporter.sources.files: {log}: opened" in output


def test_log_replaced_by_a_directory_then_by_a_file_again(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 2))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        os.unlink(log)
        log.mkdir()
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1, 10, "an error"
        )
        assert exporter.get("/metrics")[0] == 200  # still serving
        assert exporter.value("gmail_exporter_source_state", source=str(log), state="not_regular_file") == 1
        assert exporter.value("gmail_exporter_source_up", source=str(log)) == 0
        log.rmdir()
        append(log, sent_lines(2, 3))
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")
        assert exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1
        assert exporter.value("gmail_exporter_source_up", source=str(log)) == 1
        output = exporter.output()
    assert (
        f"WARNING exporter.sources.files: {log} is not a regular file (a FIFO, device or directory)" in output
    )
    assert output.count("is not a regular file") == 1
    assert f"{log}: opened" in output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_permission_denied_is_reported_and_recovers_when_readable(shared_dir: Path) -> None:
    log = shared_dir / "mail.log"
    append(log, sent_lines(0, 2))
    log.chmod(0o000)
    exporter = UnprivilegedExporter(shared_dir, "--log.path", str(log), "--from-beginning", env={"HOME": "/"})
    with exporter:
        probe = exporter.proc
        assert probe is not None and os.stat(f"/proc/{probe.pid}").st_uid == NOBODY
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1, 10, "an error"
        )
        assert exporter.value("gmail_exporter_source_state", source=str(log), state="permission_denied") == 1
        append(log, sent_lines(2, 1))  # root still writes
        log.chmod(0o644)
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        assert exporter.value("gmail_exporter_source_errors_total", source=str(log)) == 1
        output = exporter.output()
    assert (
        f"WARNING exporter.sources.files: cannot open {log}: Permission denied; the exporter's user" in output
    )
    assert "add the user to the adm group" in output
    assert output.count("Permission denied") == 1
    assert f"{log}: opened" in output


# Exits with an error twice (journald restarting), then streams entries like `journalctl --follow -o json`.
FLAKY_JOURNALCTL = """#!{python}
import json, os, sys, time
runs = os.environ["FAKE_RUNS"]
n = int(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "w").write(str(n + 1))
if n < 2:
    sys.stderr.write("Failed to get journal fd: Connection refused\\n")
    sys.exit(1)
for i in range(5):
    entry = {{"__CURSOR": f"c{{i}}", "__REALTIME_TIMESTAMP": "1795991524000000", "SYSLOG_IDENTIFIER": "postfix/smtp",
             "SYSLOG_PID": "1", "_HOSTNAME": "mx1", "MESSAGE": {message!r}}}
    print(json.dumps(entry), flush=True)
time.sleep(3600)
"""


def test_journalctl_failing_is_retried_with_backoff_and_recovers(tmp_path: Path) -> None:
    env = fake_journalctl(tmp_path, FLAKY_JOURNALCTL, FAKE_RUNS=str(tmp_path / "runs"))
    with Exporter(tmp_path, "--journal", env=env) as exporter:
        exporter.wait_for("gmail_deliveries_total", 5, status="sent", timeout=15)
        assert exporter.value("gmail_exporter_source_errors_total", source="journal") == 2
        assert exporter.value("gmail_exporter_lines_total", source="journal") == 5
        output = exporter.output()
    assert (tmp_path / "runs").read_text() == "3"
    assert (
        output.count(
            "WARNING exporter.sources.journal: journalctl: Failed to get journal fd: Connection refused"
        )
        == 2
    )
    assert "WARNING exporter.sources.journal: journalctl exited with status 1" in output
    assert "journalctl ended; starting it again in 2 s" in output
    assert "journalctl ended; starting it again in 4 s" in output


def test_standard_input_closing_keeps_serving_what_was_read(tmp_path: Path) -> None:
    import subprocess

    exporter = Exporter(tmp_path, "--log.path", "-", stdin=subprocess.PIPE)
    with exporter:
        assert exporter.proc is not None and exporter.proc.stdin is not None
        exporter.proc.stdin.write((sent_lines(0, 2) + bounced(2)).encode())
        exporter.proc.stdin.close()  # `docker logs -f` ended
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        exporter.wait_until(lambda: "standard input closed" in exporter.output(), 10, "the log message")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.get("/-/ready")[0] == 200  # a finished source is not a failing one
        assert exporter.proc.poll() is None
    assert "INFO exporter.sources.stdin: standard input closed; still serving the metrics read so far" in (
        exporter.output()
    )
