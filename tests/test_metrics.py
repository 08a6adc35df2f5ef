"""How one event updates the metric families: what counts once, what never becomes a label."""

from __future__ import annotations

from exporter.analyse import SKIP_REASONS, Analyser
from exporter.events import Event
from exporter.metrics import Metrics
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
