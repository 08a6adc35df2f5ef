"""Gmail's reply wherever else it stands: text that no MTA format claims.

Bounce notices and DSN headers (folded or cut), SMTP transcripts, errors of mail libraries and clients, JSON
events of sending services, other MTAs' "remote server said" wrappers, log fragments without their syslog
prefix. Such text comes in entries of one or more lines (see `continues`); `parse` finds the reply in an entry,
whatever wraps it, and says whether it is Google's: by Google's marker, a Google host named in the entry or just
before it, Google's links, Gmail's session id, or a wording only Gmail uses. Text that merely mentions Google
(a gmail.com address, Gmail's own bounce about another server, its greeting) is no delivery.
"""

from __future__ import annotations

from typing import Final

from exporter import patterns
from exporter.events import Delivery
from exporter.google import has_link, has_wording, is_session_id
from exporter.mta.common import Context, LogFormat, connection_delivery, connection_error_kind, domain_of

# Where a reply starts: its basic and enhanced codes ('550-5.7.26', '550 5.7.26', folded '550\n  5.7.26', MailKit's
# '535: 5.7.8'), not glued to a word before (OpenSMTPD's and PHPMailer's glued continuation lines, dsn=, versions,
# addresses).
_NOT_BEFORE: Final = r"(?<![A-Za-z0-9_.\-/+@#%])"
_FULL: Final = patterns.compile(
    _NOT_BEFORE + r"([2-5]\d\d)(?:-|:?[ \t]*+(?:\n[ \t]*+)?)([245]\.\d{1,3}\.\d{1,3})(?![\w.])"
)
# An enhanced code standing alone before text: Python's smtplib and Go keep it on each line and put the basic
# code elsewhere, .NET and MailKit drop the basic code.
_ENHANCED_ONLY: Final = patterns.compile(
    r"(?<![A-Za-z0-9_.\-/+@#%=])(?<!\S:)([245]\.\d{1,3}\.\d{1,3})(?=[ \t]++[^\s,;'\"\])}])"
)
_CODE_ONLY: Final = patterns.compile(_NOT_BEFORE + r"([2-5]\d\d)[ -] *+(?=[A-Za-z\[<])")
_PYTHON_CODE: Final = patterns.compile(r"\(([2-5]\d\d),\s*b?$")
_CODE_FIELD: Final = patterns.compile(
    r"(?i)(?:response_?code|smtp_?code|status_?code|reply_?code|(?<![a-z])code)[\"']?\s*[:=]\s*[\"']?([2-5]\d\d)(?!\d)"
)
_DOTNET_RESPONSE: Final = "the server response was:"
# System.Net.Mail's message for each status it raises, before "The server response was: <text>"; the basic code
# it names, or (for "Mailbox unavailable", which it says for 450 and 550) its class's digit decides.
_DOTNET_CODES: Final = (
    ("mailbox unavailable", "x50"),
    ("transaction failed", "554"),
    ("service not available, closing transmission channel", "421"),
    ("exceeded storage allocation", "552"),
    ("insufficient system storage", "452"),
    ("mailbox name not allowed", "553"),
    ("syntax error, command unrecognized", "500"),
    ("syntax error in parameters or arguments", "501"),
    ("command not implemented", "502"),
    ("bad sequence of commands", "503"),
    ("local error in processing", "451"),
)
_QUOTES: Final = "'\"`"
_JS_CONCAT: Final = patterns.compile(r"\s*\+\s*['\"]")
_STATUS: Final = patterns.compile(r"\bstatus=(sent|deferred|bounced|expired)\b")
_RECIPIENT: Final = patterns.compile(r"[\w.+'=-]{1,128}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})")
_FIELD_LINE: Final = patterns.compile(r"\n([ \t]*)[A-Z][A-Za-z-]{1,30}(?: [A-Za-z-]{1,30})?:\s")
_FIELD_START: Final = patterns.compile(r"[ \t]*[A-Z][A-Za-z-]{1,30}(?: [A-Za-z-]{1,30})?:\s")
_TRAILING: Final = " \t\r\n'\"])},;."
_CONNECT_WORDS: Final = ("connect", "dial ", "getaddrinfo", "lookup", "handshake")
_FAILURE_WORDS: Final = (
    "fail", "error", "timed out", "timeout", "refused", "unreachable", "no route", "reset", "not known",
    "not found", "not available", "no such host", "unable", "could not", "couldn't", "cannot", "etimedout",
    "econnrefused", "enotfound",
)  # fmt: skip
_MARKERS: Final = ("gsmtp", "gcdp")
_CONNECTION_FAILURES: Final = (
    "network is unreachable",
    "no route to host",
    "connection timed out",
    "connection refused",
    "lost connection with",
    "conversation with",
)
"""Words that say a connection failed by themselves (Exim: 'H=host [ip] Network is unreachable'; Postfix's reason
pasted from its queue: '(delivery temporarily suspended: lost connection with host[ip] while …)', 'conversation
with host[ip] timed out while …')."""

