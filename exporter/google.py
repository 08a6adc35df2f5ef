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


class GoogleHosts:
    """Answers whether a relay host name, as an MTA logged it, belongs to Google."""

    def __init__(self, extra_hosts: Iterable[str] = ()) -> None:
        self._exact = frozenset(h.lower().rstrip(".") for h in (*DEFAULT_HOSTS, *extra_hosts))
        self._suffixes = DEFAULT_SUFFIXES
        self.markers: tuple[bytes, ...] = tuple(
            sorted({h.encode() for h in self._exact if not h.endswith((".google.com", ".gmail.com"))})
        )
        """Byte strings besides Google's own names that make a line worth a closer look (user hosts)."""

    def canonical(self, host: str) -> str | None:
        """The lower-case host name if it is Google's, else None."""
        name = host.strip().lower().rstrip(".")
        if name in self._exact:
            return name
        if name.startswith("alt") and name.partition(".")[2] in self._exact:
            return name
        if name.endswith(self._suffixes):
            return name
        return None
