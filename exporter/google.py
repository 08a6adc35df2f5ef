"""How Google is recognised: its relay hosts (MX, Workspace relay and submission names and their PTR names), the
links and the session ids its replies carry, and the wordings only Gmail's replies use."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from exporter import patterns

DEFAULT_HOSTS: Final = (
    "gmail-smtp-in.l.google.com",
    "aspmx.l.google.com",
    "smtp.google.com",
    "aspmx2.googlemail.com",
    "aspmx3.googlemail.com",
    "aspmx4.googlemail.com",
    "aspmx5.googlemail.com",
    "smtp.gmail.com",
    "gmail-smtp-msa.l.google.com",
    "smtp-relay.gmail.com",
    "gmail.com",
    "googlemail.com",
)
"""Exact names; `altN.` variants of the MX names are matched too. gmail.com and googlemail.com are Google's
addresses too: an MTA that finds no MX record connects to them."""

DEFAULT_SUFFIXES: Final = (".l.google.com", ".1e100.net", ".googlemail.com", ".aspmx.l.google.com")
"""Any host under these is Google's (OpenSMTPD logs the PTR name, *.1e100.net)."""

LINKS: Final = (
    "support.google.com",
    "accounts.google.com",
    "mail.google.com/support",
    "google.com/mail/help",
)
"""Google's help and sign-in links, which Gmail's replies carry and other servers' replies do not."""

WORDINGS: Final = (
    "you tried to reach",
    "our system has detected",
    "gmail has detected",
    "your web browser",
    "user sending quota",
    "smtp relay limit",
    "unauthenticated email from",
    "does not have authentication information",
    "you are trying to contact",
    "you're using to send mail",
    "gmail requires all",
    "the user or domain that you are sending to",
    "messages missing a valid",
    "is not rfc 5322 compliant",
    "has an spf record with a hard fail",
    "inbox is out of storage space",
    "username and password not accepted",
    "application-specific password required",
    "temporary system problem",
    "try again later, closing connection",
    "not in whitelist for rcpt domain",
    "tls required for rcpt domain",
    "does not match the ip address of the hostname",
    "does not have a ptr record setup",
    "one or more suspicious entries",
    "ipv6 sending guidelines",
    "very low reputation of the sending",
    "nature of the content and/or the links",
    "likely unsolicited mail",
    "unusual rate of unsolicited mail",
    "receiving mail at a rate",
    "receiving mail too quickly",
    "quota for sending messages with the same message-id",
    "weren't able to find the recipient domain",
    "too many login attempts",
    "authentication required. learn more at",
    "authentication required. for more information, go to",
    "your email has been blocked because",
    "your email has been rate limited because",
    "because its content presents a potential",
    "messages with multiple addresses in from",
)
"""Phrases (lower case) that only Gmail's replies use, from their first words where possible: where a reply
carries no marker and names no host (a first line that Sendmail or a DSN kept alone, an error a mail library
printed without Google's marker), they say it is Gmail's. The analyser's prefilter searches them as they stand;
the evidence check compares them squeezed (letters and digits only), so wrapping does not matter there."""

# Matched from its tail: a fixed shape after free letters and digits, which a backtracking regex over the whole
# word would pay for with every way to split them.
_SESSION_ID_TAIL: Final = patterns.compile(
    r"(?:si|sm|sor)\d{5,12}[a-z0-9]{1,6}(?:\.\d{1,4})?$", re.IGNORECASE
)
_SESSION_ID_PREFIX: Final = patterns.compile(r"[0-9a-z-]*\d[0-9a-z-]*", re.IGNORECASE)
_SESSION_ID_2024: Final = patterns.compile(r"[0-9a-f]{13}-[0-9a-z]{10,40}\.\d{1,4}", re.IGNORECASE)
_HOST_TOKEN: Final = patterns.compile(
    r"(?<![\w@.-])([A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63}){1,8})\.?"
)

