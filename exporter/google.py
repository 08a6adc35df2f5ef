"""Which relay hosts are Google's: the MX, Workspace relay and submission names and their PTR names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

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
)
"""Exact names; `altN.` variants of the MX names are matched too."""

DEFAULT_SUFFIXES: Final = (".l.google.com", ".1e100.net", ".googlemail.com", ".aspmx.l.google.com")
"""Any host under these is Google's (OpenSMTPD logs the PTR name, *.1e100.net)."""


_KNOWN: Final = 1024
"""Host names whose answer canonical() remembers."""


class GoogleHosts:
    """Answers whether a relay host name, as an MTA logged it, belongs to Google."""

    def __init__(self, extra_hosts: Iterable[str] = ()) -> None:
        self._exact = frozenset(h.lower().rstrip(".") for h in (*DEFAULT_HOSTS, *extra_hosts))
        self._suffixes = DEFAULT_SUFFIXES
        self.markers: tuple[bytes, ...] = tuple(
            sorted({h.encode() for h in self._exact if not h.endswith((".google.com", ".gmail.com"))})
        )
        """Byte strings besides Google's own names that make a line worth a closer look (user hosts)."""
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

    def _canonical(self, host: str) -> str | None:
        name = host.strip().lower().rstrip(".")
        if name in self._exact:
            return name
        if name.startswith("alt") and name.partition(".")[2] in self._exact:
            return name
        if name.endswith(self._suffixes):
            return name
        return None
