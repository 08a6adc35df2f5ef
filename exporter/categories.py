"""The closed list of rejection categories and what the sender has to fix for each, in one table."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

WHAT_TO_FIX: Final = MappingProxyType(
    {
        "authentication": "SPF, DKIM or DMARC: sender authentication and alignment",
        "rate_limit": "Sending speed: Gmail is throttling",
        "reputation": "IP or domain reputation: Gmail blocks the source",
        "spam": "The message content looks like spam",
        "ptr": "Reverse DNS (PTR) of the sending IP",
        "tls": "TLS on the connection",
        "recipient": "The address: unknown, disabled, invalid, or its domain not found",
        "mailbox_full": "Nothing on the sender side: the recipient is over quota",
        "message": "The message itself: size, format, loops",
        "sending_limit": "Google sending limits and quotas",
        "policy": "A domain or administrator policy of the recipient",
        "smtp_auth": "SMTP AUTH credentials for smtp.gmail.com",
        "relay": "The Google Workspace SMTP relay service settings",
        "protocol": "The sending MTA's SMTP conversation",
        "temporary": "Nothing: a transient problem at Google",
        "unclassified": "Unknown: no rule matches this refusal yet (add one, and report the reply upstream)",
    }
)
"""Category -> what the sender has to fix, for people (the landing page)."""

CATEGORIES: Final = tuple(WHAT_TO_FIX)
"""The closed category list that dashboards, alerts and `classify` output share."""


def runbook_anchor(category: str) -> str:
    """The fragment of the category's section in deploy/runbook.md (a heading "Category `name`")."""
    return f"category-{category}"
