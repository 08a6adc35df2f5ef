"""Postfix: smtp/lmtp/error outcome lines, 'host … said' lines, SASL failures, qmgr expiry and senders."""

from __future__ import annotations

import re
from typing import Final

from exporter import patterns
from exporter.events import Delivery
from exporter.mta.common import (
    GMAIL_DOMAINS,
    REPLY_START,
    Context,
    LogFormat,
    connection_delivery,
    connection_error_kind,
    domain_of,
)

# Services whose lines can concern a delivery to Google; any syslog_name may stand before the slash.
_SERVICES: Final = ("/smtp[", "/lmtp[", "/error[", "/qmgr[")
CLAIMS: Final = ("postfix/", "/smtp[", "/lmtp[", "/error[", "/qmgr[", "/smtpd[", "/cleanup[", "/bounce[")
"""Substrings that mark a Postfix line, whatever the service: such a line is never another MTA's."""
# Short (hex) and long queue ids, or whatever a patched build writes; never a log level word.
_QUEUE_ID: Final = patterns.compile(r"[0-9A-Za-z]{3,24}")
_NOT_QUEUE_IDS: Final = frozenset(("warning", "error", "fatal", "panic", "info", "statistics", "NOQUEUE"))
_RELAY_NAME: Final = patterns.compile(r"[^\s,\[]{1,255}")
_STATUSES: Final = frozenset(("sent", "deferred", "bounced", "expired"))
# Where a reply starts inside the parenthesised text, and the Google host the MTA names for it.
_SAID: Final = patterns.compile(
    r"(?:host|server) ([^\s\[]{1,255})\[[^\]]{0,64}\](?::\d+)? (?:said|refused to talk to me):\s*"
)
_HOST_NAME: Final = patterns.compile(r"([^\s\[]{1,255})\[")
_CONNECT_PHRASES: Final = ("connect to ", "conversation with ", "lost connection with ")
_FROM: Final = patterns.compile(r"from=<([^>]{0,512})>")


NOT_DELIVERING: Final = rb"smtpd|cleanup|postscreen|pickup|anvil|dnsblog|bounce"
"""Services that never deliver: those that receive mail (on an MX most lines naming Google are mail *from*
Google's servers) and the one that writes our own delivery notices."""
_NEVER_DELIVERIES: Final = patterns.compile(rb"/(?:" + NOT_DELIVERING + rb")\[")
SERVICE_TAGS: Final = patterns.compile(rb"/(?:(qmgr)|" + NOT_DELIVERING + rb")\[")
"""The service tags never_a_delivery() looks at: qmgr's, and those of the services that never deliver."""


TAG_WITHIN: Final = 512
"""Where a Postfix line's service tag can be: after a timestamp, a host name and any container or relay prefix,
never deep inside the text (a long line is not searched whole for it)."""


def never_a_delivery(line: bytes, ctx: Context) -> bool:
    """A cheap byte-level test: True for Postfix lines that cannot record a delivery to Google."""
    # One regex search instead of a substring search per service: this runs for every line naming Google.
    tag = SERVICE_TAGS.search(line, 0, TAG_WITHIN)
    if tag is None:
        return False
    if tag.group(1) is None or _NEVER_DELIVERIES.search(line, tag.end(), TAG_WITHIN) is not None:
        return True
    return not ctx.track_senders and b"status=expired" not in line


def _said(text: str) -> re.Match[str] | None:
    """Where the reply starts: the regex runs only just before ' said: ' or ' refused to talk to me: ', so a
    line full of 'host x[' costs one substring search, not a regex attempt at every 'host'."""
    for marker in (" said:", " refused to talk to me:"):
        at = text.find(marker)
        if at >= 0:
            low, end = max(0, at - 340), at + len(marker) + 1
            # The host name holds no space, so only the last 'host ' (or 'server ') before it can start a
            # match: try there first, then let the regex search the window (a bracket holding 'host ').
            for word in ("host ", "server "):
                start = text.rfind(word, low, at)
                if start >= 0:
                    found = _SAID.match(text, start, end)
                    if found is not None:
                        return found
            return _SAID.search(text, low, end)
    return None


def _connect_host(text: str) -> str | None:
    """The host Postfix names in 'connect to X[…]', 'conversation with X[…]' or 'lost connection with X[…]'."""
    for phrase in _CONNECT_PHRASES:
        at = text.find(phrase)
        if at >= 0:
            named = _HOST_NAME.match(text, at + len(phrase))
            if named:
                return named.group(1)
    return None


_CLAIMS: Final = patterns.compile("|".join(map(re.escape, CLAIMS)))