MAX_LINES: Final = 40
"""Lines of one entry at most (Gmail's longest reply, folded at 76 columns, takes about 15)."""
_TAIL_LINES: Final = 10
"""Lines without a code that may follow a reply's last code line before its marker (see `continues`): Gmail's
longest one-line reply, wrapped again at 60 columns."""
_PREFIX_WITHIN: Final = 120
"""How far into a line a continuation's reply code may stand (behind a log or transcript prefix)."""


def claims(line: str) -> bool:
    """The fallback takes every line no MTA claimed."""
    return True


def parse(text: str, ctx: Context) -> Delivery | None:
    """A Delivery for an entry (one or more lines) that carries Google's reply or a failure to reach Google."""
    if "\u00a0" in text:  # text copied from a web page: its no-break spaces are spaces
        text = text.replace("\u00a0", " ")
    found = _reply_start(text)
    if found is None:
        return _without_codes(text, ctx)
    begin, code, enhanced = found
    host = ctx.google.named_in(text)
    before = 0  # where another server's reply starts, when the entry holds one before Google's
    if host is not None:
        begin, code, enhanced = _reply_of_host(text, host, found)
        before = found[0] if begin != found[0] else 0
    end = _reply_end(text, begin)
    reply = text[begin:end]
    lower = reply.lower()
    if not (
        host is not None
        or ctx.nearby_google is not None
        or any(marker in lower for marker in _MARKERS)
        or has_link(lower)
        or _ends_with_session_id(reply)
        or has_wording(reply)
    ):
        return None
    if code is None and enhanced is not None:
        code = _code_elsewhere(text, begin, enhanced)
        if code is not None:
            reply = f"{code} {reply}"
    first = (code or enhanced or "")[:1]
    if first == "3" or (first == "2" and not (code == "250" and enhanced == "2.0.0")):
        return None  # a greeting, an EHLO answer, 'go ahead': no outcome of a delivery
    status = _STATUS.search(text)
    if before:  # the last address before Google's reply, not one of the other server's reply
        recipient = next(reversed(list(_RECIPIENT.finditer(text, before, begin))), None)
    else:
        recipient = _RECIPIENT.search(text, 0, begin)
    return _delivery(
        ctx,
        status.group(1) if status else {"2": "sent", "4": "deferred"}.get(first, "bounced"),
        domain_of("x@" + recipient.group(1)) if recipient else None,
        host,
        reply,
    )


def _delivery(ctx: Context, status: str, domain: str | None, host: str | None, reply: str) -> Delivery:
    return Delivery(
        mta="generic",
        scope="recipient",
        status=status,
        timestamp=ctx.time(),
        queue_id=None,
        recipient_domain=domain,
        google_host=host or ctx.nearby_google,
        reply=reply,
    )


def _reply_start(text: str) -> tuple[int, str | None, str | None] | None:
    """Where the reply starts and its codes: the first basic code with an enhanced code, else the first enhanced
    code standing alone before text, else a bare basic code that Google's marker follows."""
    full = _FULL.search(text)
    if full is not None:
        return full.start(), full.group(1), full.group(2)
    alone = _ENHANCED_ONLY.search(text)
    if alone is not None:
        return alone.start(), None, alone.group(1)
    bare = _CODE_ONLY.search(text)
    if bare is not None and "gsmtp" in text[bare.end() :].lower():
        return bare.start(), bare.group(1), None
    return None


