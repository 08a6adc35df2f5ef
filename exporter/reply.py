"""A reply as an MTA logged it -> basic code, enhanced code, clean text and Google's origin marker.

MTAs flatten Gmail's multi-line replies in different ways; all of them are undone here:
Postfix joins lines with a space and keeps every `550-5.7.26 ` prefix, SASL warnings join with `?`,
Exim joins with the two characters `\\n`, OpenSMTPD drops the `550-` prefix of later lines and glues a
multi-digit enhanced code to the previous word (`fails5.7.26 to pass`), Sendmail keeps the first line only.
Mail libraries print the enhanced code alone at the start of each line (Python's smtplib, Go), or drop the
basic code altogether (.NET); Node-RED shows line breaks as `↵`. Replies from before Google's `- gsmtp`
marker end with Gmail's session id alone, which goes too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final

from exporter import patterns
from exporter.events import Reply
from exporter.google import is_session_id

# A reply starts with a basic code, then '-' (more lines follow) or ' ' (last line) or its end, or MailKit's ': '
# before the enhanced code ('535: 5.7.8 Username and Password not accepted.').
_START: Final = patterns.compile(r"\s*['\"]?([2-5]\d\d)(?:[ -]|: ?(?=[245]\.)|$)")
_LONE_ENHANCED: Final = patterns.compile(r"\s*['\"]?([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_ENHANCED: Final = patterns.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_MASKED: Final = patterns.compile(r"[xX#*]\.[xX#*]{1,3}\.[xX#*]{1,3}(?![\w.])")
# Line joins: Exim's literal backslash-n (also \r\n), real newlines with the indentation of a folded line, and
# Postfix's '?' before the next code.
_JOINS: Final = patterns.compile(r"\\r\\n|\\n|\\r|[\r\n\u21b5]+[ \t]*|\?(?=[2-5]\d\d[ -])")
_QUESTION_JOIN: Final = patterns.compile(r"\?[2-5]\d\d[ -]")
_SESSION_ID: Final = patterns.compile(r"(?=[\w.-]*\d)[\w.-]{6,100}")
"""Google's session id: always holds a digit (a last word without one is reply text)."""
_GCDP: Final = patterns.compile(r"\s*-\s*gcdp\b", re.IGNORECASE)
_MTA_NOTE: Final = patterns.compile(r"\s*\((?:in reply to|conversation with)[^)]*\)\s*$", re.IGNORECASE)
_NOT_ALNUM: Final = patterns.compile(r"[\W_]+")

MAX_REPLY_CHARS: Final = 4096
"""Longer replies are cut: Gmail's longest are about 600 characters."""


def normalise(raw: str) -> Reply:
    """Turn a logged reply into a Reply; never raises, whatever the input."""
    text = raw[:MAX_REPLY_CHARS]
    at = text.lower().rfind("gsmtp")
    marked = at >= 0
    if marked:
        # Without Google's session id the same template repeats line after line: worth a cache.
        text = _strip_trailer(text[:at])
    return _normalise_body(text, marked)


@functools.lru_cache(maxsize=4096)
def _normalise_body(text: str, marked: bool) -> Reply:
    # Each substitution only where its trigger occurs: a reply new to the cache (a log of distinct fake
    # replies) then costs a few substring searches instead of a regex pass per shape.
    if (
        "\\" in text
        or "\r" in text
        or "\n" in text
        or "\u21b5" in text
        or ("?" in text and _QUESTION_JOIN.search(text))
    ):
        if "\n" in text:  # a paste may leave spaces before a line's end: one join, not a gap in '550 5.7.1'
            text = "\n".join(line.rstrip(" \t\r") for line in text.split("\n"))
        text = _JOINS.sub(" ", text)
    origin = "gsmtp"
    end = text.rstrip()
    if end.endswith(")"):
        # The note can only open after the last ')' but one: search from there, not from every '('.
        cut = text.rfind(")", 0, len(end) - 1) + 1
        text = text[:cut] + _MTA_NOTE.sub("", text[cut:])
    if not marked:
        before, _, last = text.rstrip().rpartition(" ")
        if before and is_session_id(last.rstrip(".")):
            text = before
    if "gcdp" in text.lower():
        stripped = _GCDP.sub(" ", text)
        if stripped != text:
            origin = "gcdp"
            text = stripped

    code: str | None = None
    enhanced: str | None = None
    start = _START.match(text)
    if start:
        code = start.group(1)
        rest = text[start.end() :]
        enh = _ENHANCED.match(rest)
        masked = None if enh else _MASKED.match(rest)
        if enh:
            enhanced = f"{enh.group(1)}.{int(enh.group(2))}.{int(enh.group(3))}"
            text = _strip_prefixes(rest[enh.end() :], code, enh.group(0))
        elif masked:
            text = _strip_prefixes(rest[masked.end() :], code, masked.group(0))
        else:
            text = _strip_prefixes(rest, code, None, multiline=text[start.end() - 1] == "-")
    elif lone := _LONE_ENHANCED.match(text):
        # Only the enhanced code: each line may start with it again ('5.7.8 … at\n5.7.8  https://…').
        enhanced = f"{lone.group(1)}.{int(lone.group(2))}.{int(lone.group(3))}"
        rest = text[lone.end() :]
        matched = lone.group(0).lstrip(" '\"")
        if matched in rest:
            rest = _drop(rest, matched, _not_after_digit_or_dot, _not_before_digit_or_dot)
        text = rest
    text = " ".join(text.split())
    return Reply(code=code, enhanced_code=enhanced, text=text, origin=origin, marked=marked)


