"""The rules file: every Gmail reply of the corpus gets its category, in every shape an MTA logs it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import REFUSALS, REPO, CorpusReply
from fixtures.gmail_lookalike import format_reply

from exporter.analyse import SKIP_REASONS, Analyser
from exporter.errors import ConfigError
from exporter.events import Event
from exporter.metrics import Metrics
from exporter.reply import normalise
from exporter.rules import CATEGORIES, load_rules

RULES = load_rules()

# Rows whose first reply line (all that Sendmail logs) does not say which message it is: Gmail starts
# several 5.7.1/4.7.0 messages with the same "Our system has detected that this message is" line.
FIRST_LINE_AMBIGUOUS = {
    "beyond-30",
    "beyond-31",
    "beyond-32",
    "beyond-35",
    "seed-46",
}


def wire_lines(row: CorpusReply) -> list[str]:
    return format_reply(row, sid="a640c23a62f3a-aac0eff19desi1759812166b.313")


def logged(row: CorpusReply, style: str) -> str:
    lines = wire_lines(row)
    if style == "postfix":
        return " ".join(lines)
    if style == "exim":
        return "\\n".join(lines)
    if style == "opensmtpd":
        rest = [line[4:] for line in lines[1:]]
        if row.enhanced_code and len(row.enhanced_code.rsplit(".", 1)[1]) == 1:
            rest = [line[len(row.enhanced_code) + 1 :] for line in rest]
        return lines[0] + "".join(rest)
    assert style == "sendmail"
    return lines[0].replace("-", " ", 1)


@pytest.mark.parametrize("style", ["postfix", "exim", "opensmtpd"])
@pytest.mark.parametrize("row", REFUSALS, ids=lambda r: r.id)
def test_corpus_reply_gets_its_category(row: CorpusReply, style: str) -> None:
    reply = normalise(logged(row, style))
    assert (reply.code, reply.enhanced_code, reply.origin) == (row.code, row.enhanced_code, row.origin)
    verdict = RULES.classify(reply)
    assert verdict.category == row.category, (verdict, reply.text)
    assert verdict.severity == ("temporary" if row.code.startswith("4") else "permanent")


@pytest.mark.parametrize("row", REFUSALS, ids=lambda r: r.id)
def test_first_line_only_is_right_or_honestly_unclassified(row: CorpusReply) -> None:
    verdict = RULES.classify(normalise(logged(row, "sendmail")))
    if row.id in FIRST_LINE_AMBIGUOUS:
        first_line = wire_lines(row)[0]
        assert (verdict.category, verdict.reason) == ("unclassified", "ambiguous_first_line"), first_line
    else:
        assert verdict.category == row.category, verdict


def test_every_seed_row_is_in_the_corpus() -> None:
    seed = sorted(int(r.id.split("-")[1]) for r in REFUSALS if r.id.startswith("seed-"))
    assert seed == list(range(61))


def test_every_category_has_rules_and_unclassified_only_says_a_first_line_is_ambiguous() -> None:
    used = {rule.category for rule in RULES.rules}
    assert used == set(CATEGORIES)
    unclassified = {rule.reason for rule in RULES.rules if rule.category == "unclassified"}
    assert unclassified == {"ambiguous_first_line"}


def test_unmatched_refusal_is_unclassified_with_its_severity() -> None:
    verdict = RULES.classify(normalise("550 5.7.1 Something Google never said before - gsmtp"))
    assert (verdict.category, verdict.reason, verdict.severity) == ("unclassified", "unknown", "permanent")


def test_no_reply_logged() -> None:
    verdict = RULES.classify(None, fallback_severity="permanent")
    assert (verdict.category, verdict.reason) == ("unclassified", "no_reply_logged")


def test_gcdp_beats_any_wording() -> None:
    reply = normalise(
        "550 5.7.26 Unauthenticated email from x.example is not accepted due to domain's DMARC policy - gcdp a1b2c3.4 - gsmtp"
    )
    assert RULES.classify(reply).category == "policy"


def test_hostile_text_is_classified_in_linear_time() -> None:
    reply = normalise("550 5.7.1 " + "a" * 4000 + " ptr" * 500)
    start = time.perf_counter()
    for _ in range(20):
        RULES.match(reply)
    assert time.perf_counter() - start < 1.0


def test_user_rule_overrides_and_disables(tmp_path: Path) -> None:
    user = tmp_path / "mine.yml"
    user.write_text(
        "rules:\n"
        "  - {reason: our_partner_quota, category: sending_limit, enhanced_code: 5.7.1, phrases: [partner quota]}\n"
        "  - {reason: no_such_user, category: recipient, enhanced_code: 5.1.1, phrases: [does not exist]}\n"
        "disable: [likely_unsolicited]\n"
    )
    rules = load_rules([str(user)])
    assert rules.classify(normalise("550 5.7.1 Partner quota reached - gsmtp")).reason == "our_partner_quota"
    spam = normalise("550 5.7.1 Our system has detected that this message is likely unsolicited mail.")
    assert rules.classify(spam).category == "unclassified"
    assert RULES.classify(spam).category == "spam"


@pytest.mark.parametrize(
    ("content", "line", "key"),
    [
        ("rules:\n  - {reason: x, category: nope, code: 550}\n", 2, "category"),
        ("rules:\n  - reason: x\n    category: spam\n    colour: red\n", 4, "colour"),
        ("rules:\n  - {reason: Bad-Name, category: spam, code: 550}\n", 2, "reason"),
        ("rules:\n  - {reason: x, category: spam, code: 650}\n", 2, "code"),
        ("rules:\n  - {reason: x, category: spam, enhanced_code: 5.7}\n", 2, "enhanced_code"),
        ("rules:\n  - {reason: x, category: spam}\n", 2, "rule"),
        ("rules:\n  - {reason: x, category: spam, phrases: ['a']}\n", 2, "phrases"),
        ("rules:\n  - {reason: x, category: spam, code: 550}\n  - {reason: x, category: ptr, code: 421}\n", 3, "category"),
        ("rules:\n  - {reason: x, category: spam\n", 3, None),
        ("rulez: []\n", 1, "rulez"),
    ],
    ids=["category", "unknown-key", "reason", "code", "enhanced", "matches-all", "short-phrase", "two-categories",
         "yaml-syntax", "top-level"],
)  # fmt: skip
def test_bad_rules_file_names_file_line_and_key(
    tmp_path: Path, content: str, line: int, key: str | None
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    err = caught.value
    assert (err.file, err.line, err.key) == (str(path), line, key)
    assert str(err).startswith(f"{path}:{line}: ")


def test_shipped_rules_file_is_the_package_data() -> None:
    assert Path(RULES.files[-1]).resolve() == (REPO / "config" / "rules.yml").resolve()


@pytest.mark.parametrize(
    ("reply", "category", "reason"),
    [
        # Wordings of other years, and wordings no rule text knows, that codes or help tokens still classify.
        ("550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 http://mail.google.com/support/bin/answer.py?answer=6596 a1si123.45 - gsmtp", "recipient", "no_such_user"),
        ("421-4.7.0 [192.0.2.1] Our system has detected an unusual rate of 421-4.7.0 unsolicited mail originating from your IP address. To protect our 421-4.7.0 users from spam, mail sent from your IP address has been temporarily 421-4.7.0 blocked. Please visit http://www.google.com/mail/help/bulk_mail.html 421 4.7.0 to review our Bulk Email Senders Guidelines. a1si123.45 - gsmtp", "rate_limit", "ip_unusual_rate"),
        ("421-4.7.0 [192.0.2.1] Our system has detected an unusual amount of unsolicited mail originating from your IP address. 421 4.7.0 b2si1.2 - gsmtp", "rate_limit", "ip_unusual_rate"),
        ("552-5.7.0 Our system detected an illegal attachment on your message. Please 552-5.7.0 visit http://mail.google.com/support/bin/answer.py?answer=6590 to 552 5.7.0 review our attachment guidelines. c3si4.5 - gsmtp", "policy", "blocked_content_security"),
        ("452-4.2.2 The recipient's inbox is out of storage space. Please direct the 452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp d4si5.6 - gsmtp", "mailbox_full", "over_quota"),
        ("550-5.7.1 [192.0.2.1 12] Gmail has detected that this message is likely suspicious 550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError e5si6.7 - gsmtp", "spam", "likely_unsolicited"),
        ("550-5.7.1 Some future wording about DMARC alignment. 550 5.7.1  https://support.google.com/mail/?p=DmarcRejection f6si7.8 - gsmtp", "authentication", "dmarc_policy"),
        ("421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail originating 421-4.7.28 from your DKIM domain [example.com 15]. To protect our users from 421 4.7.28 spam, mail has been temporarily rate limited. g7si8.9 - gsmtp", "rate_limit", "domain_unusual_rate"),
        ("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail 550 5.4.5 sending limits go to https://support.google.com/a/answer/166852 h8si9.0 - gsmtp", "sending_limit", "daily_sending_quota"),
        ("550-5.7.26 Your email has been blocked because the sender is unauthenticated. 550 5.7.26 Gmail requires all senders to authenticate. i9si0.1 - gsmtp", "authentication", "unauthenticated_sender"),
    ],
)  # fmt: skip
def test_replies_of_other_years_and_new_wordings(reply: str, category: str, reason: str) -> None:
    verdict = RULES.classify(normalise(reply))
    assert (verdict.category, verdict.reason) == (category, reason)


def test_a_reason_the_rules_accept_is_a_label_and_one_they_refuse_never_loads(tmp_path: Path) -> None:
    longest = "r" * 63
    user = tmp_path / "mine.yml"
    user.write_text(f"rules:\n  - {{reason: {longest}, category: spam, enhanced_code: [5.7.1]}}\n")
    metrics = Metrics(version="test", categories=CATEGORIES, skip_reasons=SKIP_REASONS)
    line = (
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
        b"[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host gmail-smtp-in.l.google.com"
        b"[192.0.2.7] said: 550 5.7.1 Something new. a1b2c3.4 - gsmtp (in reply to end of DATA command))"
    )
    event = Analyser(load_rules([str(user)])).analyse(line)
    assert isinstance(event, Event)
    metrics.observe(event)
    assert [labels[1] for labels, n in metrics.rejections.items() if n] == [longest]
    for refused in ("r" * 64, "9_lives", "_private"):
        user.write_text(f"rules:\n  - {{reason: {refused}, category: spam, enhanced_code: [5.7.1]}}\n")
        with pytest.raises(ConfigError, match="is not snake_case"):
            load_rules([str(user)])
