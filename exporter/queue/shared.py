"""What the queue reader borrows from the log analyser, in one place: the reply normaliser, the rules, Google's
hosts and domains, and the MTA parsers' helpers. A queued recipient's last delay reason is judged by exactly the
code that judges the same reply in the log."""

from __future__ import annotations

from exporter.events import CONNECTION_ERROR_KINDS, Reply, Verdict
from exporter.google import GoogleHosts
from exporter.mta.common import GMAIL_DOMAINS, REPLY_START, connection_error_kind, domain_of
from exporter.reply import normalise
from exporter.rules import CATEGORIES, Rules

__all__ = [
    "CATEGORIES",
    "CONNECTION_ERROR_KINDS",
    "GMAIL_DOMAINS",
    "REPLY_START",
    "GoogleHosts",
    "Reply",
    "Rules",
    "Verdict",
    "connection_error_kind",
    "domain_of",
    "normalise",
]