def _strip_trailer(head: str) -> str:
    """Drop Google's '<session id> -' before 'gsmtp' (and so whatever the MTA logged after it)."""
    head = head.rstrip()
    if head.endswith("-"):
        head = head[:-1].rstrip()
    before, _, last = head.rpartition(" ")
    if before and _SESSION_ID.fullmatch(last):
        head = before.rstrip()
        # Accepted mail: '250 2.0.0 OK  1700000000 <id> - gsmtp' also carries a time, different each second.
        if head.lstrip()[:1] == "2":
            earlier, _, stamp = head.rpartition(" ")
            if earlier and stamp.isdigit():
                head = earlier.rstrip()
    return head


def _strip_prefixes(body: str, code: str, enhanced: str | None, *, multiline: bool = False) -> str:
    """Remove the continuation prefixes that the first line's code and enhanced code announce.

    Substring searches for this reply's own codes, not a regex per code (a log full of distinct fake codes must
    not cost a compilation per line) nor a generic regex (which tries every position of a long reply)."""
    if enhanced is not None and enhanced in body:
        # '550-5.7.26 ' and '550 5.7.26 ' anywhere, and a lone (possibly glued) '5.7.26'.
        if code in body:
            body = _drop(body, f"{code}-{enhanced}", _not_after_digit, _not_before_digit_or_dot)
            body = _drop(body, f"{code} {enhanced}", _not_after_digit, _not_before_digit_or_dot)
        if enhanced in body:
            body = _drop(body, enhanced, _not_after_digit_or_dot, _not_before_digit_or_dot)
    if code + "-" in body:
        body = _drop(body, code + "-", _at_start_or_after_space, _anything)
    if multiline and enhanced is None and code + " " in body:
        # 'NNN-' lines announce a last line that starts 'NNN ' (replies without an enhanced code).
        body = _drop(body, code + " ", _after_space, _anything)
    return body


def _drop(
    body: str, needle: str, fits_before: Callable[[str, int], bool], fits_after: Callable[[str, int], bool]
) -> str:
    """`body` with each occurrence of `needle` whose surroundings fit replaced by a space; like a regex sub with
    lookarounds, the surroundings are those of the original text and a misfit is retried one character on."""
    occurrences = body.count(needle)
    if not occurrences:
        return body
    # Most replies: every occurrence stands between spaces (or at an end), which fits every caller's surroundings
    # (but _after_space's, which wants a space before even at the start).
    if f" {body} ".count(f" {needle} ") == occurrences and not (
        fits_before is _after_space and body.startswith(needle)
    ):
        return body.replace(needle, " ")
    parts: list[str] = []
    copied = 0
    at = body.find(needle)
    while at >= 0:
        end = at + len(needle)
        if fits_before(body, at) and fits_after(body, end):
            parts += (body[copied:at], " ")
            copied = end
            at = body.find(needle, end)
        else:
            at = body.find(needle, at + 1)
    if not parts:
        return body
    parts.append(body[copied:])
    return "".join(parts)


def _not_after_digit(text: str, at: int) -> bool:
    return at == 0 or not text[at - 1].isdecimal()


def _not_after_digit_or_dot(text: str, at: int) -> bool:
    return at == 0 or not (text[at - 1].isdecimal() or text[at - 1] == ".")


def _not_before_digit_or_dot(text: str, end: int) -> bool:
    return end == len(text) or not (text[end].isdecimal() or text[end] == ".")


def _at_start_or_after_space(text: str, at: int) -> bool:
    return at == 0 or text[at - 1].isspace()


def _after_space(text: str, at: int) -> bool:
    return at > 0 and text[at - 1].isspace()


def _anything(text: str, at: int) -> bool:
    return True


_NOT_ALNUM_ASCII: Final = bytes(c for c in range(128) if not chr(c).isalnum())
_LOWER_ASCII: Final = bytes(range(256)).lower()


def squeeze(text: str) -> str:
    """Lower-case letters and digits only: the form rule phrases are matched in.

    Matching in this form makes phrases indifferent to case, punctuation, wrapping, doubled spaces and
    OpenSMTPD's glued lines ('message islikely unsolicited')."""
    # Nearly every reply is ASCII: one C pass (bytes.translate) lower-cases it and deletes what the regex would.
    if text.isascii():
        return text.encode("ascii").translate(_LOWER_ASCII, _NOT_ALNUM_ASCII).decode("ascii")
    return _NOT_ALNUM.sub("", text.lower())
