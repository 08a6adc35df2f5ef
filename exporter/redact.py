"""Reply texts shown to people: personal data (e-mail local parts, IP addresses) redacted, long ones shortened;
and the template of a reply, which masks whatever varies between the instances of one message."""

from __future__ import annotations

import functools
import re
from typing import Final

from exporter import patterns

_LOCAL_PART = patterns.compile(r"[^\s@<>\"'(),;:\[\]]{1,256}@(?=[A-Za-z0-9.-]*[A-Za-z0-9])")
_IPV4 = patterns.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = patterns.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
# template() runs on every reply no rule matches: it looks for addresses and domain names where their '@' and
# '.' are, not with a pattern tried at every position of the text.
_AT_DOMAIN: Final = patterns.compile(r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
_LOCAL_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&*+/=?^_`{|}~-"
)
_DOT_LETTER: Final = patterns.compile(r"\.[A-Za-z]")
_DOMAIN: Final = patterns.compile(r"(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}")
_DIGITS: Final = patterns.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])|\d+")
"""An IPv4 address or a number: one pass for both."""
_TOKEN_ENDS: Final = "[]<>()\"',;:"
MASK: Final = patterns.compile(r"<(?:address|ip|domain|n)>")
"""What template() puts where a reply varies."""


def redact(text: str) -> str:
    """Replace e-mail local parts with '***' and IP addresses with 'x.x.x.x' / 'x:x::x'."""
    text = _LOCAL_PART.sub("***@", text)
    text = _IPV4.sub("x.x.x.x", text)
    return _IPV6.sub(_ipv6_or_keep, text)


def shorten(text: str, limit: int) -> str:
    """The text, or its first `limit` - 1 characters and an ellipsis when it is longer than `limit`, so a reader
    sees that it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@functools.lru_cache(maxsize=1024)
def template(text: str) -> str:
    """A reply's text with e-mail addresses, IP addresses, domain names and numbers masked, so that the instances
    of one message, whoever sent it when, share one template (Gmail's session id is gone already: see
    reply.normalise). A domain name is masked where it stands alone, not as the host of a link."""
    if "@" in text:
        text = _mask_addresses(text)
    if "::" in text or text.count(":") >= 5:
        text = _IPV6.sub(lambda m: "<ip>" if _ipv6_or_keep(m) != m.group(0) else m.group(0), text)
    text = _mask_domains(text)
    return _DIGITS.sub(lambda m: "<ip>" if "." in m.group(0) else "<n>", text)


def _mask_addresses(text: str) -> str:
    parts: list[str] = []
    copied = 0
    for at in _AT_DOMAIN.finditer(text):
        start = at.start()
        while start > copied and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        if start < at.start():
            parts += (text[copied:start], "<address>")
            copied = at.end()
    return "".join([*parts, text[copied:]]) if parts else text


def _mask_domains(text: str) -> str:
    parts: list[str] = []
    copied = 0
    for dot in _DOT_LETTER.finditer(text):
        if dot.start() < copied:
            continue  # the same word
        start = max(text.rfind(" ", 0, dot.start()), text.rfind("\n", 0, dot.start())) + 1
        end = len(text)
        for sep in (" ", "\n"):
            found = text.find(sep, dot.start())
            if 0 <= found < end:
                end = found
        word_start, word_end = start, end
        while word_start < word_end and text[word_start] in _TOKEN_ENDS:
            word_start += 1
        while word_end > word_start and text[word_end - 1] in _TOKEN_ENDS + ".":
            word_end -= 1
        if word_start >= copied and _DOMAIN.fullmatch(text, word_start, word_end):
            parts += (text[copied:word_start], "<domain>")
            copied = word_end
        elif end > copied:
            parts.append(text[copied:end])
            copied = end
    return "".join([*parts, text[copied:]]) if parts else text


def _ipv6_or_keep(match: re.Match[str]) -> str:
    # Clock times (21:32:49) have the same characters; an IPv6 address has '::' or at least five colons.
    found = match.group(0)
    return "x:x::x" if "::" in found or found.count(":") >= 5 else found
