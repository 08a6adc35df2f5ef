"""A log that cannot be read is visible to people and to Prometheus, not just one line in the exporter's log: its
state in gmail_exporter_source_state, gmail_exporter_source_up 0 (GmailRejectionExporterSourceDown alerts on it), the
state on the landing page, and a warning from check-config (which still exits 0: the log may appear later), with
the adm-group hint when permission is denied."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import (
    REPO,
    Exporter,
    UnprivilegedExporter,
    append,
    as_nobody,
    run_exporter,
    sent_lines,
)

ADM_HINT = "add the user to the adm group, e.g. SupplementaryGroups=adm in the systemd unit"


def _landing_state(exporter: Exporter, log: Path) -> str:
    """The source's row on the landing page: "state | words shown | the system's words (when they add any)"."""
    status, page = exporter.get("/")
    assert status == 200
    row = re.search(
        rf"<code>{re.escape(str(log))}</code></td><td data-label=State><span class='state (\w+)'>([^<]*)</span>"
        r"(?:<br><span class='muted free'>([^<]*)</span>)?</td>",
        page.decode(),
    )
    assert row, page.decode()
    return f"{row[1]} | {row[2]} | {row[3] or ''}"


def _missing(log: Path) -> None:
    pass


def _directory(log: Path) -> None:
    log.mkdir()


def _fifo(log: Path) -> None:
    os.mkfifo(log)


CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "missing": (_missing, "missing", "No such file or directory"),
    "a directory": (_directory, "not_regular_file", "not a regular file"),
    "a FIFO": (_fifo, "not_regular_file", "not a regular file"),
}


@pytest.mark.parametrize(("make", "state", "shown"), CASES.values(), ids=CASES.keys())
def test_an_unreadable_log_shows_its_state_in_metrics_on_the_landing_page_and_in_check_config(
    tmp_path: Path, make: Callable[[Path], None], state: str, shown: str
) -> None:
    log, good = tmp_path / "mail.log", tmp_path / "other.log"
    make(log)
    good.touch()
    checked = run_exporter("check-config", "--log.path", str(log), "--log.path", str(good))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [f"gmail-rejection-exporter: warning: {log}: {state}: {shown}"]
    assert "OK" in checked.stdout
    with Exporter(tmp_path, "--log.path", str(log), "--log.path", str(good)) as exporter:
        assert exporter.value("gmail_exporter_source_up", source=str(log)) == 0
        assert exporter.value("gmail_exporter_source_state", source=str(log), state=state) == 1
        assert exporter.value("gmail_exporter_source_state", source=str(log)) == 1  # one state at a time
        assert exporter.value("gmail_exporter_source_up", source=str(good)) == 1
        assert exporter.value("gmail_exporter_source_state", source=str(good), state="open") == 1
        assert _landing_state(exporter, log) == f"{state} | {state.replace('_', ' ')} | {shown}"
        assert _landing_state(exporter, good) == "open | open | "
        assert (
            exporter.get("/-/ready")[0] == 200
        )  # the other log is read: not a reason to take the exporter out


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_log_the_exporters_user_cannot_read_shows_permission_denied_with_the_adm_hint(
    shared_dir: Path,
) -> None:
    log = shared_dir / "mail.log"
    append(log, sent_lines(0, 2))
    log.chmod(0o640)  # root:root 0640, as a mail log whose group is not the exporter's
    checked = subprocess.run(
        as_nobody([sys.executable, "-m", "exporter", "check-config", "--log.path", str(log)]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": "/"},
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.startswith(
        f"gmail-rejection-exporter: warning: {log}: permission_denied: Permission denied; "
    )
    assert ADM_HINT in checked.stderr
    exporter = UnprivilegedExporter(shared_dir, "--log.path", str(log), env={"HOME": "/"})
    with exporter:
        assert exporter.value("gmail_exporter_source_up", source=str(log)) == 0
        assert exporter.value("gmail_exporter_source_state", source=str(log), state="permission_denied") == 1
        assert _landing_state(exporter, log) == "permission_denied | permission denied | "
        log.chmod(0o644)
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_source_up", source=str(log)) == 1, 15, "the log readable"
        )
        assert _landing_state(exporter, log) == "open | open | "
        assert ADM_HINT in exporter.output()
