"""Finding what Google changed: `report` lists the Google refusals no rule matched by template, with a rule stub
that the user pastes into their own rules file; `classify --unclassified` prints only those refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exporter.events import Delivery, Event, Reply, Verdict
from exporter.offline import MAX_TEMPLATES, Report
from exporter.redact import template
from exporter.reply import normalise
from exporter.rules import load_rules, rule_stub


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TZ": "UTC"},  # the stamps are local time
    )


def outcome(queue_id: str, when: str, reply: str, dsn: str = "5.7.1") -> str:
    host = "gmail-smtp-in.l.google.com[142.250.1.27]"
    return (
        f"Nov 29 {when} mx1 postfix/smtp[1]: {queue_id}: to=<someone@gmail.com>, relay={host}:25, delay=1, "
        f"delays=0/0/0/1, dsn={dsn}, status=bounced (host {host} said: {reply} (in reply to end of DATA command))"
    )


NEW_WORDING = (
    "550-5.7.1 [{ip} 12] Your sender {domain} has sent {n} messages today and is 550-5.7.1 blocked for now. "
    "Contact {address} or visit 550 5.7.1 https://support.google.com/mail/?p=NewThing {sid} - gsmtp"
)
LOG = "\n".join(
    [
        outcome(
            "ABC123", "21:32:49",
            NEW_WORDING.format(ip="192.0.2.9", domain="example.org", n=1234, address="a@b.example", sid="a1si12345.1"),
        ),
        outcome(
            "ABC124", "21:40:00",
            "550-5.7.1 [192.0.2.9 12] Our system has detected that this message is likely unsolicited mail. "
            "550 5.7.1 a1si12345.2 - gsmtp",
        ),
        outcome(
            "ABC125", "22:15:10",
            NEW_WORDING.format(ip="2001:db8::25", domain="other.example", n=99, address="c@d.example",
                               sid="ffacd0b85a97d-45d9ec344536t8f.12"),
        ),
        outcome("ABC126", "22:20:00", "421-4.7.99 Something else entirely, 7 times. a1si1234567wra.3 - gsmtp", "4.7.99"),
    ]
) + "\n"  # fmt: skip


def test_report_lists_unmatched_refusals_by_template_with_count_and_first_and_last_seen(
    tmp_path: Path,
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(LOG)
    done = run("report", "--format", "json", str(log))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["unmatched_replies"]
    assert [
        {k: u[k] for k in ("code", "enhanced_code", "template", "count", "first_seen", "last_seen")}
        for u in listed
    ] == [
        {
            "code": "550",
            "enhanced_code": "5.7.1",
            "template": "[<ip> <n>] Your sender <domain> has sent <n> messages today and is blocked for now. "
            "Contact <address> or visit https://support.google.com/mail/?p=NewThing",
            "count": 2,
            "first_seen": "2026-11-29T21:32:49+0000",
            "last_seen": "2026-11-29T22:15:10+0000",
        },
        {
            "code": "421",
            "enhanced_code": "4.7.99",
            "template": "Something else entirely, <n> times.",
            "count": 1,
            "first_seen": "2026-11-29T22:20:00+0000",
            "last_seen": "2026-11-29T22:20:00+0000",
        },
    ]
    assert listed[0]["rule"] == (
        "- {reason: gmail_5_7_1_your_sender_messages_today, category: message, code: [550], enhanced_code: "
        '[5.7.1], phrases: ["Your sender", "messages today and is blocked for now. Contact"]}  # category guessed: '
        "check it"
    )
    assert "a@b.example" not in done.stdout and "192.0.2.9" not in done.stdout
    text = run("report", str(log)).stdout
    assert "Google refusals no rule matched, by template" in text
    assert listed[0]["rule"] in text and listed[1]["template"] in text


def test_the_rule_stub_pasted_into_a_user_rules_file_classifies_the_reply(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(LOG)
    listed = json.loads(run("report", "--format", "json", str(log)).stdout)["unmatched_replies"]
    mine = tmp_path / "mine.yml"
    mine.write_text("rules:\n" + "".join(f"  {u['rule']}\n" for u in listed))
    assert run("check-rules", str(mine)).returncode == 0
    events = [
        json.loads(line) for line in run("classify", "--rules.file", str(mine), str(log)).stdout.splitlines()
    ]
    assert [(e["line"], e["category"], e["reason"]) for e in events] == [
        (1, "message", "gmail_5_7_1_your_sender_messages_today"),
        (2, "spam", "likely_unsolicited"),
        (3, "message", "gmail_5_7_1_your_sender_messages_today"),
        (4, "temporary", "gmail_4_7_99_something_else_entirely"),
    ]
    again = json.loads(run("report", "--format", "json", "--rules.file", str(mine), str(log)).stdout)
    assert again["unmatched_replies"] == []


def test_classify_unclassified_prints_only_the_refusals_no_rule_matched(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(LOG)
    events = [json.loads(line) for line in run("classify", "--unclassified", str(log)).stdout.splitlines()]
    assert [(e["line"], e["code"], e["enhanced_code"], e["reason"]) for e in events] == [
        (1, "550", "5.7.1", "unknown"),
        (3, "550", "5.7.1", "unknown"),
        (4, "421", "4.7.99", "unknown"),
    ]


def test_templates_are_bounded_whatever_the_log_holds() -> None:
    report = Report(rules=load_rules())
    for n in range(MAX_TEMPLATES + 50):
        words = " ".join(f"w{chr(97 + int(d))}" for d in str(n))  # distinct words, not numbers
        reply = Reply("550", "5.7.1", f"Brand new wording {words}", "gsmtp", True)
        delivery = Delivery("postfix", "recipient", "bounced", float(n), "Q", "gmail.com", "h", "r")
        report.add(Event(delivery, reply, Verdict("unclassified", "unknown", "permanent")))
    assert (len(report.unmatched), report.unmatched_not_listed) == (MAX_TEMPLATES, 50)


def test_a_stub_with_quotes_and_backslashes_is_still_a_valid_rule(tmp_path: Path) -> None:
    text = 'Header "X-Odd\\\\Thing" is not allowed here, sorry'
    shape = template(text)
    stub = rule_stub(load_rules(), "550", "5.7.1", shape)
    assert stub is not None
    mine = tmp_path / "mine.yml"
    mine.write_text(f"rules:\n  {stub}\n")
    rules = load_rules([str(mine)])
    assert rules.classify(normalise(f"550 5.7.1 {text}")).reason.startswith("gmail_5_7_1_header")
