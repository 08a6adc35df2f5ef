"""OpenSMTPD: 'mta delivery … result= stat=' (6.x) and 'relay: PermFail for …' (5.x) lines."""

from __future__ import annotations

import re
from typing import Final

from exporter.events import Delivery
from exporter.mta.common import Context, connection_error_kind, domain_of

TAG: Final = re.compile(
    r"smtpd\[\d+\]:\s+(?:(\w{16}) mta delivery |relay: (Ok|TempFail|PermFail|Loop) for (\w+): )"
)
_FIELD: Final = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.){0,8192})"|<([^>]{0,512})>|([^\s,]{0,512}))')
_RELAY_HOST: Final = re.compile(r"\(([^)\s]{1,255})\)")
_RESULTS: Final = {"Ok": "sent", "TempFail": "deferred", "PermFail": "bounced", "Loop": "bounced"}


def parse(line: str, ctx: Context) -> Delivery | None:
    """A Delivery for an OpenSMTPD line about Google, else None."""
    tag = TAG.search(line)
    if tag is None:
        return None
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
    host = ctx.google.canonical(named.group(1) if named else relay.split(" ", 1)[0])
    if host is None and "gsmtp" not in stat.lower():
        return None
    reply: str | None = stat or None
    error: str | None = None
    if status != "sent" and not stat[:3].isdigit():
        reply, error = None, (connection_error_kind(stat) if status == "deferred" else None)
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
