"""Redaction of personal data in reply texts shown to people: e-mail local parts and IP addresses; and the
template of a reply, which masks whatever varies between the instances of one message."""

from __future__ import annotations

import re
from typing import Final

from exporter.google import is_session_id

_LOCAL_PART = re.compile(r"[^\s@<>\"'(),;:\[\]]{1,256}@(?=[A-Za-z0-9.-]*[A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_ADDRESS: Final = re.compile(r"[^\s@<>\"'(),;:\[\]]{1,256}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
# A domain name standing alone, not the host of a link ('support.google.com/mail/…' keeps its words).
_DOMAIN: Final = re.compile(r"(?<![\w./:-])(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![\w/-])")
_NUMBER: Final = re.compile(r"\d+")
MASK: Final = re.compile(r"<(?:address|ip|id|domain|n)>")
"""What template() puts where a reply varies."""
_WORD: Final = re.compile(r"\S{6,120}")


def redact(text: str) -> str:
    """Replace e-mail local parts with '***' and IP addresses with 'x.x.x.x' / 'x:x::x'."""
    text = _LOCAL_PART.sub("***@", text)
    text = _IPV4.sub("x.x.x.x", text)
    return _IPV6.sub(_ipv6_or_keep, text)


def template(text: str) -> str:
    """A reply's text with e-mail addresses, IP addresses, session ids, domain names and numbers masked, so that
    the instances of one message, whoever sent it when, share one template."""
    text = _ADDRESS.sub("<address>", text)
    text = _WORD.sub(_session_id_or_keep, text)
    text = _IPV4.sub("<ip>", text)
    text = _IPV6.sub(lambda m: "<ip>" if _ipv6_or_keep(m) != m.group(0) else m.group(0), text)
    text = _DOMAIN.sub("<domain>", text)
    return _NUMBER.sub("<n>", text)


def _ipv6_or_keep(match: re.Match[str]) -> str:
    # Clock times (21:32:49) have the same characters; an IPv6 address has '::' or at least five colons.
    found = match.group(0)
    return "x:x::x" if "::" in found or found.count(":") >= 5 else found


def _session_id_or_keep(match: re.Match[str]) -> str:
    word = match.group(0)
    return "<id>" if is_session_id(word.rstrip(".,;)")) else word
