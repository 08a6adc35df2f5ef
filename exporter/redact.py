"""Reply texts shown to people: personal data (e-mail local parts, IP addresses) redacted, long ones shortened."""

from __future__ import annotations

import re

_LOCAL_PART = re.compile(r"[^\s@<>\"'(),;:\[\]]{1,256}@(?=[A-Za-z0-9.-]*[A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def redact(text: str) -> str:
    """Replace e-mail local parts with '***' and IP addresses with 'x.x.x.x' / 'x:x::x'."""
    text = _LOCAL_PART.sub("***@", text)
    text = _IPV4.sub("x.x.x.x", text)
    return _IPV6.sub(_ipv6_or_keep, text)


def shorten(text: str, limit: int) -> str:
    """The text, or its first `limit` - 1 characters and an ellipsis when it is longer than `limit`, so a reader
    sees that it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _ipv6_or_keep(match: re.Match[str]) -> str:
    # Clock times (21:32:49) have the same characters; an IPv6 address has '::' or at least five colons.
    found = match.group(0)
    return "x:x::x" if "::" in found or found.count(":") >= 5 else found
