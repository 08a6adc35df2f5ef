"""Every reply of the corpus, as the real daemons logged it (tests/fixtures/logs, made by
tests/fixtures/make_mta_logs.sh), gets its category — one rejection per refused mail, for every MTA."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import CORPUS, REPO
from test_rules import FIRST_LINE_AMBIGUOUS

from exporter.analyse import Analyser
from exporter.events import Event
from exporter.offline import read_lines
from exporter.rules import load_rules

LOGS = REPO / "tests" / "fixtures" / "logs"
ROWS = {r.id: r for r in CORPUS}
RULES = load_rules()


def manifest() -> list[dict[str, str]]:
    with open(LOGS / "manifest.tsv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


MANIFEST = manifest()
LOG_FILES = sorted({row["log"] for row in MANIFEST})


def events_by_queue_id(log: str) -> dict[str, list[Event]]:
    analyser = Analyser(RULES)
    found: dict[str, list[Event]] = defaultdict(list)
    with open(LOGS / log, "rb") as stream:
        for result in analyser.analyse_batch(list(read_lines(stream))):
            assert isinstance(result, Event), f"{log}: skipped line: {result}"
            if result.delivery.queue_id:
                found[result.delivery.queue_id].append(result)
    return found


# OpenSMTPD drops the reply of a 421 that closes the connection at HELO: it logs only 'mta error
# reason=Connection closed unexpectedly' and fails the recipient with 'Network error on destination MXs'.
OPENSMTPD_REPLY_NOT_LOGGED = {"seed-06"}


def expected_category(mta: str, row: dict[str, str]) -> str | None:
    reply = ROWS[row["armed"] or row["id"]]
    if row["scenario"] in ("multimx", "refused"):
        return None  # the mail itself was accepted by the next MX, or never got a reply
    if mta == "sendmail" and reply.id in FIRST_LINE_AMBIGUOUS:
        return "unclassified"  # Sendmail logs only the first reply line
    if mta == "opensmtpd" and reply.id in OPENSMTPD_REPLY_NOT_LOGGED:
        return None  # a deferral without Google's words: a connection error
    return reply.category or None


def expected_status(mta: str, reply_code: str, stage: str) -> str:
    if mta == "opensmtpd" and stage in ("greeting", "ehlo"):
        return "deferred"  # OpenSMTPD retries whatever code the greeting or EHLO refusal had
    return {"2": "sent", "4": "deferred", "5": "bounced"}[reply_code[0]]


@pytest.mark.parametrize("log", LOG_FILES)
def test_every_mail_gets_one_outcome_with_its_category(log: str) -> None:
    rows = [row for row in MANIFEST if row["log"] == log]
    found = events_by_queue_id(log)
    wrong = []
    for row in rows:
        mta = row["mta"]
        outcomes = [
            e
            for q in row["queue_ids"].split(",")
            for e in found.get(q, [])
            if e.delivery.scope == "recipient"
        ]
        assert len(outcomes) == 1, (row, outcomes)
        (event,) = outcomes
        category = event.verdict.category if event.verdict else None
        if category != expected_category(mta, row):
            wrong.append((row["id"], row["scenario"], category, expected_category(mta, row)))
    assert wrong == []


@pytest.mark.parametrize("log", LOG_FILES)
def test_statuses_follow_the_reply_code(log: str) -> None:
    rows = [row for row in MANIFEST if row["log"] == log and row["scenario"] == "mx"]
    found = events_by_queue_id(log)
    for row in rows:
        reply = ROWS[row["armed"] or row["id"]]
        (event,) = [
            e for q in row["queue_ids"].split(",") for e in found[q] if e.delivery.scope == "recipient"
        ]
        assert event.delivery.status == expected_status(row["mta"], reply.code, reply.stage), row
        assert event.delivery.google_host is not None
        if event.verdict is not None and event.reply is not None:
            assert event.verdict.severity == ("temporary" if reply.code.startswith("4") else "permanent")
            assert event.reply is not None and event.reply.code == reply.code


def test_postfix_special_scenarios() -> None:
    rows = {row["scenario"] + row["id"]: row for row in MANIFEST if row["log"] == "postfix.log"}
    found = events_by_queue_id("postfix.log")
    (sasl,) = found[rows["saslbeyond-48"]["queue_ids"]]
    assert (sasl.delivery.status, sasl.verdict and sasl.verdict.category, sasl.verdict and sasl.verdict.severity) == (
        "deferred", "smtp_auth", "permanent"
    )  # fmt: skip
    (refused,) = found[rows["refusedaccept-01"]["queue_ids"]]
    assert (refused.delivery.status, refused.delivery.connection_error) == ("deferred", "refused")
    multi = found[rows["multimxaccept-02"]["queue_ids"]]
    assert [(e.delivery.scope, e.delivery.status, e.verdict and e.verdict.category) for e in multi] == [
        ("connection", None, "policy"),
        ("recipient", "sent", None),
    ]


def test_exim_host_line_and_recipient_line_are_one_rejection() -> None:
    found = events_by_queue_id("exim.log")
    pairs = [events for events in found.values() if len(events) == 2]
    assert pairs, "the Exim fixture has host-level lines"
    for host_line, recipient_line in pairs:
        assert (host_line.delivery.scope, recipient_line.delivery.scope) == ("connection", "recipient")
        assert host_line.verdict == recipient_line.verdict
        assert [host_line.is_rejection, recipient_line.is_rejection] == [False, True]


def test_fixture_logs_come_from_every_mta() -> None:
    assert {row["mta"] for row in MANIFEST} == {"postfix", "exim", "sendmail", "opensmtpd"}
    for log in LOG_FILES:
        assert (LOGS / log).stat().st_size > 10_000
    assert Path(LOGS / "manifest.tsv").exists()