_APEX_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})
_AS_HOST: Final = patterns.compile(r"\s?(?:\[|\((?:\d|[0-9a-f]*:))|:\d", re.IGNORECASE)
"""What follows a host name where it names a host: its address ('gmail.com[142.251.31.83]', 'gmail.com
(142.251.31.83)') or a port. Free text names Gmail's domains for much else ('not allowed to send from
gmail.com', 'No SMTP servers were available for gmail.com')."""

_KNOWN: Final = 1024
"""Host names whose answer canonical() remembers."""


def is_session_id(token: str) -> bool:
    """Whether a word has the shape of the session id Gmail ends its replies with ('50si6194057ugb' in 2007,
    'q16si3475662wrs.311', 'du14-20020a17090772ce00b00780ec98afafsi1640581ejc.113', 'ffacd0b85a97d-45d9ec344536t8f.12')."""
    if len(token) > 120:
        return False
    tail = _SESSION_ID_TAIL.search(token)
    if tail is not None:
        return tail.start() <= 60 and _SESSION_ID_PREFIX.fullmatch(token, 0, tail.start()) is not None
    return _SESSION_ID_2024.fullmatch(token) is not None


def has_link(lower: str) -> bool:
    """Whether lower-cased text holds one of Google's help or sign-in links."""
    return "google.com" in lower and any(link in lower for link in LINKS)


_NOT_WORDS: Final = patterns.compile(r"[2-5]\d\d[ -]|[245]\.\d{1,3}\.\d{1,3}|[\W_]+")
"""Reply codes (an MTA's continuation prefixes) and what is not a letter or digit."""
_SQUEEZED_WORDINGS: Final = tuple(_NOT_WORDS.sub("", w) for w in WORDINGS)


def has_wording(text: str) -> bool:
    """Whether a reply holds a wording only Gmail's replies use, however it is wrapped, cased and prefixed."""
    squeezed = _NOT_WORDS.sub("", text.lower())
    return any(wording in squeezed for wording in _SQUEEZED_WORDINGS)


class GoogleHosts:
    """Answers whether a relay host name, as an MTA logged it, belongs to Google."""

    def __init__(self, extra_hosts: Iterable[str] = ()) -> None:
        self._exact = frozenset(h.lower().rstrip(".") for h in (*DEFAULT_HOSTS, *extra_hosts))
        self._suffixes = DEFAULT_SUFFIXES
        self.markers: tuple[bytes, ...] = tuple(
            sorted({h.encode() for h in self._exact if h and not h.endswith((".google.com", ".gmail.com"))})
        )
        """Byte strings besides Google's own names that make a line worth a closer look (user hosts)."""
        self._hints = ("google", "1e100", "gmail", *(h.decode() for h in self.markers))
        self._known: dict[str, str | None] = {}

    def canonical(self, host: str) -> str | None:
        """The lower-case host name if it is Google's, else None."""
        # A log names a few relays over and over: remember the answers (bounded, whatever the log holds).
        try:
            return self._known[host]
        except KeyError:
            pass
        found = self._canonical(host)
        if len(self._known) >= _KNOWN:
            self._known.clear()
        self._known[host] = found
        return found

    def named_in(self, text: str) -> str | None:
        """The first of Google's hosts that free text names as a host (not as the domain of an address)."""
        lower = text.lower()
        if not any(hint in lower for hint in self._hints):
            return None
        for token in _HOST_TOKEN.finditer(text):
            host = self.canonical(token.group(1))
            if host is not None and (host not in _APEX_DOMAINS or _AS_HOST.match(text, token.end())):
                return host
        return None

    def _canonical(self, host: str) -> str | None:
        name = host.strip().lower().rstrip(".")
        if name in self._exact:
            return name
        if name.startswith("alt") and name.partition(".")[2] in self._exact:
            return name
        if name.endswith(self._suffixes):
            return name
        return None
