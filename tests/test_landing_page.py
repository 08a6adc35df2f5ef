"""The landing page, rendered by a real headless Chromium: readable, with the category table and redacted replies."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
from pathlib import Path

import pytest
from daemon_harness import GOOGLE, Exporter, append, bounced, deferred, sent

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


class _Tables(html.parser.HTMLParser):
    """Cell texts of the rows of every table, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _personal_reply(n: int) -> str:
    return (
        f"Nov 29 21:33:00 mx1 postfix/smtp[9001]: {n:010X}: to=<victim@gmail.com>, relay={GOOGLE}, delay=1, "
        "delays=0/0/0/1, dsn=5.1.1, status=bounced (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
        "550-5.1.1 The email account that you tried to reach does not exist: victim@gmail.com from 192.0.2.77 "
        "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser x1.1 - gsmtp (in reply to RCPT TO command))\n"
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by make system-deps")
def test_landing_page_renders_category_table(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    log = tmp_path / "mail.log"
    append(log, bounced(1) + bounced(2) + deferred(3) + sent(4) + _personal_reply(5))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="bounced")
        url = exporter.base + "/"
        common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
        screenshot = tmp_path / "landing.png"
        subprocess.run(
            [*common, f"--screenshot={screenshot}", "--window-size=1200,1600", url],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        dom = subprocess.run(
            [*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1600)
    assert len(data) > 20_000  # a page with text and tables, not a blank canvas
    tables = _Tables()
    tables.feed(dom)
    categories = {row[0]: row[1] for row in tables.tables["categories"][1:]}
    assert categories["authentication"] == "2"
    assert categories["rate_limit"] == "1"
    assert categories["recipient"] == "1"
    assert categories["spam"] == "0"
    assert len(categories) == 16
    recent = tables.tables["recent"][1:]
    assert [row[1] for row in recent] == ["recipient", "rate_limit", "authentication", "authentication"]
    assert "victim" not in dom and "192.0.2.77" not in dom
    assert "***@gmail.com" in recent[0][4] and "x.x.x.x" in recent[0][4]
    assert [row[0] for row in tables.tables["sources"][1:]] == [str(log)]
    assert 'href="/metrics"' in dom
