"""OpenSMTPD: 'mta delivery … result= stat=' (6.x) and 'relay: PermFail for …' (5.x) lines.

A reply refused at the greeting or EHLO never reaches the recipient line: OpenSMTPD logs it on its session's
'mta error reason=BANNER rejected: 421 …' line and, seconds later, fails the recipient with 'Network error on
destination MXs' naming only the relay's address. So the session's 'mta connecting address=… host=…' line
tells which addresses are Google's, and the last reply refused at an address is lent to the recipient lines
that follow for it."""

from __future__ import annotations

import re
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

_TAG: Final = patterns.compile(
    r"smtpd\[\d+\]:\s+(?:(\w{16}) mta delivery |relay: (Ok|TempFail|PermFail|Loop) for (\w+): )"
)
_LINE: Final = patterns.compile(
    r"smtpd\[\d+\]:\s+(?:\w{16} |relay: |smtp-(?:in|out): |info: |warn: |debug: )"
)
_SESSION: Final = patterns.compile(r"smtpd\[\d+\]:\s+(\w{16}) mta (connecting|error) ")
_CONNECTING: Final = patterns.compile(r"address=\w+://\[?([^\s\]]{1,64}?)\]?(?::\d+)? host=([^\s]{1,255})")
_NO_REPLY: Final = "network error on destination mxs"
_FIELD: Final = patterns.compile(r'(\w+)=(?:"((?:[^"\\]|\\.){0,8192})"|<([^>]{0,512})>|([^\s,]{0,512}))')
_RELAY_HOST: Final = patterns.compile(r"\(([^)\s]{1,255})\)")
_RESULTS: Final = {"Ok": "sent", "TempFail": "deferred", "PermFail": "bounced", "Loop": "bounced"}


def claims(line: str) -> bool:
    """True for OpenSMTPD's lines: a session's or envelope's, the routing and informational ones."""
    return "smtpd[" in line and _LINE.search(line) is not None


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for an OpenSMTPD line about Google, else None."""
    tag = _TAG.search(line)
    if tag is None:
        session_line = _SESSION.search(line)
        return _session(session_line, line, ctx) if session_line else None
    session = tag.group(1) or tag.group(3)
    body = line[tag.end() :]
    fields: dict[str, str] = {}
    if tag.group(1):
        for m in _FIELD.finditer(body):
            fields[m.group(1)] = next((g for g in m.group(2, 3, 4) if g is not None), "")
        result = fields.get("result", "")
        stat = fields.get("stat", "").replace('\\"', '"')
    else:
        result = tag.group(2)
        head, sep, stat = body.partition("stat=")
        if not sep:
            return None
        for m in _FIELD.finditer(head):
            fields[m.group(1)] = next((g for g in m.group(2, 3, 4) if g is not None), "")
    status = _RESULTS.get(result)
    if status is None:
        return None
    relay = fields.get("relay", "")
    # 6.x quotes 'IP (name)'; 5.x writes it bare, so the name follows the field the regex stopped at.
    named = _RELAY_HOST.search(relay) or _RELAY_HOST.search(body[body.find("relay=") :][:300])
    address = relay.split(" ", 1)[0]
    host = ctx.google.canonical(named.group(1) if named else address) or ctx.addresses.get(address)
    if host is None and "gsmtp" not in stat.lower():
        return None
    reply: str | None = stat or None
    error: str | None = None
    if status != "sent" and not stat[:3].isdigit():
        lent = ctx.last_replies.get(address) if stat.lower() == _NO_REPLY else None
        reply, error = lent, None if lent else (connection_error_kind(stat) if status == "deferred" else None)
    elif status == "sent":
        ctx.last_replies.pop(address, None)
    return Delivery(
        mta="opensmtpd",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=fields.get("evpid") or session,
        recipient_domain=domain_of(fields.get("to")),
        google_host=host,
        reply=reply,
        connection_error=error,
        sender=domain_of(fields.get("from")),
    )


def _session(match: re.Match[str], line: str, ctx: Context) -> Delivery | None:
    """'mta connecting' remembers Google's addresses; 'mta error' carries a reply refused before any
    recipient (connection scope)."""
    session, kind = match.group(1), match.group(2)
    body = line[match.end() :]
    if kind == "connecting":
        connecting = _CONNECTING.search(body)
        host = ctx.google.canonical(connecting.group(2)) if connecting else None
        if connecting and host:
            ctx.addresses.remember(connecting.group(1), host)
            ctx.sessions.remember(session, connecting.group(1))
            ctx.last_replies.pop(connecting.group(1), None)  # only the latest session's reply may be lent
        return None
    address = ctx.sessions.get(session)
    start = REPLY_START.search(body)
    if start is None:
        return None
    reply = body[start.start() :]
    if address is None:  # a session whose start was not read: only Google's marker says it was Google
        return (
            connection_delivery("opensmtpd", ctx, session, None, reply) if "gsmtp" in reply.lower() else None
        )
    ctx.last_replies.remember(address, reply)
    return connection_delivery("opensmtpd", ctx, session, ctx.addresses.get(address), reply)


FORMAT: Final = LogFormat("opensmtpd", claims, parse)