def _reply_of_host(
    text: str, host: str, first: tuple[int, str | None, str | None]
) -> tuple[int, str | None, str | None]:
    """The reply Google's host gave when an entry holds several (a bounce that lists a recipient refused by
    another server before the one Google refused): the first reply after the host's name, if the text before
    that name shows none of Google's signs."""
    begin = first[0]
    named = text.lower().find(host, begin)
    if named < 0:
        return first
    before = text[begin:named]
    low = before.lower()
    if any(m in low for m in _MARKERS) or has_link(low) or has_wording(before):
        return first
    later = _reply_start(text[named:])
    if later is None:
        return first
    return named + later[0], later[1], later[2]


def _reply_end(text: str, begin: int) -> int:
    """Where the reply ends: at the quote that closes it when a quote opens it, after Google's marker, before the
    next field of a DSN or bounce notice, else at the end of the entry."""
    if begin > 0 and text[begin - 1] in _QUOTES:
        return _closing_quote(text, begin, text[begin - 1])
    end = len(text)
    line_start = text.rfind("\n", 0, begin) + 1
    indent = len(text[line_start:begin]) - len(text[line_start:begin].lstrip())
    in_field = _FIELD_START.match(text, line_start) is not None
    field = _FIELD_LINE.search(text, begin)
    # A line indented deeper is a fold of the reply's line, not the next field; at the same depth it is the
    # next field only when the reply's own line is one ('Diagnostic code: …', then 'Remote system: …').
    while field is not None and (
        len(field.group(1)) > indent or (len(field.group(1)) == indent and not in_field)
    ):
        field = _FIELD_LINE.search(text, field.end())
    if field is not None:
        end = field.start()
    lower = text[begin:end].lower()
    marker = max(lower.rfind(m) + len(m) if m in lower else -1 for m in _MARKERS)
    if marker > 0:
        return begin + marker
    return max(begin + 1, begin + len(text[begin:end].rstrip(_TRAILING)))


def _closing_quote(text: str, begin: int, quote: str) -> int:
    """The end of a quoted string that starts at `begin`, backslash escapes honoured; a JavaScript
    concatenation ('…' + '…') goes on into the next string."""
    at = begin
    while True:
        close = text.find(quote, at)
        if close < 0:
            return len(text)
        escapes = close - len(text[at:close].rstrip("\\")) - at
        if escapes % 2:  # an odd run of backslashes escapes the quote
            at = close + 1
            continue
        concat = _JS_CONCAT.match(text, close + 1)
        if concat is None:
            return close
        at = concat.end()


def _ends_with_session_id(reply: str) -> bool:
    words = reply.split()
    return bool(words) and is_session_id(words[-1].rstrip(".,;)'\""))


def _code_elsewhere(text: str, begin: int, enhanced: str) -> str | None:
    """The basic code of a reply whose text starts with its enhanced code: the number Python's smtplib puts
    before it, a code field of the same event, or what .NET's message says."""
    python = _PYTHON_CODE.search(text, max(0, begin - 12), max(0, begin - 1))
    if python is not None:
        return python.group(1)
    for field in _CODE_FIELD.finditer(text):
        if field.group(1)[0] == enhanced[0]:
            return field.group(1)
    lower = text[:begin].lower()
    if lower.rstrip().endswith(_DOTNET_RESPONSE):
        said = lower[: lower.rfind(_DOTNET_RESPONSE)]
        for phrase, code in _DOTNET_CODES:
            if said.rstrip(" .").endswith(phrase):
                return code.replace("x", enhanced[0], 1)
    return None


def _without_codes(text: str, ctx: Context) -> Delivery | None:
    """An entry without reply codes: a failure to reach a Google host, or (right after lines naming Google's
    host) Gmail's words that lost their codes."""
    lower = text.lower()
    host = ctx.google.named_in(text)
    marker = max(lower.rfind(m) for m in _MARKERS)
    if host is not None and marker < 0:
        failed = any(w in lower for w in _CONNECT_WORDS) and any(w in lower for w in _FAILURE_WORDS)
        if failed or any(phrase in lower for phrase in _CONNECTION_FAILURES):
            return connection_delivery("generic", ctx, None, host, None, connection_error_kind(lower))
        return None
    if marker >= 0:  # Gmail's words and marker, their codes lost (an Indy error message)
        reply = text[_quoted_from(text, marker) : marker + 5]
    elif ctx.nearby_google is not None and has_link(lower) and has_wording(text):
        reply = text.strip().rstrip(_TRAILING)  # right after lines naming Google's host
    elif has_link(lower) and _ends_with_session_id(text):
        # Gmail's words up to its link and session id, from before its marker, codes lost (JavaMail's message)
        end = len(text.rstrip(_TRAILING))
        reply = text[_quoted_from(text, end) : end]
    else:
        return None
    return _delivery(ctx, "bounced", None, host, reply)


