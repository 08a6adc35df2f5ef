"""MTA parsers and the generic fallback on line shapes beyond our fixtures: other versions, container and
relay prefixes, ISO timestamps, upper-case hosts, lines that only look like Google."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import mta
from exporter.analyse import Analyser, Skipped
from exporter.events import Event
from exporter.rules import load_rules

RULES = load_rules()
NOW = time.mktime((2026, 11, 29, 23, 0, 0, 0, 0, -1))
DMARC = (
    "550-5.7.26 Unauthenticated email from example.org is not accepted due to 550-5.7.26 domain's DMARC "
    "policy. Please contact the administrator of example.org domain. 550 5.7.26 q16si3475662wrs.311 - gsmtp"
)


def analyse(line: str, **kwargs: object) -> Event:
    result = Analyser(RULES, now=NOW, **kwargs).analyse(line.encode())  # type: ignore[arg-type]
    assert isinstance(result, Event), result
    return result


def summary(event: Event) -> tuple[object, ...]:
    d, v = event.delivery, event.verdict
    return (d.mta, d.scope, d.status, d.google_host, v.category if v else None, v.reason if v else None)


POSTFIX_OUTCOME = (
    "postfix/smtp[9001]: 0F8D71680EE: to=<someone@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.27]:25, "
    f"delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.7.26, status=bounced (host gmail-smtp-in.l.google.com[142.250.1.27] "
    f"said: {DMARC} (in reply to end of DATA command))"
)


@pytest.mark.parametrize(
    "prefix",
    [
        "Nov 29 21:32:49 mx1 ",
        "Nov  9 08:01:02 mx1 ",
        "2026-11-29T21:32:49.123456+01:00 mx1 ",
        "2026-11-29T21:32:49Z mx1 ",
        "<22>Nov 29 21:32:49 mx1 ",
        "2026-11-29T21:32:49.123456789Z stdout F ",  # CRI container log
        "mx1 | Nov 29 21:32:49 mx1 ",  # docker compose
        "Nov 29 21:32:49 relay1 Nov 29 21:32:48 mx1 ",  # forwarded by a central syslog
        "",
    ],
)
def test_postfix_outcome_with_any_prefix(prefix: str) -> None:
    event = analyse(prefix + POSTFIX_OUTCOME)
    assert summary(event) == (
        "postfix", "recipient", "bounced", "gmail-smtp-in.l.google.com", "authentication", "dmarc_policy"
    )  # fmt: skip
    assert event.delivery.queue_id == "0F8D71680EE"
    assert event.delivery.recipient_domain == "gmail.com"
    assert (event.delivery.timestamp is None) == (prefix in ("",))


@pytest.mark.parametrize(
    ("header", "stamp"),
    [
        ("<22>1 2026-11-29T21:32:49.123456+01:00 mx1 postfix/smtp 9001 - - ", 1_795_984_369.123456),
        (
            '<22>1 2026-11-29T21:32:49Z mx1 postfix/smtp 9001 ID47 [exampleSDID@32473 iut="3"] \ufeff',
            1_795_987_969.0,
        ),
        (
            "1 2026-11-29T21:32:49Z mx1.example.org postfix/smtp 9001 - - ",
            1_795_987_969.0,
        ),  # written without PRI
    ],
)
def test_postfix_outcome_in_rfc5424_syslog(header: str, stamp: float) -> None:
    """rsyslog's RFC 5424 template and syslog-ng's syslog-protocol put the process id after the program name, not
    in brackets, and a message id and structured data before the message: such lines printed nothing."""
    line = header + POSTFIX_OUTCOME.split(": ", 1)[1]
    event = analyse(line)
    assert summary(event) == (
        "postfix", "recipient", "bounced", "gmail-smtp-in.l.google.com", "authentication", "dmarc_policy"
    )  # fmt: skip
    assert event.delivery.queue_id == "0F8D71680EE"
    assert event.delivery.timestamp == stamp


def test_exim_deferral_in_rfc5424_syslog_and_a_line_that_only_looks_like_it() -> None:
    line = (
        "<22>1 2026-11-29T21:32:49Z mx1 exim 4242 - - 1xXmj8-0002ao-1z == a@gmail.com "
        "R=dnslookup T=remote_smtp defer (-44) H=gmail-smtp-in.l.google.com [142.250.27.26]: SMTP error from remote "
        "mail server after pipelined end of data: 421-4.7.28 Our system has detected an unusual rate of 421 4.7.28 "
        "unsolicited mail. a1si2 - gsmtp"
    )
    event = analyse(line)
    assert summary(event) == (
        "exim",
        "recipient",
        "deferred",
        "gmail-smtp-in.l.google.com",
        "rate_limit",
        "ip_unusual_rate",
    )
    from exporter.mta.common import classic_syslog

    plain = "1 message from alice@gmail.com was deferred"
    assert classic_syslog(plain) == plain


def test_custom_syslog_name_and_lmtp_and_upper_case_mx() -> None:
    line = POSTFIX_OUTCOME.replace("postfix/smtp", "postfix-out/smtp").replace(
        "gmail-smtp-in.l.google.com[", "ASPMX.L.GOOGLE.COM["
    )
    event = analyse("Nov 29 21:32:49 mx1 " + line)
    assert summary(event)[:4] == ("postfix", "recipient", "bounced", "aspmx.l.google.com")


def test_postfix_workspace_domain_recognised_by_relay_without_marker() -> None:
    line = (
        "Nov 29 21:32:49 mx1 postfix/smtp[1]: 4Lk7Fd3wQbz9sxp: to=<a@corp.example>, relay=alt2.aspmx.l.google.com"
        "[142.250.1.27]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host alt2.aspmx.l.google.com"
        "[142.250.1.27] said: 550 5.1.1 The email account that you tried to reach does not exist. "
        "(in reply to RCPT TO command))"
    )
    event = analyse(line)
    assert summary(event) == (
        "postfix",
        "recipient",
        "bounced",
        "alt2.aspmx.l.google.com",
        "recipient",
        "no_such_user",
    )
    assert event.delivery.recipient_domain == "corp.example"


def test_postfix_sent_connection_timeout_dns_and_expiry() -> None:
    a = Analyser(RULES, now=NOW)
    sent = a.analyse(
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
        b"[142.250.1.27]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK  1795988790 "
        b"jemjhxwmvm4d7puwewyy.985 - gsmtp)"
    )
    timeout = a.analyse(
        b"Nov 29 21:33:49 mx1 postfix/smtp[1]: DEF456: to=<b@gmail.com>, relay=none, delay=30, "
        b"delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to gmail-smtp-in.l.google.com[142.250.1.27]:25: "
        b"Connection timed out)"
    )
    dns = a.analyse(
        b"Nov 29 21:34:49 mx1 postfix/smtp[1]: DEF457: to=<c@gmail.com>, relay=none, delay=30, "
        b"delays=0/0/30/0, dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for "
        b"name=gmail.com type=MX: Host not found, try again)"
    )
    expired = a.analyse(
        b"Nov 30 21:34:49 mx1 postfix/qmgr[2]: DEF456: from=<n@example.org>, status=expired, returned to sender"
    )
    unrelated_expiry = a.analyse(
        b"Nov 30 21:34:49 mx1 postfix/qmgr[2]: FFF999: from=<n@example.org>, status=expired, returned to sender"
    )
    assert isinstance(sent, Event) and isinstance(timeout, Event) and isinstance(dns, Event)
    assert isinstance(expired, Event)
    assert (sent.delivery.status, sent.verdict) == ("sent", None)
    assert (timeout.delivery.status, timeout.delivery.connection_error, timeout.verdict) == (
        "deferred",
        "timeout",
        None,
    )
    assert (dns.delivery.connection_error, dns.delivery.google_host) == ("dns", None)
    assert (expired.delivery.status, expired.delivery.queue_id) == ("expired", "DEF456")
    assert unrelated_expiry is None


def test_postfix_next_mx_and_sasl_lines_are_connection_scope() -> None:
    said = analyse(
        "Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: host gmail-smtp-in.l.google.com[142.250.1.27] refused to "
        "talk to me: 421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail. 421 4.7.28 "
        "a1b2c3d4.5 - gsmtp"
    )
    sasl = analyse(
        "Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC124: SASL authentication failed; server smtp.gmail.com"
        "[142.250.1.108] said: 535-5.7.8 Username and Password not accepted. For more information, go to?535 "
        "5.7.8  https://support.google.com/mail/?p=BadCredentials q16si3475662wrs.311 - gsmtp"
    )
    assert summary(said) == (
        "postfix",
        "connection",
        None,
        "gmail-smtp-in.l.google.com",
        "rate_limit",
        "ip_unusual_rate",
    )
    assert summary(sasl) == ("postfix", "connection", None, "smtp.gmail.com", "smtp_auth", "bad_credentials")
    assert not said.is_rejection and not sasl.is_rejection


def test_non_google_delivery_is_ignored() -> None:
    a = Analyser(RULES, now=NOW)
    assert (
        a.analyse(
            b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=smarthost.example.net"
            b"[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 12345)"
        )
        is None
    )
    assert (
        a.analyse(
            b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@outlook.com>, relay=outlook-com.olc.protection."
            b"outlook.com[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host x said: 550 5.7.1 "
            b"Service unavailable, Client host blocked)"
        )
        is None
    )


EXIM_HOST = "gmail-smtp-in.l.google.com [142.250.1.27]:25"


def test_exim_new_message_ids_and_deferral_and_host_line() -> None:
    a = Analyser(RULES, now=NOW)
    host_line = a.analyse(
        f"2026-11-29 21:46:30 1xXmj8-000000002ao-1zAb H={EXIM_HOST}: SMTP error from remote mail server after "
        "RCPT TO:<x@gmail.com>: 450-4.2.1 The user you are trying to contact is receiving mail too\\n450 4.2.1 "
        "quickly. abc123.4 - gsmtp".encode()
    )
    defer = a.analyse(
        f"2026-11-29 21:46:30 1xXmj8-000000002ao-1zAb == x@gmail.com R=dnslookup T=remote_smtp defer (-44) "
        f"H={EXIM_HOST}: SMTP error from remote mail server after RCPT TO:<x@gmail.com>: 450-4.2.1 The user you "
        "are trying to contact is receiving mail too\\n450 4.2.1 quickly. abc123.4 - gsmtp".encode()
    )
    retry = a.analyse(
        b"2026-11-29 21:46:31 1xXmj8-000000002ao-1zAb == x@gmail.com R=dnslookup T=remote_smtp defer (-53): "
        b"retry time not reached for any host for 'gmail.com'"
    )
    timeout = a.analyse(
        f"2026-11-29 21:46:32 1xXmj8-0002ao-1z == y@gmail.com R=dnslookup T=remote_smtp defer (110): "
        f"Connection timed out H={EXIM_HOST}".encode()
    )
    assert isinstance(host_line, Event) and isinstance(defer, Event) and isinstance(timeout, Event)
    assert summary(host_line) == (
        "exim",
        "connection",
        None,
        "gmail-smtp-in.l.google.com",
        "rate_limit",
        "recipient_receiving_rate",
    )
    assert summary(defer) == (
        "exim",
        "recipient",
        "deferred",
        "gmail-smtp-in.l.google.com",
        "rate_limit",
        "recipient_receiving_rate",
    )
    assert retry is None
    assert (timeout.delivery.status, timeout.delivery.connection_error) == ("deferred", "timeout")


def test_exim_deferral_when_gmail_com_does_not_resolve_is_a_dns_error_and_other_domains_are_not() -> None:
    lines = [
        "2026-11-29 21:46:30 1xXmj8-000000002ao-1zAb == x@gmail.com R=dnslookup defer (-1): host lookup did not "
        "complete",
        "  278   == x@googlemail.com R=dnslookup defer (-1): host lookup did not complete",
        "2026-11-29 21:46:30 1xXmj8-000000002ao-1zAb == x@example.com R=dnslookup defer (-1): host lookup did not "
        "complete",
        "2026-11-29 21:46:30 1xXmj8-000000002ao-1zAb == x@gmail.com routing defer (-51): retry time not reached",
    ]
    results = [Analyser(RULES, now=NOW).analyse(line.encode()) for line in lines]
    gmail, debug = results[0], results[1]
    assert isinstance(gmail, Event) and isinstance(debug, Event)
    assert (gmail.delivery.mta, gmail.delivery.queue_id, gmail.delivery.connection_error) == (
        "exim",
        "1xXmj8-000000002ao-1zAb",
        "dns",
    )
    assert (debug.delivery.mta, debug.delivery.queue_id, debug.delivery.recipient_domain) == (
        "exim",
        None,
        "googlemail.com",
    )
    assert results[2:] == [None, None]


def test_sendmail_old_without_reply_and_sm_mta_deferred() -> None:
    a = Analyser(RULES, now=NOW)
    old = a.analyse(
        b"Nov 29 21:52:09 mx4 sendmail[11245]: 6ATLq9uJ011245: to=<s@gmail.com>, delay=00:00:01, "
        b"xdelay=00:00:01, mailer=esmtp, pri=120348, relay=gmail-smtp-in.l.google.com. [142.250.1.27], "
        b"dsn=5.0.0, stat=Service unavailable"
    )
    deferred = a.analyse(
        b"Nov 29 21:52:09 mx4 sm-mta[11245]: 6ATLq9uJ011246: to=<s@gmail.com>, delay=00:00:01, "
        b"xdelay=00:00:01, mailer=esmtp, pri=120348, relay=alt1.gmail-smtp-in.l.google.com. [142.250.1.27], "
        b"dsn=4.7.28, stat=Deferred: 421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited"
    )
    assert isinstance(old, Event) and isinstance(deferred, Event)
    assert summary(old) == (
        "sendmail",
        "recipient",
        "bounced",
        "gmail-smtp-in.l.google.com",
        "unclassified",
        "no_reply_logged",
    )
    assert summary(deferred) == (
        "sendmail",
        "recipient",
        "deferred",
        "alt1.gmail-smtp-in.l.google.com",
        "rate_limit",
        "ip_unusual_rate",
    )


def test_opensmtpd_5_relay_line_and_1e100_ptr() -> None:
    event = analyse(
        "Nov 29 21:47:42 mx3 smtpd[10964]: relay: PermFail for 4bc0f3d5c3c4f8b9: from=<n@example.org>, "
        "to=<s@gmail.com>, rcpt=<->, source=192.0.2.5, relay=142.250.1.27 (mx-in-f27.1e100.net), delay=1s, "
        "stat=550 5.1.1 The email account that you tried to reach does not exist. abc123.4 - gsmtp"
    )
    assert summary(event) == (
        "opensmtpd",
        "recipient",
        "bounced",
        "mx-in-f27.1e100.net",
        "recipient",
        "no_such_user",
    )


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        ("2026-11-29 21:00:00 [delivery] recipient <a@gmail.com> rejected: 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 abc12.3 - gsmtp", "bounced", "no_such_user"),
        ("Remote server returned '550-5.7.26 This mail has been blocked because the sender is unauthenticated. 550 5.7.26 a1b2c3.4 - gsmtp'", "bounced", "unauthenticated_sender"),
        ("Diagnostic-Code: smtp; 550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. 550 5.7.1 ab12.3 - gsmtp", "bounced", "likely_unsolicited"),
        ('{"type":"TransientFailure","recipient":"x@gmail.com","response":{"content":"4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail\\n4.7.28 originating from your IP address.","code":421},"message":"421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate\\n421 4.7.28 of unsolicited mail. x1y2z3.4 - gsmtp"}', "deferred", "ip_unusual_rate"),
    ],
    ids=["haraka", "exchange", "dsn", "json"],
)  # fmt: skip
def test_generic_fallback(line: str, status: str, reason: str) -> None:
    event = analyse(line)
    assert (event.delivery.mta, event.delivery.status, event.verdict and event.verdict.reason) == (
        "generic",
        status,
        reason,
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"x" * 40_000, "too_long"),
        (b"Nov 29 postfix/smtp[1]: gsmtp " + b"\x00\x01" * 10, "not_text"),
        (b"Nov 29 21:32:49 mx1 postfix/smtp[1]: \xff\xfe\xfd gsmtp garbage", "not_text"),
        (b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: something new - gsmtp", "unparseable"),
    ],
    ids=["too-long", "binary", "invalid-utf8", "unknown-google-line"],
)
def test_bad_lines_are_skipped_with_a_reason(line: bytes, reason: str) -> None:
    assert Analyser(RULES).analyse(line) == Skipped(reason)


def test_invalid_utf8_inside_a_google_line_loses_nothing() -> None:
    line = POSTFIX_OUTCOME.replace("someone", "j\udcfcrgen").encode("utf-8", "surrogateescape")
    event = Analyser(RULES).analyse(b"Nov 29 21:32:49 mx1 " + line)
    assert isinstance(event, Event) and event.verdict is not None
    assert event.verdict.reason == "dmarc_policy"


def test_forced_format_and_unknown_format() -> None:
    forced = Analyser(RULES, log_format="exim").analyse(("Nov 29 21:32:49 mx1 " + POSTFIX_OUTCOME).encode())
    assert forced == Skipped("unparseable")
    with pytest.raises(ValueError):
        Analyser(RULES, log_format="qmail")


def test_sender_join_by_queue_id_is_opt_in() -> None:
    a = Analyser(RULES, now=NOW, track_senders=True)
    assert (
        a.analyse(
            b"Nov 29 21:32:48 mx1 postfix/qmgr[2]: 0F8D71680EE: from=<news@Example.ORG>, size=1, nrcpt=1 (queue active)"
        )
        is None
    )
    event = a.analyse(("Nov 29 21:32:49 mx1 " + POSTFIX_OUTCOME).encode())
    assert isinstance(event, Event) and event.delivery.sender == "example.org"
    assert analyse("Nov 29 21:32:49 mx1 " + POSTFIX_OUTCOME).delivery.sender is None


def test_every_mta_module_declares_its_format_and_is_registered() -> None:
    package = Path(mta.__file__).parent
    modules = sorted(
        p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "common", "containers")
    )
    assert sorted(mta.NAMES) == modules
    assert mta.NAMES[-1] == "generic"  # the fallback claims every line: asked last
    assert [f.name for f in mta.formats()] == list(mta.NAMES)
    assert [f.name for f in mta.formats("exim")] == ["exim"]
    # A container envelope (mta/containers.py) is taken off first; the MTA inside is detected.
    assert [f.name for f in mta.formats("cri")] == [f.name for f in mta.formats("docker")] == list(mta.NAMES)
    assert (mta.envelope("cri"), mta.envelope("docker"), mta.envelope("postfix"), mta.envelope()) == (
        "cri",
        "docker",
        None,
        None,
    )
    assert ("auto", *mta.NAMES, *mta.ENVELOPES) == mta.FORMATS


def test_reading_the_format_list_imports_no_parser() -> None:
    code = (
        "import sys, exporter.config; "
        "print(sorted(m for m in sys.modules if m.startswith('exporter.mta.') and m != 'exporter.mta.common' "
        "or m == 'exporter.analyse'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
