"""How one event updates the metric families: what counts once, what never becomes a label."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from exporter.analyse import SKIP_REASONS, Analyser
from exporter.events import Event
from exporter.metrics import Metrics
from exporter.metrics.saved import dump, restore
from exporter.metrics.store import MAX_REASON_SUMMARIES, ReasonSummary
from exporter.rules import CATEGORIES, load_rules

ANALYSER_RULES = load_rules()


def events(*lines: bytes) -> list[Event]:
    analyser = Analyser(ANALYSER_RULES, now=0)
    found = analyser.analyse_batch(list(lines))
    assert all(isinstance(e, Event) for e in found)
    return [e for e in found if isinstance(e, Event)]


def fresh() -> Metrics:
    return Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS)


NEXT_MX = (
    b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: connect to gmail-smtp-in.l.google.com[192.0.2.7]:25: "
    b"Connection timed out"
)
OUTCOME = (
    b"Nov 29 21:33:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=none, delay=30, delays=0/0/30/0, "
    b"dsn=4.4.1, status=deferred (connect to alt1.gmail-smtp-in.l.google.com[192.0.2.8]:25: Connection timed out)"
)
REFUSED_AT_FIRST_MX = (
    b"Nov 29 21:34:49 mx1 postfix/smtp[1]: ABC124: host gmail-smtp-in.l.google.com[192.0.2.7] said: 421-4.7.28 "
    b"[192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail 421 4.7.28 ab12cd.3 - gsmtp"
)


def test_a_deferral_counts_once_however_many_mx_were_tried() -> None:
    metrics = fresh()
    for event in events(NEXT_MX, NEXT_MX, OUTCOME):
        metrics.observe(event)
    assert metrics.connection_errors["timeout"] == 1
    assert metrics.deliveries[("deferred",)] == 1


def test_a_reply_without_recipient_outcome_is_no_rejection() -> None:
    metrics = fresh()
    (event,) = events(REFUSED_AT_FIRST_MX)
    metrics.observe(event)
    assert sum(metrics.rejections.values()) == 0
    assert metrics.consecutive == 0


def rejection(minute: int, queue_id: str, reply: str) -> bytes:
    return (
        f"2025-11-29T21:{minute:02d}:00+00:00 mx1 postfix/smtp[1]: {queue_id}: to=<someone@gmail.com>, "
        f"relay=gmail-smtp-in.l.google.com[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=4.7.28, status=deferred "
        f"(host gmail-smtp-in.l.google.com[192.0.2.7] said: {reply} (in reply to end of DATA command))"
    ).encode()


RATE = "421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail 421 4.7.28 ab12cd.3 - gsmtp"
DMARC = (
    "550-5.7.26 Unauthenticated email from example.net is not accepted due to domain's DMARC policy. "
    "550 5.7.26 ab12cd.4 - gsmtp"
)
SENT = (
    b"2025-11-29T21:40:00+00:00 mx1 postfix/smtp[1]: ABC200: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
    b"[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK 1 ab12cd.5 - gsmtp)"
)
T = 1764451200.0  # 2025-11-29 21:20:00 UTC


def test_rejections_are_summarised_by_reason_with_first_last_and_the_latest_example() -> None:
    metrics = fresh()
    for event in events(
        rejection(33, "ABC101", RATE), rejection(31, "ABC100", RATE), rejection(35, "ABC102", DMARC)
    ):
        metrics.observe(event)
    (dmarc, rate) = metrics.reason_summaries()
    category, _, summary = rate
    assert (category, summary.count, summary.first, summary.last) == ("rate_limit", 2, T + 660, T + 780)
    assert (summary.code, summary.enhanced_code, summary.queue_id) == ("421", "4.7.28", "ABC101")
    assert "x.x.x.x" in summary.text and "192.0.2.1" not in summary.text  # redacted on the way out
    assert dmarc[0] == "authentication" and dmarc[2].queue_id == "ABC102"
    assert [r.queue_id for r in metrics.recent()] == ["ABC101", "ABC100", "ABC102"]


def test_a_queue_id_that_is_not_one_is_not_kept() -> None:
    metrics = fresh()
    (event,) = events(rejection(31, "ABC100", RATE))
    event.delivery.queue_id = "victim@example.com"
    metrics.observe(event)
    assert metrics.recent()[0].queue_id == ""
    assert metrics.reason_summaries()[0][2].queue_id == ""


def test_reason_summaries_are_bounded_and_drop_the_one_seen_longest_ago() -> None:
    metrics = fresh()
    for n in range(MAX_REASON_SUMMARIES + 1):
        metrics.summarise("temporary", f"r{n}", ReasonSummary(1.0, 100.0 + n, 1000.0 + n, "", "", "", ""))
    metrics.summarise("temporary", "r1", ReasonSummary(1.0, 5000.0, 5000.0, "", "", "", ""))  # seen again
    metrics.summarise("temporary", "new", ReasonSummary(1.0, 6000.0, 6000.0, "", "", "", ""))
    assert len(metrics.reasons) == MAX_REASON_SUMMARIES
    offered = {f"r{n}" for n in range(MAX_REASON_SUMMARIES + 1)} | {"new"}
    assert offered - {r for _, r in metrics.reasons} == {"r0", "r2"}
    assert metrics.reasons[("temporary", "r1")].count == 2


def test_last_sent_is_the_latest_accepted_delivery_only() -> None:
    metrics = fresh()
    for event in events(SENT, rejection(45, "ABC101", RATE)):
        metrics.observe(event)
    assert metrics.last_sent == T + 1200
    assert metrics.last_delivery == T + 1500


def counted(clock: float = 2e9) -> Metrics:
    metrics = Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS, clock=lambda: clock)
    for event in events(SENT, rejection(31, "ABC100", RATE), rejection(35, "ABC102", DMARC)):
        metrics.observe(event)
    return metrics


def test_summaries_last_sent_and_counting_since_survive_a_save_and_restore_through_json() -> None:
    saved = json.loads(json.dumps(dump(counted(clock=1.8e9))))
    restored = Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS, clock=lambda: 2e9)
    restore(restored, saved)
    assert restored.counting_since == 1.8e9
    assert restored.last_sent == T + 1200
    assert restored.reason_summaries() == counted().reason_summaries()
    assert restored.recent() == counted().recent()


def test_a_state_file_from_before_these_were_kept_restores_with_counting_since_unknown() -> None:
    saved = dump(counted())
    for key in ("reasons", "last_sent", "counting_since"):
        del saved[key]
    saved["recent"] = [item[:6] for item in saved["recent"]]
    restored = fresh()
    restore(restored, saved)
    assert restored.counting_since == 0
    assert restored.last_sent == 0
    assert [r.queue_id for r in restored.recent()] == ["", ""]
    assert restored.reasons == {}


def test_counting_since_ahead_of_the_clock_becomes_now() -> None:
    saved = dump(counted())
    saved["counting_since"] = 4e9
    restored = Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS, clock=lambda: 2e9)
    restore(restored, saved)
    assert restored.counting_since == 2e9


def test_an_address_saved_as_a_queue_id_is_not_restored() -> None:
    saved = dump(counted())
    saved["reasons"][0][8] = "victim@example.com"
    saved["recent"][0][6] = "victim@example.com"
    restored = fresh()
    restore(restored, saved)
    assert "victim" not in json.dumps(dump(restored))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.update(counting_since="yesterday"), "metrics.counting_since"),
        (lambda d: d.update(counting_since=-1), "metrics.counting_since"),
        (lambda d: d.update(counting_since=float("nan")), "metrics.counting_since"),
        (lambda d: d.update(last_sent=True), "metrics.last_sent"),
        (lambda d: d.update(reasons={"rate_limit": 1}), "metrics.reasons"),
        (lambda d: d["reasons"][0].pop(), "metrics.reasons[0]: expected 9 fields"),
        (lambda d: d["reasons"][0].__setitem__(2, -1), "metrics.reasons[0]"),
        (lambda d: d["reasons"][0].__setitem__(2, "3"), "metrics.reasons[0]"),
        (lambda d: d["reasons"][0].__setitem__(3, 2e9 + 1), "first seen"),
        (lambda d: d["reasons"][0].__setitem__(7, ["text"]), "metrics.reasons[0]"),
        (lambda d: d["reasons"][0].__setitem__(8, None), "metrics.reasons[0]"),
        (lambda d: d["recent"][0].append("extra"), "metrics.recent[0]: expected 7 fields"),
        (lambda d: d["recent"][0].__setitem__(6, 42), "metrics.recent[0]"),
    ],
)
def test_a_damaged_saved_value_is_refused_and_changes_nothing(damage: Any, message: str) -> None:
    saved = json.loads(json.dumps(dump(counted())))
    damage(saved)
    metrics = fresh()
    before = dump(metrics)
    with pytest.raises(ValueError, match=re.escape(message)):
        restore(metrics, saved)
    assert dump(metrics) == before