def _quoted_from(text: str, end: int) -> int:
    """Where the words before Google's marker start: after the quote that opens them, else after the last
    colon, else at the start of the entry."""
    for sep in (*_QUOTES, ": "):
        at = text.rfind(sep, 0, end)
        if at >= 0:
            return at + len(sep)
    return 0


def continues(entry: str, line: str) -> bool:
    """Whether `line` goes on with the entry of free text whose lines so far are `entry`.

    Folded and indented lines do (DSN headers, Postfix's bounce notice, stack traces); so does the line after one
    that ends with a colon ('Remote host said:') or a JavaScript '+'. So does a line of a reply that has not ended
    (no marker yet): any line after one that announced more ('550-5.1.1 …', however the text was re-wrapped), a
    line that starts with the reply's enhanced code alone (how smtplib, Go and others print the lines after the
    first), and a line that ends it with Google's marker; unless the line starts a reply of its own (other codes,
    or the same first words again: the same error logged twice) or a new header field."""
    if not line.strip():
        return False
    if line[0] in " \t":
        return True
    last = entry[entry.rfind("\n") + 1 :].rstrip()
    if last.endswith(":") or (last.endswith("+") and last[:-1].rstrip()[-1:] in _QUOTES):
        return True
    found = _reply_start(entry)
    if found is None:
        return False
    begin, code, enhanced = found
    # The reply still open is the one the last line started, if it started one: an exception's inner exception
    # repeats the reply on an indented line, and that copy goes on to its own marker.
    last_at = entry.rfind("\n") + 1
    latest = _reply_start(entry[last_at:]) if last_at > 0 else None
    opened = last_at + latest[0] if latest is not None else begin
    if any(marker in entry[opened:].lower() for marker in _MARKERS):
        return False
    start = _CONTINUATION.search(line, 0, _PREFIX_WITHIN)
    if start is not None and start.start() > 0 and line[start.start() - 1] not in " \t:|>'\"[(":
        start = None
    if start is not None:
        line_code, line_enhanced = start.group(1), start.group(2) or start.group(3)
        if (line_code is not None and line_code != code) or (
            line_enhanced and enhanced and line_enhanced != enhanced
        ):
            return False  # another reply
        if _first_words(entry, begin) == _first_words(line, start.start()):
            return False  # the same reply again
        if line_code is None:
            return True  # the enhanced code alone
    elif _FIELD_START.match(line) is not None:
        return False
    if code is not None and entry.rfind(code + "-") > entry.rfind(code + " "):
        return True  # the last line announced more
    lower = line.lower()
    if _reply_start(line) is not None:
        return False
    if any(marker in lower for marker in _MARKERS):
        return True
    # After its last code line Gmail's words go on to its session id and marker: the lines of a bounce notice
    # pasted without its indentation, or of a one-line reply that a mail client or forum wrapped again.
    final = entry.rfind(code + " ") if code is not None else -1
    return (
        final >= 0
        and start is None
        and entry.count("\n", final) < _TAIL_LINES
        and (has_link(lower) or has_link(entry[begin:].lower()) or has_wording(entry[begin:]))
    )


_CONTINUATION: Final = patterns.compile(
    _NOT_BEFORE + r"(?:([2-5]\d\d)[ -](?:([245]\.\d{1,3}\.\d{1,3})(?![\w.]))?|([245]\.\d{1,3}\.\d{1,3})[ \t])"
)
_CODES_AHEAD: Final = patterns.compile(r"(?:[2-5]\d\d[ -])?\s*(?:[245]\.\d{1,3}\.\d{1,3})?\s*")


def _first_words(text: str, at: int) -> str:
    """The first words of a reply line after its codes, to tell a continuation from the same line again."""
    codes = _CODES_AHEAD.match(text, at)
    start = codes.end() if codes is not None else at
    return text[start : start + 16]


FORMAT: Final = LogFormat("generic", claims, parse)
