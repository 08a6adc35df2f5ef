"""A Google reply in any other line: Haraka, Stalwart, Exchange NDRs, DSN Diagnostic-Code, JSON event logs."""

from __future__ import annotations

import re
from typing import Final

from exporter.events import Delivery
from exporter.mta.common import REPLY_START, Context, LogFormat, domain_of

_BARE_START: Final = re.compile(r"(?:smtp;\s*|said:\s*|returned '|:\s)([245]\d\d)[ -]")
_HOST: Final = re.compile(r"([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}\.?)")
_RECIPIENT: Final = re.compile(r"[\w.+'=-]{1,128}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})")


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for a line that carries Google's reply but no MTA format we know."""
    marker = line.lower().rfind("gsmtp")
    if marker < 0:
        return None
    head = line[:marker]
    start = REPLY_START.search(head)
    if start is not None and start.start() == 0:
        return None  # a reply at column 0 continues the previous entry (Exim writes real newlines)
    begin = start.start() if start else -1
    if start is None:
        bare = _BARE_START.search(head)
        if bare is None:
            return None
        begin = bare.start(1)
    reply = line[begin : marker + 5]
    code = reply[:3]
    if code.startswith("2"):
        status = "sent"
    elif code.startswith("4"):
        status = "deferred"
    else:
        status = "bounced"
    host = None
    for m in _HOST.finditer(line[:begin]):
        host = ctx.google.canonical(m.group(1))
        if host:
            break
    recipient = _RECIPIENT.search(line[:begin])
    return Delivery(
        mta="generic",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=None,
        recipient_domain=domain_of("x@" + recipient.group(1)) if recipient else None,
        google_host=host,
        reply=reply,
    )


def claims(line: str) -> bool:
    """The fallback takes every line no MTA claimed."""
    return True


FORMAT: Final = LogFormat("generic", claims, parse)
