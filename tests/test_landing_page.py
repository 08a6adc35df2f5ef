"""The landing page of a running exporter, rendered by a real headless Chromium: the headline, categories with what
to fix, rejections by reason, the queue, the sources, escaped hostile text, and a layout that fits a phone."""

from __future__ import annotations

import base64
import calendar
import contextlib
import fcntl
import html
import json
import os
import re
import select
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import GOOGLE, RATE_REPLY, Exporter, append
from test_alert_rules import github_anchors

from exporter import landing
from exporter.categories import CATEGORIES, WHAT_TO_FIX, runbook_anchor
from exporter.config import DEFAULT_RUNBOOK_URL
from exporter.metrics import Metrics
from exporter.queue.reader import QueueSnapshot
from exporter.sources import SOURCE_STATES, SourceStatus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
RUNBOOK = Path(__file__).resolve().parent.parent / "deploy" / "runbook.md"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by make system-deps")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no port to find,
    no WebSocket, and the page's Content-Security-Policy stays in force."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def on_fds_3_and_4() -> None:  # where --remote-debugging-pipe reads and writes
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=on_fds_3_and_4, close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise AssertionError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise AssertionError("Chromium closed its end of the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        found: dict[str, Any] = json.loads(message)
        return found

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def _wait_event(self, method: str) -> None:
        deadline = time.monotonic() + 60
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._read(deadline))

    def open(self, url: str, width: int, height: int, *, mobile: bool) -> None:
        """Loads the page in a viewport of width x height CSS pixels (a phone's, with `mobile`)."""
        self.call(
            "Emulation.setDeviceMetricsOverride", session=True,
            width=width, height=height, deviceScaleFactor=1, mobile=mobile,
        )  # fmt: skip
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self._wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> tuple[int, int]:
        """Saves a PNG of the viewport (or the whole page) and returns its size in pixels."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params.update(clip=clip, captureBeyondViewport=True)
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True, **params)["data"])
        path.write_bytes(data)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

    def console(self) -> list[str]:
        """What the browser logged about the page (CSP violations, failed loads)."""
        return [e["params"]["entry"]["text"] for e in self.events if e.get("method") == "Log.entryAdded"]

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


_READ_PAGE = """(() => {
  const words = s => s.split(/\\s+/).filter(Boolean).join(' ');
  const text = {}, tables = {};
  document.querySelectorAll('[id]').forEach(e => { text[e.id] = words(e.innerText || e.textContent); });
  document.querySelectorAll('table[id]').forEach(t => {
    tables[t.id] = [...t.tBodies].flatMap(b => [...b.rows]).map(r => [...r.cells].map(c => words(c.innerText || c.textContent)));
  });
  return {text, tables};
})()"""


class Page:
    """What a test reads from the rendered page: the text of every element with an id (as the browser lays it
    out), and the body rows of every table by id."""

    def __init__(self, browser: Browser) -> None:
        found = browser.evaluate(_READ_PAGE)
        self.text: dict[str, str] = found["text"]
        self.tables: dict[str, list[list[str]]] = found["tables"]
        self.browser = browser

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table]

    def links(self, selector: str = "a") -> list[str]:
        """The resolved targets of the links that `selector` finds."""
        found: list[str] = self.browser.evaluate(
            f"[...document.querySelectorAll({selector!r})].map(a => a.href)"
        )
        return found


def iso(minute: int, second: int = 0) -> str:
    return f"2025-11-29T21:{minute:02d}:{second:02d}.000000+00:00"


def outcome(
    minute: int, queue_id: str, status: str, dsn: str, detail: str, to: str = "user@gmail.com"
) -> str:
    """A Postfix outcome line logged at 21:<minute> on 29 November 2025 (UTC)."""
    return (
        f"{iso(minute)} mx1 postfix/smtp[9001]: {queue_id}: to=<{to}>, relay={GOOGLE}, delay=1, "
        f"delays=0/0/0/1, dsn={dsn}, status={status} ({detail})\n"
    )


SAID = "host gmail-smtp-in.l.google.com[142.250.27.26] said: "
DMARC = (
    "550-5.7.26 Unauthenticated email from example.net is not accepted due to domain's 550-5.7.26 DMARC policy. "
    "550 5.7.26 https://support.google.com/mail/?p=DmarcRejection 41be03b00d2f7-b2c1si2 - gsmtp (in reply to end of DATA command)"
)
NO_SUCH_USER = (
    "550-5.1.1 The email account that you tried to reach does not exist: victim@gmail.com from 192.0.2.77 "
    "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b2c1si1 - gsmtp (in reply to RCPT TO command)"
)
RATE = f"{RATE_REPLY} 41be03b00d2f7-b2c1si3 - gsmtp (in reply to RCPT TO command)"
SENT = "250 2.0.0 OK  1764451969 abc.1 - gsmtp"

KNOWN_LOG = (
    outcome(30, "4F2A1B0001", "sent", "2.0.0", SENT)
    + outcome(31, "4F2A1B0002", "bounced", "5.7.26", SAID + DMARC)
    + outcome(32, "4F2A1B0003", "deferred", "4.2.1", SAID + RATE)
    + outcome(33, "4F2A1B0003", "deferred", "4.2.1", SAID + RATE)
    + outcome(34, "4F2A1B0003", "sent", "2.0.0", SENT)
    + outcome(35, "4F2A1B0004", "bounced", "5.1.1", SAID + NO_SUCH_USER, to="victim@gmail.com")
    + outcome(36, "4F2A1B0005", "deferred", "4.2.1", SAID + RATE)
    + f"{iso(37)} mx1 postfix/qmgr[811]: 4F2A1B0005: from=<a@example.net>, status=expired, returned to sender\n"
    + outcome(38, "4F2A1B0006", "bounced", "5.7.26", SAID + DMARC)
)
"""2 sent, 3 deferral attempts, 3 bounced, 1 expired; refusals: 2 DMARC, 3 rate limit, 1 unknown user."""


def postqueue_listing(now: float) -> str:
    """`postqueue -j` output: 2 recipients deferred by Gmail's rate limit (the oldest message, 90 minutes old), 1
    by DMARC, 1 timed out, 1 not tried yet, and 1 for another provider that does not count."""

    def message(queue_id: str, age: float, *recipients: dict[str, str]) -> str:
        entry = {
            "queue_name": "deferred", "queue_id": queue_id, "arrival_time": int(now - age),
            "message_size": 1000, "forced_expire": False, "sender": "a@example.net",
            "recipients": list(recipients),
        }  # fmt: skip
        return json.dumps(entry) + "\n"

    rate = {"address": "r@gmail.com", "delay_reason": SAID + RATE}
    return (
        message("5A0000000A", 5400, rate, {**rate, "address": "s@gmail.com"})
        + message("5A0000000B", 600, {"address": "d@gmail.com", "delay_reason": SAID + DMARC})
        + message(
            "5A0000000C",
            300,
            {"address": "t@gmail.com", "delay_reason": f"connect to {GOOGLE}: Connection timed out"},
        )
        + message("5A0000000D", 60, {"address": "n@gmail.com"})
        + message(
            "5A0000000E",
            7200,
            {"address": "x@example.org", "delay_reason": "connect to mx.example.org: refused"},
        )
    )


def stamp(minute: int) -> str:
    return f"2025-11-29 21:{minute:02d}:00 UTC"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("chromium is installed by make system-deps")
    chromium = Browser(tmp_path_factory.mktemp("profile"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """An exporter that has read KNOWN_LOG, listed a queue, and has a missing log and a directory as sources."""
    tmp = tmp_path_factory.mktemp("known")
    append(tmp / "mail.log", KNOWN_LOG)
    (tmp / "queue.json").write_text(postqueue_listing(time.time()))
    (tmp / "a-directory").mkdir()
    exporter = Exporter(
        tmp,
        *("--log.path", str(tmp / "mail.log"), "--log.path", str(tmp / "missing.log")),
        *("--log.path", str(tmp / "a-directory"), "--from-beginning"),
        *("--queue.mta", "postfix", "--queue.command", f"cat {tmp / 'queue.json'}"),
    )
    with exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="bounced")
        exporter.wait_for("gmail_exporter_queue_scrape_success", 1)
        yield exporter


HOSTILE_REPLY = (
    '550-5.7.1 <script>alert(1)</script> <img src=x onerror=alert(2)> "><a href="https://evil.example/">click</a> '
    "javascript:alert(3) https://support.google.com.evil.example/x http://support.google.com/mail/?p=Plain "
    '550-5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError"onmouseover="alert(4) '
    + "W" * 300
    + " 550 5.7.1 41be03b00d2f7-b2c1si4 - gsmtp (in reply to end of DATA command)"
)
HOSTILE_NAME = 'mail-<img src=x onerror=alert(5)>-"quoted"-' + "x" * 150 + ".log"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    """An exporter reading a log whose name and reply texts are an attacker's, whose queue listing fails with an
    address in the error, and whose web config sets its own Content-Security-Policy."""
    tmp = tmp_path_factory.mktemp("hostile")
    log = tmp / HOSTILE_NAME
    append(log, outcome(40, "4F2A1B00AA", "bounced", "5.7.1", SAID + HOSTILE_REPLY))
    web = tmp / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    Content-Security-Policy: \"default-src 'self'\"\n")
    exporter = Exporter(
        tmp,
        *("--log.path", str(log), "--from-beginning", "--web.config.file", str(web)),
        *("--queue.mta", "postfix", "--queue.command", "cat '/nonexistent/<b>victim@example.com</b>'"),
    )
    with exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        exporter.wait_until(lambda: b"No current queue listing: exit status" in exporter.get("/")[1])
        yield exporter


def render(browser: Browser, exporter: Exporter, width: int, height: int) -> Page:
    browser.open(exporter.base + "/", width, height, mobile=width < 600)
    return Page(browser)


@needs_chromium
def test_headline_counts_final_outcomes_and_shows_deferral_attempts_apart(
    browser: Browser, known: Exporter
) -> None:
    page = render(browser, known, 1280, 900)
    stats = {k: page.text[k] for k in ("acceptance", "sent", "bounced", "expired", "deferred", "in-a-row")}
    assert stats == {
        "acceptance": "33.3 %",  # 2 sent of 6 final outcomes; the 3 deferral attempts are not outcomes
        "sent": "2",
        "bounced": "3",
        "expired": "1",
        "deferred": "3",
        "in-a-row": "3",  # after the last sent: unknown user, rate limit, DMARC (an expiry is no refusal)
    }
    headline = page.text["headline"]
    assert f"Last accepted delivery {page.text['last-sent']} {stamp(34)}" in headline
    assert page.text["last-sent"].endswith(" ago")


@needs_chromium
def test_categories_say_what_to_fix_link_the_runbook_and_fold_zero_rows(
    browser: Browser, known: Exporter
) -> None:
    page = render(browser, known, 1280, 900)
    runbook = "· runbook"
    assert page.rows("categories") == [
        ["rate_limit", "3", stamp(36), f"{WHAT_TO_FIX['rate_limit']} {runbook}"],
        ["authentication", "2", stamp(38), f"{WHAT_TO_FIX['authentication']} {runbook}"],
        ["recipient", "1", stamp(35), f"{WHAT_TO_FIX['recipient']} {runbook}"],
    ]
    zero = [row[0] for row in page.rows("categories-zero")]
    assert zero == [c for c in CATEGORIES if c not in ("rate_limit", "authentication", "recipient")]
    assert browser.evaluate("document.getElementById('categories-zero-details').open") is False  # folded away
    anchors = github_anchors(RUNBOOK.read_text())
    category_links = page.links("#categories a, #categories-zero a")
    assert category_links == [
        f"{DEFAULT_RUNBOOK_URL}#{runbook_anchor(c)}"
        for c in ["rate_limit", "authentication", "recipient", *zero]
    ]
    for link in category_links:
        assert link.partition("#")[2] in anchors, link


@needs_chromium
def test_latest_rejections_are_grouped_by_reason_with_a_queue_id_to_grep(
    browser: Browser, known: Exporter
) -> None:
    page = render(browser, known, 1280, 900)
    rows = page.rows("reasons")
    assert [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in rows] == [
        ("dmarc_policy authentication", "2", stamp(31), stamp(38), "550 5.7.26", "4F2A1B0006"),
        ("recipient_receiving_rate rate_limit", "3", stamp(32), stamp(36), "450 4.2.1", "4F2A1B0005"),
        ("no_such_user recipient", "1", stamp(35), stamp(35), "550 5.1.1", "4F2A1B0004"),
    ]
    assert rows[2][5] == (
        "The email account that you tried to reach does not exist: ***@gmail.com from x.x.x.x "
        "https://support.google.com/mail/?p=NoSuchUser"
    )
    assert page.links("#reasons a") == [
        "https://support.google.com/mail/?p=DmarcRejection",
        "https://support.google.com/mail/?p=ReceivingRate",
        "https://support.google.com/mail/?p=NoSuchUser",
    ]
    dom = browser.evaluate("document.documentElement.outerHTML")
    assert "victim" not in dom and "192.0.2.77" not in dom


@needs_chromium
def test_queue_section_shows_what_waits_for_gmail_by_category_and_kind(
    browser: Browser, known: Exporter
) -> None:
    page = render(browser, known, 1280, 900)
    assert {
        k: page.text[k] for k in ("queue-refused", "queue-unanswered", "queue-not-tried", "queue-oldest")
    } == {
        "queue-refused": "3",
        "queue-unanswered": "1",
        "queue-not-tried": "1",
        "queue-oldest": "90 min",
    }
    assert [row[:2] for row in page.rows("queue-by-category")] == [
        ["rate_limit", "2"],
        ["authentication", "1"],
    ]
    assert page.rows("queue-by-kind") == [["timeout timed out", "1"], ["not_tried not tried yet", "1"]]
    assert re.fullmatch(
        r"Listed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago, took \d+\.\d\d s\)\.",
        page.text["queue-listed"],
    )


@needs_chromium
def test_each_source_shows_its_real_state_and_what_to_do(browser: Browser, known: Exporter) -> None:
    page = render(browser, known, 1280, 900)
    states = {Path(row[0]).name: (row[1], row[2]) for row in page.rows("sources")}
    assert states["mail.log"] == ("open", "—")
    assert states["missing.log"][0].startswith("missing")
    assert states["missing.log"][1] == landing.SOURCE_ADVICE["missing"]
    assert states["a-directory"][0].startswith("not regular file")
    assert states["a-directory"][1] == landing.SOURCE_ADVICE["not_regular_file"]


@needs_chromium
def test_page_refreshes_itself_and_loads_nothing_from_elsewhere(browser: Browser, known: Exporter) -> None:
    render(browser, known, 1280, 900)
    assert browser.evaluate("document.querySelector('meta[http-equiv=refresh]').content") == "30"
    assert browser.evaluate("document.scripts.length") == 0
    resources = browser.evaluate("performance.getEntriesByType('resource').map(r => r.name)")
    assert resources == [known.base + landing.STYLESHEET_PATH]
    status, _ = known.get("/")
    assert status == 200
    assert browser.evaluate("getComputedStyle(document.body).maxWidth") == "1180px"  # the stylesheet applies
    assert not [line for line in browser.console() if "Content Security Policy" in line]


@needs_chromium
def test_hostile_log_content_is_escaped_and_only_google_help_is_linked(
    browser: Browser, hostile: Exporter
) -> None:
    page = render(browser, hostile, 1280, 900)
    assert browser.evaluate("document.scripts.length") == 0
    handlers = "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
    assert not [name for name in browser.evaluate(handlers) if name.startswith("on")]
    body = browser.evaluate("document.body.innerText")
    assert (
        '<script>alert(1)</script> <img src=x onerror=alert(2)> "><a href="https://evil.example/">click</a>'
        in body
    )
    assert HOSTILE_NAME in body
    reply_links = browser.evaluate("[...document.querySelectorAll('#reasons .reply a')].map(a => a.href)")
    assert reply_links == ["https://support.google.com/mail/?p=UnsolicitedMessageError"]
    origin = hostile.base + "/"
    for link in browser.evaluate("[...document.links].map(a => a.href)"):
        assert link.startswith(("https://support.google.com/", DEFAULT_RUNBOOK_URL + "#", origin)), link
    assert page.text["queue-error"] == (
        "No current queue listing: exit status 1: cat: '/nonexistent/<b>***@example.com</b>': No such file or directory"
    )
    assert "victim" not in browser.evaluate("document.documentElement.outerHTML")


@needs_chromium
def test_the_web_configs_content_security_policy_is_kept_and_the_page_still_styled(
    browser: Browser, hostile: Exporter, known: Exporter
) -> None:
    assert _header(hostile, "/", "Content-Security-Policy") == "default-src 'self'"
    assert _header(known, "/", "Content-Security-Policy") == landing.CONTENT_SECURITY_POLICY
    for exporter in (hostile, known):
        browser.events.clear()
        render(browser, exporter, 1280, 900)
        assert browser.evaluate("getComputedStyle(document.body).maxWidth") == "1180px"
        assert not [line for line in browser.console() if "Content Security Policy" in line]


def _header(exporter: Exporter, path: str, name: str) -> str | None:
    with urllib.request.urlopen(exporter.base + path, timeout=10) as response:
        value: str | None = response.headers.get(name)
        return value


@needs_chromium
@pytest.mark.parametrize(("width", "height"), [(375, 800), (1280, 900)])
def test_nothing_overflows_at_phone_and_desktop_widths(
    browser: Browser, known: Exporter, hostile: Exporter, width: int, height: int, tmp_path: Path
) -> None:
    for name, exporter in (("known", known), ("hostile", hostile)):
        render(browser, exporter, width, height)
        browser.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        overflow = browser.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1], (name, overflow)
        assert browser.screenshot(tmp_path / f"{name}-{width}.png") == (width, height)
        browser.screenshot(tmp_path / f"{name}-{width}-full.png", full_page=True)


def test_counting_since_and_the_reason_summaries_are_kept_across_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, KNOWN_LOG)
    before = int(time.time())
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="bounced")
        first = exporter.get("/")[1].decode()
        after = time.time()
        assert exporter.stop() == 0
    with Exporter(
        tmp_path, "--log.path", str(log), "--web.runbook-url", "https://wiki.example.com/gm"
    ) as exporter:
        second = exporter.get("/")[1].decode()
    assert 'href="https://wiki.example.com/gm#category-rate_limit"' in second
    assert before <= _since(first) <= after
    assert _since(second) == _since(first)
    reasons = re.compile(r"<table id=reasons.*?</table>", re.S)
    first_reasons, second_reasons = reasons.search(first), reasons.search(second)
    assert first_reasons is not None and second_reasons is not None
    assert second_reasons.group(0) == first_reasons.group(0)
    assert "4F2A1B0006" in second_reasons.group(0)
    assert f"<time datetime='2025-11-29T21:34:00Z'>{stamp(34)}</time>" in second  # the last accepted delivery


def _since(body: str) -> int:
    match = re.search(r"<span id=since>since <time datetime='([^']+)'>", body)
    assert match, body[:2000]
    return calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ"))


def page_of(
    statuses: list[SourceStatus] | None = None,
    queue: QueueSnapshot | None = None,
    queue_off: bool = False,
    runbook_url: str = DEFAULT_RUNBOOK_URL,
) -> str:
    return landing.render(
        version="0",
        metrics=Metrics(categories=CATEGORIES, skip_reasons=()),
        statuses=statuses or [],
        queue=None if queue_off else lambda: queue or QueueSnapshot(success=False, error="not listed yet"),
        runbook_url=runbook_url,
        telemetry_path="/metrics",
        now=2e9,
    )


def test_every_source_state_says_what_to_do() -> None:
    assert set(landing.SOURCE_ADVICE) == set(SOURCE_STATES)
    statuses = [SourceStatus(name=f"/var/log/{state}.log", state=state) for state in SOURCE_STATES]
    body = page_of(statuses)
    for state in SOURCE_STATES:
        assert html.escape(landing.SOURCE_ADVICE[state] or "—") in body, state
    assert f'{DEFAULT_RUNBOOK_URL}#log-permissions-and-logrotate">runbook</a>' in body


def test_every_runbook_link_of_the_page_names_a_section_that_exists() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    body = page_of([SourceStatus(name="x", state="permission_denied")], queue_off=True)
    linked = re.findall(rf'href="{re.escape(DEFAULT_RUNBOOK_URL)}#([^"]+)"', body)
    assert {runbook_anchor(c) for c in CATEGORIES} | {
        "queue-reader-permissions",
        "log-permissions-and-logrotate",
    } == set(linked)
    assert set(linked) <= anchors


def test_the_runbook_url_setting_is_where_the_page_links() -> None:
    body = page_of(runbook_url="https://wiki.example.com/gmail")
    assert 'href="https://wiki.example.com/gmail#category-spam"' in body
    assert "github.com" not in body


def test_queue_states_each_say_what_they_mean() -> None:
    assert "The queue reader is off" in page_of(queue_off=True)
    assert "No current queue listing: not listed yet" in page_of()
    empty = QueueSnapshot(success=True, last_success_time=2e9 - 5, duration_seconds=0.25)
    body = page_of(queue=empty)
    assert "<p id=queue-empty>Nothing is waiting for Google.</p>" in body
    assert "(5 s ago, took 0.25 s)" in body


@pytest.mark.parametrize(
    ("reply", "links"),
    [
        (
            "see https://support.google.com/mail/?p=NoSuchUser.",
            ["https://support.google.com/mail/?p=NoSuchUser"],
        ),
        (
            "https://support.google.com/a/answer/81126#authentication,",
            ["https://support.google.com/a/answer/81126#authentication"],
        ),
        ("http://support.google.com/mail/?p=x", []),
        ("https://support.google.com.evil.example/mail", []),
        ("https://evil.example/https://support.google.com/", ["https://support.google.com/"]),
        ('https://support.google.com/x"onclick="alert(1)', ["https://support.google.com/x"]),
        ("https://support.google.com\\@evil.example/", []),
        ("javascript:alert(1) <a href=https://evil.example>x</a>", []),
    ],
)
def test_only_links_to_googles_help_become_links(reply: str, links: list[str]) -> None:
    rendered = landing.reply_html(reply)
    assert re.findall(r'<a href="([^"]*)"', rendered) == [html.escape(link) for link in links]
    assert "<" not in re.sub(r'<a href="[^"]*" rel="noopener noreferrer">|</a>', "", rendered)
