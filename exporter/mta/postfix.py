"""Postfix: smtp/lmtp/error outcome lines, 'host … said' lines, SASL failures, qmgr expiry and senders."""

from __future__ import annotations

import re
from typing import Final

from exporter.events import Delivery
from exporter.mta.common import GMAIL_DOMAINS, Context, connection_error_kind, domain_of

TAG: Final = re.compile(r"[\w.-]*/(smtp|lmtp|error|qmgr|relay|local|virtual|pipe|discard)\[\d+\]:\s+")
_QUEUE_ID: Final = re.compile(r"([0-9A-F]{6,20}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{8,20}):\s+")
_TO: Final = re.compile(r"to=<([^>]{0,512})>")
_RELAY: Final = re.compile(r"relay=([^\s,\[]{1,255})")
_STATUS: Final = re.compile(r"status=(sent|deferred|bounced|expired|undeliverable)\b\s*(?:\((.*)\))?")
# Where a reply starts inside the parenthesised text, and the Google host the MTA names for it.
_SAID: Final = re.compile(
    r"(?:host|server) ([^\s\[]{1,255})\[[^\]]{0,64}\](?::\d+)? (?:said|refused to talk to me):\s*"
)
_CONNECT: Final = re.compile(r"(?:connect to|conversation with|lost connection with|with) ([^\s\[]{1,255})\[")
_FROM: Final = re.compile(r"from=<([^>]{0,512})>")


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for a Postfix line about Google, else None."""
    tag = TAG.search(line)
    if tag is None:
        return None
    service = tag.group(1)
    rest = line[tag.end() :]
    qid_match = _QUEUE_ID.match(rest)
    queue_id = qid_match.group(1) if qid_match else None
    body = rest[qid_match.end() :] if qid_match else rest

    if service == "qmgr":
        return _qmgr(body, queue_id, ctx)

    to = _TO.match(body) if body.startswith("to=") else None
    if to is not None:
        return _outcome(body, to.group(1), queue_id, ctx)
    return _connection(body, queue_id, ctx)


def _outcome(body: str, recipient: str, queue_id: str | None, ctx: Context) -> Delivery | None:
    status_match = _STATUS.search(body)
    if status_match is None:
        return None
    status = status_match.group(1)
    if status == "undeliverable":  # address verification probes, not deliveries
        return None
    detail = status_match.group(2) or ""
    relay_match = _RELAY.search(body, 0, status_match.start())
    relay = relay_match.group(1) if relay_match else "none"
    host = ctx.google.canonical(relay) if relay != "none" else None
    said = _SAID.search(detail)
    if said is not None:
        host = host or ctx.google.canonical(said.group(1))
    elif host is None:
        connect = _CONNECT.search(detail)
        if connect is not None:
            host = ctx.google.canonical(connect.group(1))
    domain = domain_of(recipient)
    google_reply = "gsmtp" in detail.lower()
    # relay=none and no host named: only a DNS failure for gmail.com itself is still about Google.
    dns_failure_for_gmail = status == "deferred" and domain in GMAIL_DOMAINS and relay == "none"
    if host is None and not google_reply and not dns_failure_for_gmail:
        return None
    if queue_id:
        ctx.google_queue_ids.remember(queue_id, "")

    reply: str | None = None
    error: str | None = None
    if status == "sent":
        reply = detail or None
    elif said is not None:
        reply = detail[said.end() :]
    elif detail[:3].isdigit():
        reply = detail  # lmtp/error and some smtp lines log the reply bare
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
    said = _SAID.search(body)
    if said is not None:
        host = ctx.google.canonical(said.group(1))
        reply = body[said.end() :]
        if host is None and "gsmtp" not in reply.lower():
            return None
        error = None
    else:
        connect = _CONNECT.search(body)
        if connect is None:
            return None
        host = ctx.google.canonical(connect.group(1))
        if host is None:
            return None
        reply = None
        error = connection_error_kind(body)
    return Delivery(
        mta="postfix",
        scope="connection",
        status=None,
        timestamp=ctx.time(),
        queue_id=queue_id,
        recipient_domain=None,
        google_host=host,
        reply=reply,
        connection_error=error,
    )


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