def claims(line: str) -> bool:
    """True for any Postfix line (smtpd, cleanup, … included), so that no other parser takes it."""
    return "postfix/" in line or _CLAIMS.search(line) is not None


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for a Postfix line about Google, else None."""
    # Plain substring searches, not one regex: this runs for every line that names Google, most of which
    # (smtpd connections from Google's servers, senders at gmail.com) are not deliveries.
    for service in _SERVICES:
        at = line.find(service)
        if at >= 0:
            break
    else:
        return None
    end = line.find("]: ", at)
    if end < 0 or not line[at + len(service) : end].isdigit():
        return None
    rest = line[end + 3 :].lstrip()
    head, sep, body = rest.partition(": ")
    queue_id = head if sep and _QUEUE_ID.fullmatch(head) and head not in _NOT_QUEUE_IDS else None
    if queue_id is None:
        body = rest

    if service == "/qmgr[":
        return _qmgr(body, queue_id, ctx)
    if body.startswith("to=<"):
        close = body.find(">", 4, 520)
        if close > 0:
            return _outcome(body, body[4:close], queue_id, ctx)
    return _connection(body, queue_id, ctx)


def _outcome(body: str, recipient: str, queue_id: str | None, ctx: Context) -> Delivery | None:
    at = body.find(", status=")
    if at < 0:
        return None
    status, _, detail = body[at + 9 :].partition(" ")
    status = status.rstrip(",")
    if status not in _STATUSES:  # 'undeliverable' = address verification probes, not deliveries
        return None
    detail = detail.strip()
    if detail.startswith("(") and detail.endswith(")"):
        detail = detail[1:-1]
    relay_at = body.find("relay=", 0, at)
    named = _RELAY_NAME.match(body, relay_at + 6) if relay_at >= 0 else None
    relay = named.group(0) if named else "none"
    host = ctx.google.canonical(relay) if relay != "none" else None
    # Accepted mail at a Google relay (most lines) needs no search for 'host X said': its reply is the detail.
    said = None if status == "sent" and host is not None else _said(detail)
    if said is not None:
        host = host or ctx.google.canonical(said.group(1))
    elif host is None:
        connected = _connect_host(detail)
        if connected is not None:
            host = ctx.google.canonical(connected)
    domain = domain_of(recipient)
    if (
        host is None
        and "gsmtp" not in detail.lower()
        # relay=none and no host named: only a DNS failure for gmail.com itself is still about Google.
        and not (status == "deferred" and domain in GMAIL_DOMAINS and relay == "none")
    ):
        return None
    if queue_id and status == "deferred":  # only a message deferred can expire later
        ctx.google_queue_ids.remember(queue_id, "")

    reply: str | None = None
    error: str | None = None
    if status == "sent":
        reply = detail or None
    elif said is not None:
        reply = detail[said.end() :]
    elif detail[:3].isdigit():
        reply = detail  # lmtp/error and some smtp lines log the reply bare
    elif (start := REPLY_START.search(detail)) is not None:
        reply = detail[
            start.start() :
        ]  # a host name that was stripped or mangled ('host[] said: 450-4.2.1 …')
    elif status == "deferred":
        error = connection_error_kind(detail)
    return Delivery(
        mta="postfix",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=queue_id,
        recipient_domain=domain,
        google_host=host,
        reply=reply,
        connection_error=error,
        sender=ctx.senders.get(queue_id) if queue_id and ctx.track_senders else None,
    )


def _connection(body: str, queue_id: str | None, ctx: Context) -> Delivery | None:
    """'host X said', 'refused to talk to me', SASL failures and connect errors, logged with no recipient."""
    said = _said(body)
    if said is not None:
        host = ctx.google.canonical(said.group(1))
        reply = body[said.end() :]
        if host is None and "gsmtp" not in reply.lower():
            return None
        error = None
    else:
        named = _connect_host(body)
        if named is None:
            return None
        host = ctx.google.canonical(named)
        if host is None:
            return None
        reply = None
        error = connection_error_kind(body)
    return connection_delivery("postfix", ctx, queue_id, host, reply, error)


def _qmgr(body: str, queue_id: str | None, ctx: Context) -> Delivery | None:
    if queue_id is None:
        return None
    if "status=expired" in body and queue_id in ctx.google_queue_ids:
        return Delivery(
            mta="postfix",
            scope="recipient",
            status="expired",
            timestamp=ctx.time(),
            queue_id=queue_id,
            recipient_domain=None,
            google_host=None,
            reply=None,
            sender=ctx.senders.get(queue_id) if ctx.track_senders else None,
        )
    if body.startswith("from=<"):
        if ctx.track_senders:
            sender = _FROM.match(body)
            domain = domain_of(sender.group(1)) if sender else None
            ctx.senders.remember(queue_id, domain or "")
        return None
    return None


FORMAT: Final = LogFormat("postfix", claims, parse, never_a_delivery)
