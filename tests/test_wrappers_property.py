"""Whatever wraps Gmail's reply — an MTA's log line, a bounce notice, a DSN header, a mail library's error, a
sending service's JSON event, a transcript, a container or time-only prefix — it gives the same code, enhanced
code, category and reason as the reply on its own. The replies are every one of tests/data/replies.tsv and
tests/data/gmail-wordings.tsv, as Gmail wraps them."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable

from conftest import REFUSALS
from fixtures.gmail_lookalike import Reply, format_reply
from hypothesis import given, settings
from hypothesis import strategies as st
from test_shapes_corpus import WORDINGS

from exporter.analyse import Analyser
from exporter.offline import classified
from exporter.rules import load_rules

RULES = load_rules()
SID = "a640c23a62f3a-aac0eff19desi1759812166b.313"
HOST = "gmail-smtp-in.l.google.com"

REPLIES = [r for r in REFUSALS if r.origin == "gsmtp"] + [
    Reply(w["id"], w["code"], w["enhanced_code"], w["category"], "data", "gsmtp", w["text"]) for w in WORDINGS
]

Wrapper = Callable[[list[str]], str]


def _enhanced_lines(lines: list[str]) -> tuple[str, list[str]]:
    """The basic code and the lines as smtplib, Go and HaskellNet keep them: each starts with the enhanced code."""
    return lines[0][:3], [line[4:] for line in lines]


def postfix_syslog(lines: list[str]) -> str:
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: 0F8D71680EE: to=<someone@gmail.com>, relay={HOST}[142.250.1.27]:25,"
        f" delay=1, delays=0/0/0/1, dsn=5.0.0, status=bounced (host {HOST}[142.250.1.27] said: {' '.join(lines)} "
        "(in reply to end of DATA command))"
    )


def bounce_notice(lines: list[str]) -> str:
    text = f"<someone@gmail.com>: host {HOST}[142.250.1.27] said: {' '.join(lines)} (in reply to end of DATA command)"
    wrapped = textwrap.wrap(text, 76, break_long_words=False, break_on_hyphens=False)
    return "\n".join([wrapped[0], *("    " + line for line in wrapped[1:])])


def dsn_folded(lines: list[str]) -> str:
    wrapped = textwrap.wrap(f"Diagnostic-Code: smtp; {' '.join(lines)}", 76, break_long_words=False)
    return f"Remote-MTA: dns; {HOST}\n" + "\n".join([wrapped[0], *("    " + line for line in wrapped[1:])])


def exim_tls_ipv6(lines: list[str]) -> str:
    return (
        "2026-11-29 21:46:30 1xXmj8-0002ao-1z ** someone@gmail.com R=dnslookup T=remote_smtp "
        f"H={HOST} [2a00:1450:400c:c0b::1a]:25 I=[2001:db8::25]:47140 X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes "
        'DN="C=US, O=Google LLC, CN=mx.google.com": SMTP error from remote mail server after end of data: '
        + "\\n".join(lines)
        + " DT=0.2s"
    )


def python_smtplib(lines: list[str]) -> str:
    code, enhanced = _enhanced_lines(lines)
    return f"smtplib.SMTPDataError: ({code}, b'" + "\\n".join(enhanced).replace("'", "\\'") + "')"


def go_error(lines: list[str]) -> str:
    code, enhanced = _enhanced_lines(lines)
    return f"2026/11/29 21:32:49 send failed: {code} " + "\n".join(enhanced)


def java_exception(lines: list[str]) -> str:
    return (
        "com.sun.mail.smtp.SMTPSendFailedException: "
        + "\n".join(lines)
        + "\n\tat com.sun.mail.smtp.SMTPTransport"
    )


def phpmailer(lines: list[str]) -> str:
    return "SMTP ERROR: DATA END command failed: " + " ".join(lines)


def node_json(lines: list[str]) -> str:
    return json.dumps({"code": "EMESSAGE", "response": "\n".join(lines), "responseCode": int(lines[0][:3])})


def elixir_gen_smtp(lines: list[str]) -> str:
    reply = "\\r\\n".join(lines).replace('"', '\\"')
    return f'{{:error, {{:send, {{:permanent_failure, "{HOST}", "{reply}\\r\\n"}}}}}}'


def ses_event(lines: list[str]) -> str:
    return json.dumps(
        {
            "eventType": "Bounce",
            "bounce": {"bouncedRecipients": [{"diagnosticCode": "smtp; " + " ".join(lines)}]},
        }
    )


def transcript(lines: list[str]) -> str:
    return f"... while talking to {HOST}.:\n>>> DATA\n" + "\n".join(f"<<< {line}" for line in lines)


def qmail(lines: list[str]) -> str:
    return (
        "<someone@gmail.com>:\n142.250.1.27 failed after I sent the message.\nRemote host said: "
        + "\n".join(lines)
    )


def docker_compose(lines: list[str]) -> str:
    return "mailserver    | " + postfix_syslog(lines)


def time_only(lines: list[str]) -> str:
    return "3:04:29 c49364445807 mail.info " + postfix_syslog(lines)[len("Nov 29 21:32:49 mx1 ") :]


def remote_server_replied(lines: list[str]) -> str:
    return "Remote server replied: " + " ".join(lines)


WRAPPERS: list[Wrapper] = [
    postfix_syslog, bounce_notice, dsn_folded, exim_tls_ipv6, python_smtplib, go_error, java_exception, phpmailer,
    node_json, elixir_gen_smtp, ses_event, transcript, qmail, docker_compose, time_only, remote_server_replied,
]  # fmt: skip


def outcome(text: str) -> list[tuple[object, ...]]:
    found = []
    for _, event in classified(Analyser(RULES), io.BytesIO(text.encode() + b"\n")):
        r, v = event.reply, event.verdict
        found.append((r and r.code, r and r.enhanced_code, v and v.category, v and v.reason))
    return found


SESSION_IDS = [
    SID, "q16si3475662wrs.311", "du14-20020a17090772ce00b00780ec98afafsi1640581ejc.113", "j10sm5731558pfn.207",
    "ffacd0b85a97d-45d9ec344536t8f.12", "i189-20020a6387c6000000b00439495f4eadsor8053548pge.28",
]  # fmt: skip
NOISE = [
    "Nov 29 21:32:48 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]",
    "Nov 29 21:32:48 mx1 postfix/qmgr[2]: 0F8D71680EE: from=<news@example.org>, size=1, nrcpt=1 (queue active)",
    "Nov 29 21:32:50 mx1 postfix/smtp[3]: 1A2B3C: to=<a@example.net>, relay=mx.example.net[192.0.2.9]:25, delay=1, "
    "delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4D5E6F)",
    "2026-11-29 21:46:31 1xXmj8-0002ao-1z Completed",
    "",
]


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(REPLIES),
    st.sampled_from(WRAPPERS),
    st.sampled_from(SESSION_IDS),
    st.lists(st.sampled_from(NOISE), max_size=3),
    st.lists(st.sampled_from(NOISE), max_size=3),
)
def test_any_wrapper_gives_what_the_bare_reply_gives(
    reply: Reply, wrapper: Wrapper, sid: str, before: list[str], after: list[str]
) -> None:
    lines = format_reply(reply, sid=sid)
    bare = outcome(" ".join(lines))
    assert bare and bare[0][:3] == (reply.code, reply.enhanced_code or None, reply.category), (reply.id, bare)
    # Other lines of the log before and after: an MTA's line or a blank one ends an entry of free text.
    text = "\n".join([*before, wrapper(lines), *after])
    assert outcome(text) == bare, (reply.id, wrapper.__name__)
