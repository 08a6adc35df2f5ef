"""Recipient domains whose mail goes to Google: gmail.com, googlemail.com and the Workspace domains the log showed
being delivered to a Google MX, so that their queued mail counts before its first refusal."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

from exporter import patterns
from exporter.events import Delivery
from exporter.queue.shared import GMAIL_DOMAINS

MAX_DOMAINS: Final = 10_000
"""Domains remembered, least recently seen dropped first: memory and the state file stay bounded whatever the log
holds."""
STATE_VERSION: Final = 1
_DOMAIN: Final = patterns.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z0-9-]{1,63}")


def learnt_domain(delivery: Delivery) -> str | None:
    """The recipient domain an attempt tells is Google's: that of a recipient's outcome at a Google host."""
    if delivery.google_host is None or delivery.scope != "recipient":
        return None
    return delivery.recipient_domain


class GoogleDomains:
    """A bounded LRU set of domains seen delivered to Google; safe to feed and read from different threads."""

    def __init__(self, limit: int = MAX_DOMAINS) -> None:
        self.limit = limit
        self._domains: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def learn(self, delivery: Delivery) -> None:
        """Remembers the recipient domain of an attempt at a Google host (delivered, deferred or refused alike: the
        domain's mail goes to Google). Cheap for everything else: the daemon calls it for every event."""
        domain = learnt_domain(delivery)
        if domain is not None and domain not in GMAIL_DOMAINS:
            self.add(domain)

    def learn_domains(self, domains: Iterable[str | None]) -> None:
        """learn() of deliveries at a Google host to these recipient domains, in order (the daemon hands over a
        block's at once: learnt_domain() of its events and the domains of the accepted mail counted in runs).
        Only each domain's last time counts: what a bounded LRU set holds and in which order depends on nothing
        else, and a block names a few domains over and over."""
        for domain in reversed(dict.fromkeys(reversed(list(domains)))):
            if domain is not None and domain not in GMAIL_DOMAINS:
                self.add(domain)

    def add(self, domain: str) -> None:
        """Remembers one domain (ignored unless it looks like a domain name)."""
        domain = domain.lower().rstrip(".")
        if not _DOMAIN.fullmatch(domain):
            return
        with self._lock:
            domains = self._domains
            if domain in domains:
                domains.move_to_end(domain)
                return
            domains[domain] = None
            if len(domains) > self.limit:
                domains.popitem(last=False)

    def __contains__(self, domain: object) -> bool:
        return domain in GMAIL_DOMAINS or domain in self._domains

    def __len__(self) -> int:
        return len(self._domains)

    def state(self) -> dict[str, Any]:
        """What to save in the state file: {"version": 1, "domains": [least recently seen first]}."""
        with self._lock:
            return {"version": STATE_VERSION, "domains": list(self._domains)}

    def restore(self, state: object) -> None:
        """Replaces the domains with a saved state(); raises ValueError (and changes nothing) when it is not one."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"Google domains: expected {{'version': {STATE_VERSION}, 'domains': [...]}}")
        domains = state.get("domains")
        if not isinstance(domains, list) or len(domains) > self.limit:
            raise ValueError(f"Google domains: 'domains' must be a list of at most {self.limit} names")
        for domain in domains:
            if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain):
                raise ValueError(f"Google domains: {str(domain)[:100]!r} is not a lower-case domain name")
        with self._lock:
            self._domains = OrderedDict.fromkeys(domains)
