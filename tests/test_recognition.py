"""Recognising Gmail's reply in text no MTA format claims, beyond the posted shapes of tests/data/shapes.tsv:
other libraries' and services' wrappers, older Exim and Gmail forms, connection failures written by other
software, the lines that only mention Google, and entries of several lines cut anywhere into blocks."""

from __future__ import annotations

import io

import pytest

from exporter.analyse import Analyser
from exporter.events import Event
from exporter.offline import classified
from exporter.rules import load_rules

RULES = load_rules()
SID = "a1si1234567wra.12"


def events(text: str) -> list[tuple[int, tuple[object, ...]]]:
    """(line, (mta, scope, status, code, enhanced, category, reason, connection error, host)) per event."""
    found = []
    for number, event in classified(Analyser(RULES), io.BytesIO(text.encode())):
        d, r, v = event.delivery, event.reply, event.verdict
        found.append(
            (
                number,
                (
                    d.mta, d.scope, d.status, r and r.code, r and r.enhanced_code, v and v.category,
                    v and v.reason, d.connection_error, d.google_host,
                ),
            )
        )  # fmt: skip
    return found


WRAPPED = {
    "dotnet-mailbox-unavailable": (
        "System.Net.Mail.SmtpException: Mailbox unavailable. The server response was: 5.7.1 [192.0.2.1] Our system "
        "has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this "
        f"message has been blocked. Please visit https://support.google.com/mail/?p=UnsolicitedMessageError {SID} - gsmtp",
        ("generic", "recipient", "bounced", "550", "5.7.1", "spam", "likely_unsolicited", None, None),
    ),
    "mailkit-enhanced-code-alone": (
        "MailKit.Net.Smtp.SmtpCommandException: 5.7.8 Username and Password not accepted. For more information, go "
        f"to\n5.7.8  https://support.google.com/mail/?p=BadCredentials {SID} - gsmtp",
        ("generic", "recipient", "bounced", None, "5.7.8", "smtp_auth", "bad_credentials", None, None),
    ),
    "elixir-gen-smtp": (
        '** (exit) {:error, {:send, {:permanent_failure, "gmail-smtp-in.l.google.com", "550-5.7.26 This mail has '
        "been blocked because the sender is unauthenticated.\\r\\n550-5.7.26 Gmail requires all senders to "
        f'authenticate with either SPF or DKIM.\\r\\n550 5.7.26 {SID} - gsmtp\\r\\n"}}}}}}',
        (
            "generic",
            "recipient",
            "bounced",
            "550",
            "5.7.26",
            "authentication",
            "unauthenticated_sender",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "erlang-binary": (
        '{error,{permanent_failure,<<"gmail-smtp-in.l.google.com">>,<<"550-5.1.1 The email account that you tried '
        f"to reach does not exist. Please try\\r\\n550 5.1.1 https://support.google.com/mail/?p=NoSuchUser {SID} - "
        'gsmtp\\r\\n">>}}',
        (
            "generic",
            "recipient",
            "bounced",
            "550",
            "5.1.1",
            "recipient",
            "no_such_user",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "mailgun-event-code-field": (
        '{"event":"failed","severity":"permanent","recipient":"x@gmail.com","delivery-status":{"code":550,'
        '"message":"5.7.26 Unauthenticated email from example.org is not accepted due to domain\'s\\n5.7.26 DMARC '
        'policy. Please contact the administrator of example.org domain if\\n5.7.26 this was a legitimate mail.",'
        '"description":""}}',
        ("generic", "recipient", "bounced", "550", "5.7.26", "authentication", "dmarc_policy", None, None),
    ),
    "ses-diagnostic-code": (
        '{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":'
        '"x@gmail.com","action":"failed","status":"5.7.26","diagnosticCode":"smtp; 550-5.7.26 This mail has been '
        "blocked because the sender is unauthenticated. 550-5.7.26 Gmail requires all senders to authenticate with "
        f'either SPF or DKIM. 550 5.7.26 {SID} - gsmtp"}}]}}}}',
        (
            "generic",
            "recipient",
            "bounced",
            "550",
            "5.7.26",
            "authentication",
            "unauthenticated_sender",
            None,
            None,
        ),
    ),
    "remote-server-replied": (
        "Remote server replied: 421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail "
        "originating from your IP address. To protect our users from spam, mail sent from your IP address has been "
        f"temporarily rate limited. {SID} - gsmtp",
        ("generic", "recipient", "deferred", "421", "4.7.28", "rate_limit", "ip_unusual_rate", None, None),
    ),
    "postfix-fragment-without-syslog-prefix": (
        "to=<x@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.27]:25, delay=1, delays=0/0/0/1, dsn=4.7.28, "
        "status=deferred (host gmail-smtp-in.l.google.com[142.250.1.27] said: 421-4.7.28 [192.0.2.1 15] Gmail has "
        f"detected an unusual rate of unsolicited mail 421 4.7.28 {SID} - gsmtp (in reply to end of DATA command))",
        (
            "generic",
            "recipient",
            "deferred",
            "421",
            "4.7.28",
            "rate_limit",
            "ip_unusual_rate",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "gmail-before-the-gsmtp-marker": (
        "<x@gmail.com>: host gmail-smtp-in.l.google.com[209.85.12.27] said: 550-5.1.1 The email account that you "
        "tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos "
        "or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 "
        "http://mail.google.com/support/bin/answer.py?answer=6596 19si1123451ywh.42 (in reply to RCPT TO command)",
        (
            "generic",
            "recipient",
            "bounced",
            "550",
            "5.1.1",
            "recipient",
            "no_such_user",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "exim-before-4.80-host-inside-the-error": (
        "2009-07-01 10:00:00 1MLxyz-0001ab-Cd ** x@gmail.com R=dnslookup T=remote_smtp: SMTP error from remote mail "
        "server after RCPT TO:<x@gmail.com>: host gmail-smtp-in.l.google.com [209.85.12.27]: 550-5.1.1 The email "
        "account that you tried to reach does not exist. Please try\\n550 5.1.1 double-checking the recipient's "
        "email address. 19si1123451ywh.42",
        (
            "exim",
            "recipient",
            "bounced",
            "550",
            "5.1.1",
            "recipient",
            "no_such_user",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "exim-deferral-ipv6-and-tls-fields": (
        "2026-11-29 21:46:30 1xXmj8-0002ao-1z == x@gmail.com R=dnslookup T=remote_smtp defer (-44) "
        "H=gmail-smtp-in.l.google.com [2a00:1450:400c:c0b::1a]:25 I=[2001:db8::25]:47140 "
        'X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes DN="CN=mx.google.com": SMTP error from remote mail server after '
        "RCPT TO:<x@gmail.com>: 450-4.2.1 The user you are trying to contact is receiving mail too\\n450 4.2.1 "
        f"quickly. {SID} - gsmtp",
        (
            "exim",
            "recipient",
            "deferred",
            "450",
            "4.2.1",
            "rate_limit",
            "recipient_receiving_rate",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
    "exim-host-line-dn-with-commas": (
        "2026-11-29 21:46:30 1xXmj8-0002ao-1z H=gmail-smtp-in.l.google.com [2a00:1450:400c:c0b::1a]:25 "
        'X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes DN="C=US, O=Google LLC, CN=mx.google.com": SMTP error from '
        "remote mail server after MAIL FROM:<n@example.org> SIZE=1234: 421-4.7.0 [2001:db8::25] Our system has "
        f"detected an unusual rate of\\n421 4.7.0 unsolicited mail. {SID} - gsmtp",
        (
            "exim",
            "connection",
            None,
            "421",
            "4.7.0",
            "rate_limit",
            "ip_unusual_rate",
            None,
            "gmail-smtp-in.l.google.com",
        ),
    ),
}


@pytest.mark.parametrize("text,expected", WRAPPED.values(), ids=WRAPPED.keys())
def test_gmail_reply_in_other_wrappers_gives_one_event(text: str, expected: tuple[object, ...]) -> None:
    assert events(text) == [(1, expected)]


CONNECTION_FAILURES = {
    "postqueue-listing": (
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
        "A1B2C3D4E5*    1234 Mon Nov 29 21:32:49  sender@example.org\n"
        "(connect to gmail-smtp-in.l.google.com[142.250.102.27]:25: Connection timed out)\n"
        "                                         user@gmail.com",
        3, "timeout", "gmail-smtp-in.l.google.com",
    ),
    "java-mail-connect-exception": (
        "com.sun.mail.util.MailConnectException: Couldn't connect to host, port: smtp.gmail.com, 587; timeout -1;\n"
        "  nested exception is:\n\tjava.net.ConnectException: Connection timed out: connect",
        1, "timeout", "smtp.gmail.com",
    ),
    "node-getaddrinfo": ("Error: getaddrinfo ENOTFOUND smtp.gmail.com", 1, "dns", "smtp.gmail.com"),
    "go-dial-lookup": (
        "dial tcp: lookup smtp.gmail.com on 127.0.0.53:53: no such host", 1, "dns", "smtp.gmail.com",
    ),
    "sending-service-event": (
        '{"event":"deferred","email":"x@gmail.com","response":"connect to gmail-smtp-in.l.google.com'
        '[142.250.1.27]:25: Connection refused","attempt":"3"}',
        1, "refused", "gmail-smtp-in.l.google.com",
    ),
    "postfix-connect-to-gmail-com-address": (
        "Sep 11 01:35:30 mx1 postfix/smtp[398]: connect to gmail.com[142.251.31.83]:25: Operation timed out",
        1, "timeout", "gmail.com",
    ),
}  # fmt: skip


@pytest.mark.parametrize("text,line,kind,host", CONNECTION_FAILURES.values(), ids=CONNECTION_FAILURES.keys())
def test_failure_to_reach_google_written_by_other_software_is_a_connection_error(
    text: str, line: int, kind: str, host: str
) -> None:
    ((number, outcome),) = events(text)
    assert (number, outcome[1], outcome[3:7], outcome[7], outcome[8]) == (
        line, "connection", (None, None, None, None), kind, host,
    )  # fmt: skip


ONLY_MENTIONS_GOOGLE = {
    "tls-established-to-smtp-gmail-com": (
        "Nov 29 21:32:49 mx1 postfix/smtp[9001]: Trusted TLS connection established to smtp.gmail.com"
        "[142.250.102.108]:587: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
        "server-signature ECDSA (P-256) server-digest SHA256"
    ),
    "certificate-note-about-smtp-gmail-com": (
        "Nov 29 21:32:49 mx1 postfix/smtp[9001]: certificate verification failed for smtp.gmail.com"
        "[142.250.102.108]:587: untrusted issuer /C=US/O=Google Trust Services LLC/CN=GTS CA 1C3"
    ),
    "stunnel-certificate": "Nov 29 21:32:49 mx1 stunnel[123]: Certificate accepted at depth=0: CN=smtp.gmail.com",
    "dkim-selector-google": "Nov 29 21:32:49 mx1 opendkim[1234]: 4F5A12345: s=google d=example.com SSL",
    "exim-mail-from-google": (
        "2026-11-29 21:46:30 1xXmj8-0002ao-1z <= someone@gmail.com H=mail-wr1-f54.google.com [209.85.221.54] "
        "P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=4567 id=CAxyz@mail.gmail.com"
    ),
    "sendmail-mail-from-google": (
        "Nov 29 21:52:09 mx4 sendmail[11245]: 6ATLq9uJ011245: from=<someone@gmail.com>, size=4567, class=0, "
        "nrcpts=1, msgid=<CAxyz@mail.gmail.com>, proto=ESMTPS, daemon=MTA, relay=mail-wr1-f54.google.com "
        "[209.85.221.54]"
    ),
    "received-header-from-google": (
        "Received: from mail-wr1-f54.google.com (mail-wr1-f54.google.com [209.85.221.54]) by mx.example.org "
        "(Postfix) with ESMTPS id 4F5A12345 for <me@example.org>; Sat, 29 Nov 2026 21:32:49 +0000 (UTC)"
    ),
    "our-refusal-of-mail-from-google": (
        "Nov 29 21:32:49 mx1 postfix/smtpd[123]: NOQUEUE: reject: RCPT from mail-wr1-f54.google.com"
        "[209.85.221.54]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual "
        "mailbox table; from=<someone@gmail.com> to=<nobody@example.org> proto=ESMTP helo=<mail-wr1-f54.google.com>"
    ),
    "content-filter-accepting-for-gmail": (
        "Nov 29 21:32:49 mx1 amavis[1234]: (01234-05) Passed CLEAN {RelayedOutbound}, [127.0.0.1]:45678 "
        "<me@example.org> -> <you@gmail.com>, Queue-ID: 4F5A12345, Message-ID: <abc@example.org>, mail_id: xyz, "
        "Hits: -1.2, size: 1234, queued_as: 5B6C7D8E9F, 1234 ms"
    ),
    "gmail-bounce-about-another-server": (
        "Technical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the "
        "server for the recipient domain example.org by mx.example.org. [192.0.2.25].\n\nThe error that the other "
        "server returned was:\n550-5.1.1 <nobody@example.org>: Recipient address rejected: User unknown\n550 5.1.1 "
        "in virtual mailbox table"
    ),
    "headers-of-mail-written-in-gmail": (
        "Message-ID: <CAxyz@mail.gmail.com>\nARC-Authentication-Results: i=1; mx.google.com; dkim=pass "
        "header.i=@gmail.com header.s=20230601; spf=pass (google.com: domain of x@gmail.com designates "
        "209.85.220.41 as permitted sender) smtp.mailfrom=x@gmail.com; dmarc=pass (p=NONE sp=QUARANTINE dis=NONE) "
        "header.from=gmail.com"
    ),
    "gmail-transcript-up-to-data": (
        f"<<< 220 mx.google.com ESMTP {SID} - gsmtp\n>>> EHLO mx.example.org\n<<< 250-mx.google.com at your "
        f"service, [192.0.2.1]\n<<< 250 SMTPUTF8\n>>> MAIL FROM:<me@example.org>\n<<< 250 2.1.0 OK {SID} - gsmtp\n"
        f">>> RCPT TO:<you@gmail.com>\n<<< 250 2.1.5 OK {SID} - gsmtp\n>>> DATA\n<<< 354  Go ahead {SID} - gsmtp"
    ),
    "a-subject-that-quotes-a-gmail-reply": (
        "Nov 29 21:32:49 mx1 postfix/cleanup[123]: 4F5A12345: warning: header Subject: Re: 550 5.7.1 from gmail? "
        "gsmtp from mail-wr1-f54.google.com[209.85.221.54]"
    ),
}


@pytest.mark.parametrize("text", ONLY_MENTIONS_GOOGLE.values(), ids=ONLY_MENTIONS_GOOGLE.keys())
def test_text_that_only_mentions_google_gives_no_event(text: str) -> None:
    assert events(text) == []


FOLDED = (
    "Nov 29 21:32:48 mx1 postfix/qmgr[2]: 0F8D71680EE: from=<news@example.org>, size=1, nrcpt=1 (queue active)\n"
    "Diagnostic-Code: smtp; 550-5.7.26 This mail has been blocked because the sender is\n"
    "    unauthenticated. 550-5.7.26 Gmail requires all senders to authenticate with\n"
    "    either SPF or DKIM. 550 5.7.26\n"
    f"    {SID} - gsmtp\n"
    "Nov 29 21:32:49 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]\n"
)


def test_an_entry_of_several_lines_counts_once_wherever_blocks_cut_it() -> None:
    whole = Analyser(RULES)
    count, results = whole.analyse_block(FOLDED.encode())
    assert count == 6 and [e.verdict.reason for e in results if isinstance(e, Event) and e.verdict] == [
        "unauthenticated_sender"
    ]
    lines = FOLDED.encode().splitlines(keepends=True)
    for cut in range(1, len(lines)):
        analyser = Analyser(RULES)
        first_count, first = analyser.analyse_block(b"".join(lines[:cut]))
        second_count, second = analyser.analyse_block(b"".join(lines[cut:]))
        held_count, held = analyser.flush()
        assert (first_count + second_count + held_count, first + second + held) == (count, results), cut


def test_classify_numbers_an_entry_by_its_first_line() -> None:
    assert [number for number, _ in events(FOLDED)] == [2]
    assert [number for number, _ in events(FOLDED + FOLDED)] == [2, 8]
