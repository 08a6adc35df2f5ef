"""Exim mainlog: '**' bounces, '==' deferrals, '=>'/'->' deliveries, host-level 'H=' lines, '<=' senders."""

from __future__ import annotations

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

# Message ids: 6-6-2 base62 (Exim < 4.97) or 6-11-4 (4.97 and later).
_LINE: Final = patterns.compile(
    r"(?:^|\s)([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) (\*\*|==|=>|->|<=|H=)\s?"
)
# Exim's debug output (exim -d, the container images that run it) logs the same lines behind the process id,
# without the message id, which an earlier 'delivering <id>' line named: '  278   == a@gmail.com R=dnslookup …'.
_DEBUG_LINE: Final = patterns.compile(r"^ {0,8}\d{1,8} {3}(\*\*|==|=>|->) ")
_HOST: Final = patterns.compile(r"(?:^|\s)H=([^\s\[]{1,255})(?: \([^)]{0,255}\))? \[[^\]]{1,64}\]")
# Exim before 4.80 named the host inside the error: '…after RCPT TO:<a@b>: host gmail-smtp-in.l.google.com
# [209.85.x.x]: 550-5.1.1 …'.
_ERROR_HOST: Final = patterns.compile(r"host ([^\s\[]{1,255})(?: \[[^\]]{1,64}\])?:?\s*")
# 'after RCPT TO:<a@b>:', 'after MAIL FROM:<a@b> SIZE=123:', 'after end of data:', 'after initial connection:'
_SMTP_ERROR: Final = patterns.compile(
    r"SMTP error from remote mail server after (?:[^:<]{0,100}:<[^>]{0,512}>[^:]{0,100}|[^:]{0,200}):\s*"
)
_CONFIRMATION: Final = patterns.compile(r' C="(.*?)"(?: |$)')
_SENDER: Final = patterns.compile(r"\sF=<([^>]{0,512})>")
_TRAILER: Final = patterns.compile(r"(?:\s+(?:DT|QT|ST|RT)=\S{1,40})+\s*$")
_DEFER: Final = patterns.compile(r"\sdefer \((-?\d+)\)(?::\s*(.*))?")


def claims(line: str) -> bool:
    """True for a mainlog line about a message (it names the message id and a delivery flag), or such a line of
    Exim's debug output."""
    return _LINE.search(line) is not None or _DEBUG_LINE.match(line) is not None


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for an Exim mainlog line about Google, else None."""
    m = _LINE.search(line)
    message_id: str | None
    if m is not None:
        message_id, flag = m.group(1), m.group(2)
    elif (m := _DEBUG_LINE.match(line)) is not None:
        message_id, flag = None, m.group(1)
    else:
        return None
    rest = line[m.end() :]
    if flag == "<=" and message_id is not None:
        if ctx.track_senders:
            ctx.senders.remember(message_id, domain_of(rest.split(" ", 1)[0]) or "")
        return None
    if flag == "H=" and message_id is not None:
        rest = "H=" + rest
        return _host_line(rest, message_id, ctx)

    address, _, fields = rest.partition(" ")
    host_match = _HOST.search(fields)
    host = ctx.google.canonical(host_match.group(1)) if host_match else _error_host(fields, ctx)
    reply = _reply(fields)
    if (
        host is None
        and not (reply and "gsmtp" in reply.lower())
        and not _gmail_dns_failure(flag, address, fields)
    ):
        return None
    sender_match = _SENDER.search(fields)
    sender = domain_of(sender_match.group(1)) if sender_match else None
    if sender is None and ctx.track_senders and message_id is not None:
        sender = ctx.senders.get(message_id)

    status: str
    connection_error: str | None = None
    if flag in ("=>", "->"):
        status = "sent"
        confirmation = _CONFIRMATION.search(fields)
        reply = confirmation.group(1) if confirmation else None
    elif flag == "**":
        status = "expired" if "retry timeout exceeded" in fields.lower() and reply is None else "bounced"
    else:
        defer = _DEFER.search(fields)
        if defer is not None and defer.group(1) == "-53":  # retry time not reached: no attempt was made
            return None
        status = "deferred"
        if reply is None:
            connection_error = connection_error_kind(defer.group(2) or "" if defer else fields)
    return Delivery(
        mta="exim",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=message_id,
        recipient_domain=domain_of(address),
        google_host=host,
        reply=reply,
        connection_error=connection_error,
        sender=sender,
    )


def _gmail_dns_failure(flag: str, address: str, fields: str) -> bool:
    """Whether a deferral names no host because Gmail's own domain did not resolve ('== a@gmail.com
    R=dnslookup defer (-1): host lookup did not complete'): still about Google, as in Postfix."""
    if flag != "==" or domain_of(address) not in GMAIL_DOMAINS:
        return False
    defer = _DEFER.search(fields)
    return defer is not None and connection_error_kind(defer.group(2) or "") == "dns"


def _host_line(rest: str, message_id: str, ctx: Context) -> Delivery | None:
    """The host-level line Exim writes before the recipient line for the same reply: connection scope, so
    the reply is counted once, on the recipient line."""
    host_match = _HOST.search(rest)
    if host_match is None:
        return None
    host = ctx.google.canonical(host_match.group(1))
    reply = _reply(rest)
    if host is None and not (reply and "gsmtp" in reply.lower()):
        return None
    return connection_delivery(
        "exim",
        ctx,
        message_id,
        host,
        reply,
        None if reply else connection_error_kind(rest[host_match.end() :]),
    )


def _error_host(fields: str, ctx: Context) -> str | None:
    """The Google host an older Exim names inside its 'SMTP error from remote mail server' text."""
    error = _SMTP_ERROR.search(fields)
    named = _ERROR_HOST.match(fields, error.end()) if error is not None else None
    return ctx.google.canonical(named.group(1)) if named is not None else None


def _reply(fields: str) -> str | None:
    """The remote reply in a delivery line: after 'SMTP error from remote mail server after …:', or quoted in
    Exim's own words ('Remote host closed connection in response to HELO … (EHLO response was: 421-4.7.0 …)')."""
    error = _SMTP_ERROR.search(fields)
    if error is not None:
        named = _ERROR_HOST.match(fields, error.end())
        return _TRAILER.sub("", fields[named.end() if named is not None else error.end() :])
    start = REPLY_START.search(fields)
    return fields[start.start() :] if start is not None else None


FORMAT: Final = LogFormat("exim", claims, parse)
