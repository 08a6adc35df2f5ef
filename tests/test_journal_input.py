"""The systemd journal as input: entries rebuilt as syslog lines, resumed from the saved cursor.

Uses the real journald when one runs here; otherwise a stand-in `journalctl` on PATH replays a recorded
`journalctl -o json` stream (same fields, same cursor and follow semantics).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from daemon_harness import RATE_REPLY, Exporter

HAS_JOURNALD = os.path.exists("/run/systemd/journal/socket") and shutil.which("systemd-cat") is not None

# Replays FAKE_JOURNAL (one JSON entry per line) like `journalctl --follow --output=json`; records its argv.
FAKE_JOURNALCTL = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_JOURNAL_ARGS"], "a") as f:
    f.write(json.dumps(args) + "\\n")
after = next((a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")), None)
seen = 0
entries = [json.loads(l) for l in open(os.environ["FAKE_JOURNAL"])]
if after is not None:
    seen = next(i + 1 for i, e in enumerate(entries) if e["__CURSOR"] == after)
elif "--lines=0" in args:
    seen = len(entries)
while True:
    entries = [json.loads(l) for l in open(os.environ["FAKE_JOURNAL"])]
    for entry in entries[seen:]:
        sys.stdout.write(json.dumps(entry) + "\\n")
    sys.stdout.flush()
    seen = len(entries)
    if os.path.exists(os.environ["FAKE_JOURNAL"] + ".exit"):
        os.unlink(os.environ["FAKE_JOURNAL"] + ".exit")
        sys.exit(1)
    time.sleep(0.05)
"""


def _message(n: int, status: str = "deferred") -> str:
    if status == "sent":
        return (
            f"{n:010X}: to=<user{n}@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=0.5, "
            f"delays=0/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK  1764451969 abc{n}.1 - gsmtp)"
        )
    return (
        f"{n:010X}: to=<user{n}@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=0.5, "
        f"delays=0/0/0.2/0.3, dsn=4.2.1, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
        f"{RATE_REPLY} abc{n}.1 - gsmtp (in reply to RCPT TO command))"
    )


def _entry(n: int, message: str, *, as_bytes: bool = False) -> dict[str, object]:
    return {
        "__CURSOR": f"s=5f1e;i={n:x};b=7a23;m={n:x};t=6452c1f{n:05x};x=1f{n:x}",
        "__REALTIME_TIMESTAMP": str(1795991524000000 + n * 1000),
        "__MONOTONIC_TIMESTAMP": str(877649377 + n),
        "_BOOT_ID": "7a23a73abdc647e18c2b1ed9482e1d81",
        "PRIORITY": "6",
        "SYSLOG_FACILITY": "2",
        "SYSLOG_IDENTIFIER": "postfix/smtp",
        "SYSLOG_PID": "9001",
        "_PID": "9001",
        "_COMM": "smtp",
        "_HOSTNAME": "mx1",
        "_SYSTEMD_UNIT": "postfix@-.service",
        "MESSAGE": list(message.encode()) if as_bytes else message,
    }


def _record(path: Path, entries: list[dict[str, object]]) -> None:
    with open(path, "a") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")


@pytest.mark.skipif(HAS_JOURNALD, reason="a real journald runs here: see test_real_journald")
def test_recorded_journal_is_read_and_resumed_from_its_cursor(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journalctl"
    fake.write_text(FAKE_JOURNALCTL.format(python=sys.executable))
    fake.chmod(0o755)
    journal = tmp_path / "journal.jsonl"
    _record(
        journal, [_entry(1, _message(1)), _entry(2, _message(2, "sent"), as_bytes=True), _entry(3, "noise")]
    )
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_JOURNAL": str(journal),
        "FAKE_JOURNAL_ARGS": str(tmp_path / "args.jsonl"),
    }
    args = ("--journal", "--journal.unit", "postfix@-.service")
    with Exporter(tmp_path, *args, "--from-beginning", env=env) as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred")
        exporter.wait_for("gmail_deliveries_total", 1, status="sent")
        assert exporter.value("gmail_rejections_total", category="rate_limit") == 1
        assert exporter.value("gmail_exporter_lines_total", source="journal") == 3
        assert exporter.value("gmail_last_delivery_timestamp_seconds") == 1795991524.002
        assert exporter.stop() == 0
    first_args = json.loads((tmp_path / "args.jsonl").read_text().splitlines()[0])
    assert "--unit=postfix@-.service" in first_args and "--no-tail" in first_args
    _record(journal, [_entry(4, _message(4)), _entry(5, _message(5))])
    with Exporter(tmp_path, *args, env=env) as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="deferred")
        # journalctl ends (journald restarted): the exporter counts it, starts it again after the cursor.
        (tmp_path / "journal.jsonl.exit").touch()
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_source_errors_total", source="journal") == 1
        )
        _record(journal, [_entry(6, _message(6))])
        exporter.wait_for("gmail_deliveries_total", 4, status="deferred", timeout=15)
        assert exporter.value("gmail_exporter_lines_total", source="journal") == 6
    resumed = json.loads((tmp_path / "args.jsonl").read_text().splitlines()[1])
    assert f"--after-cursor={_entry(3, '')['__CURSOR']}" in resumed


@pytest.mark.skipif(
    not HAS_JOURNALD, reason="no journald runs here (the recorded-stream test covers the input)"
)
def test_real_journald(tmp_path: Path) -> None:
    ident = f"gre-test-{uuid.uuid4().hex[:8]}"
    args = ("--journal", "--journal.identifier", ident)
    with Exporter(tmp_path, *args) as exporter:
        time.sleep(1)
        subprocess.run(["systemd-cat", "-t", ident], input=_message(1).encode(), check=True)
        exporter.wait_for("gmail_exporter_lines_total", 1, source="journal", timeout=15)
        assert exporter.stop() == 0
    subprocess.run(["systemd-cat", "-t", ident], input=_message(2).encode(), check=True)
    with Exporter(tmp_path, *args) as exporter:
        exporter.wait_for("gmail_exporter_lines_total", 2, source="journal", timeout=15)
