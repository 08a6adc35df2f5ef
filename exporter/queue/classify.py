"""A queued recipient's last delay reason -> whether it waits for Google, and for which reply category or which
kind of unanswered attempt: the same normaliser and rules as the log (see shared.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from exporter import patterns
from exporter.queue.domains import GoogleDomains
from exporter.queue.listing import QueuedRecipient
from exporter.queue.shared import (
    CATEGORIES,
    CONNECTION_ERROR_KINDS,
    REPLY_START,
    GoogleHosts,
    Rules,
    connection_error_kind,
    normalise,
)

NOT_TRIED: Final = "not_tried"
UNANSWERED_KINDS: Final = (*CONNECTION_ERROR_KINDS, NOT_TRIED)
"""gmail_queue_unanswered_recipients' kinds: the log's connection-error kinds and a recipient not tried yet."""

_BARE_CODE: Final = patterns.compile(r"(?:^|:\s|Deferred:\s)\s*([245]\d\d)(?=[ -]|$)")
"""A reply without an enhanced code: its basic code at the start or after an MTA's 'said:' or 'Deferred:'."""
_HOST: Final = patterns.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z][a-z0-9-]{1,62}\.?")
_HOST_WORDS: Final = ("google", "gmail", "1e100")
_MAX_HOSTS: Final = 16
_CACHE_SIZE: Final = 1024


class Outcome(NamedTuple):
    """What a Google-bound recipient waits for: ("category", one of CATEGORIES) when Google answered its last
    attempt, else ("unanswered", one of UNANSWERED_KINDS)."""

    family: str
    label: str


def reply_in(reason: str) -> str | None:
    """Where Google's reply starts in an MTA's delay reason, or None when the reason holds none."""
    found = REPLY_START.search(reason)
    if found is None:
        found = _BARE_CODE.search(reason)
        return None if found is None else reason[found.start(1) :]
    return reason[found.start() :]


class QueueClassifier:
    """Judges queued recipients; keeps a bounded cache per reason text (a bulk message repeats one reason)."""

    def __init__(self, rules: Rules, hosts: GoogleHosts, domains: GoogleDomains) -> None:
        self.rules = rules
        self.hosts = hosts
        self.domains = domains
        self._host_words = _HOST_WORDS + tuple(m.decode("ascii", "replace").lower() for m in hosts.markers)
        self._cache: dict[str, tuple[bool, Outcome]] = {}

    def judge(self, recipient: QueuedRecipient) -> Outcome | None:
        """The recipient's Outcome, or None when it does not wait for Google."""
        reason = recipient.reason
        if reason is None:
            return Outcome("unanswered", NOT_TRIED) if recipient.domain in self.domains else None
        cached = self._cache.get(reason)
        if cached is None:
            cached = self._judge_reason(reason)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[reason] = cached
        names_google, outcome = cached
        if names_google or recipient.domain in self.domains:
            return outcome
        return None

    def _judge_reason(self, reason: str) -> tuple[bool, Outcome]:
        text = reply_in(reason)
        reply = normalise(text) if text is not None else None
        names_google = (reply is not None and reply.marked) or self._names_google_host(reason)
        if reply is not None and reply.code is not None:
            verdict = self.rules.classify(reply, fallback_severity="temporary")
            return names_google, Outcome("category", verdict.category)
        kind = connection_error_kind(reason)
        return names_google, Outcome("unanswered", kind if kind in CONNECTION_ERROR_KINDS else "other")

    def _names_google_host(self, reason: str) -> bool:
        low = reason.lower()
        if "gsmtp" in low:
            return True
        if not any(word in low for word in self._host_words):
            return False
        for count, host in enumerate(_HOST.finditer(low)):
            if count >= _MAX_HOSTS:
                break
            if self.hosts.canonical(host.group(0)) is not None:
                return True
        return False


class Tally:
    """The counts of one listing: Google-bound recipients by category and by unanswered kind, and the oldest
    Google-bound arrival."""

    def __init__(self) -> None:
        self.categories: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.unanswered: dict[str, int] = dict.fromkeys(UNANSWERED_KINDS, 0)
        self.oldest: float | None = None

    def add(self, recipient: QueuedRecipient, outcome: Outcome | None) -> None:
        if outcome is None:
            return
        counts = self.categories if outcome.family == "category" else self.unanswered
        counts[outcome.label if outcome.label in counts else _fallback(counts)] += 1
        if recipient.arrival is not None and (self.oldest is None or recipient.arrival < self.oldest):
            self.oldest = recipient.arrival

    def add_all(self, classifier: QueueClassifier, recipients: Iterable[QueuedRecipient]) -> None:
        judge, add = classifier.judge, self.add
        for recipient in recipients:
            add(recipient, judge(recipient))


def _fallback(counts: dict[str, int]) -> str:
    return "unclassified" if "unclassified" in counts else "other"
