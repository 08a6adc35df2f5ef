"""The hand-off types of the pipeline: source -> MTA parser -> reply -> classifier -> metrics.

Treat them as immutable. They are not frozen dataclasses only because a frozen one pays a
object.__setattr__ per field, and a busy log creates these by the hundred thousand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

STATUSES: Final = ("sent", "deferred", "bounced", "expired")
"""Delivery outcomes an MTA logs for one recipient at a Google host."""

SCOPES: Final = ("recipient", "connection")
"""`recipient`: an outcome line for one recipient. `connection`: a reply logged with no recipient outcome
(Postfix moving on to the next MX, a SASL failure, Exim's host-level line)."""

CONNECTION_ERROR_KINDS: Final = ("timeout", "refused", "lost_connection", "tls", "dns", "other")
"""Why a deferral to Google carried no reply from Google."""


@dataclass(slots=True)
class Delivery:
    """One log line about a delivery attempt to Google, as an MTA parser read it."""

    mta: str
    scope: str
    status: str | None
    timestamp: float | None
    queue_id: str | None
    recipient_domain: str | None
    google_host: str | None
    reply: str | None
    """Google's reply exactly as the MTA logged it (None when the line carries none)."""
    connection_error: str | None = None
    """One of CONNECTION_ERROR_KINDS when Google never answered."""
    sender: str | None = None
    """The envelope sender when the same line names it (Exim F=, OpenSMTPD from=)."""


@dataclass(slots=True)
class Reply:
    """A Google reply normalised: codes, clean text and Google's origin marker."""

    code: str | None
    """Basic SMTP code, e.g. '550'."""
    enhanced_code: str | None
    """RFC 3463 enhanced status code, e.g. '5.7.26'."""
    text: str
    """Reply text with continuation prefixes, session id and markers removed, whitespace collapsed."""
    origin: str
    """'gcdp' when the reply carries Google's custom-domain-policy marker, else 'gsmtp'."""
    marked: bool
    """True when the reply ends with Google's '- gsmtp' marker."""


@dataclass(slots=True)
class Verdict:
    """What a rules file says about a reply."""

    category: str
    reason: str
    severity: str
    """'temporary' for a 4xx reply, 'permanent' for 5xx (the reply's own basic code)."""


@dataclass(slots=True)
class Event:
    """A delivery to Google with its reply normalised and classified: what metrics and reports consume."""

    delivery: Delivery
    reply: Reply | None
    verdict: Verdict | None
    """None for an accepted delivery and for connection errors without any reply."""

    @property
    def is_rejection(self) -> bool:
        """Google refused or deferred a recipient (the unit of gmail_rejections_total)."""
        return self.verdict is not None and self.delivery.scope == "recipient"
