"""Sendmail / sm-mta: 'to=… relay=… dsn=… reply=… stat=…' lines (reply= holds the first reply line only)."""

from __future__ import annotations

from typing import Final

from exporter import patterns
from exporter.events import Delivery
from exporter.mta.common import (
    REPLY_START,
    Context,
    LogFormat,
    connection_delivery,
    connection_error_kind,
    domain_of,
)

_PROGRAMS: Final = ("sendmail[", "sm-mta[", "sm-msp-queue[")
_TAG: Final = patterns.compile(r"(?:sendmail|sm-mta|sm-msp-queue)\[\d+\]:\s+(\w{6,20}):\s+")
_RELAY: Final = patterns.compile(r"(?:^|, )relay=([^\s,\[]{1,255})")
_DSN: Final = patterns.compile(r", dsn=(\d\.\d{1,3}\.\d{1,3})")
_REPLY: Final = patterns.compile(r", reply=(.*?)(?=, stat=)")
_STAT: Final = patterns.compile(r", stat=(.*)$")
_FROM: Final = patterns.compile(r"from=<?([^,>\s]{0,512})")


def claims(line: str) -> bool:
    """True for a line Sendmail's programs wrote."""
    return any(program in line for program in _PROGRAMS)


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for a Sendmail line about Google, else None."""
    tag = _TAG.search(line)
    if tag is None:
        return None
    queue_id = tag.group(1)
    body = line[tag.end() :]
    if body.startswith("from="):
        if ctx.track_senders:
            sender = _FROM.match(body)
            ctx.senders.remember(queue_id, (domain_of(sender.group(1)) if sender else None) or "")
        return None
    if not body.startswith("to="):
        return _host_reply(body, queue_id, ctx)
    stat_match = _STAT.search(body)
    if stat_match is None:
        return None
    stat = stat_match.group(1)
    relay_match = _RELAY.search(body)
    host = ctx.google.canonical(relay_match.group(1)) if relay_match else None
    reply_match = _REPLY.search(body)
    reply = reply_match.group(1) if reply_match else None
    if host is None:
        lower = stat.lower()
        if "gsmtp" not in lower and not (reply and "gsmtp" in reply.lower()):
            named = [w for w in stat.replace(",", " ").split() if "." in w]
            host = next((h for h in (ctx.google.canonical(w) for w in named) if h), None)
            if host is None:
                return None
    to_field = body[3:].split(",", 1)[0]
    dsn_match = _DSN.search(body)
    dsn = dsn_match.group(1) if dsn_match else ""

    error: str | None = None
    if stat.startswith("Sent"):
        status = "sent"
        reply = reply or _parenthesised(stat)
    elif stat.startswith("Deferred") or dsn.startswith("4"):
        status = "deferred"
        if reply is None:
            text = stat.partition(":")[2].strip()
            if text[:3].isdigit():
                reply = text
            else:
                error = connection_error_kind(text or stat)
    else:
        status = "bounced"
    return Delivery(
        mta="sendmail",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=queue_id,
        recipient_domain=domain_of(to_field),
        google_host=host,
        reply=reply,
        connection_error=error,
        sender=ctx.senders.get(queue_id) if ctx.track_senders else None,
    )


def _parenthesised(stat: str) -> str | None:
    start, end = stat.find("("), stat.rfind(")")
    return stat[start + 1 : end] if 0 <= start < end else None


def _host_reply(body: str, queue_id: str, ctx: Context) -> Delivery | None:
    """'QID: gmail-smtp-in.l.google.com.: SMTP DATA-2 protocol error: 503 5.5.1 RCPT first. … - gsmtp':
    a reply Sendmail logs about the connection, before the recipient's outcome line."""
    host_name, sep, rest = body.partition(": ")
    host = ctx.google.canonical(host_name) if sep and " " not in host_name else None
    start = REPLY_START.search(rest) if host else None
    if host is None or start is None:
        return None
    return connection_delivery("sendmail", ctx, queue_id, host, rest[start.start() :])


FORMAT: Final = LogFormat("sendmail", claims, parse)
