"""What the MTA parsers share: the per-stream context and small text helpers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from exporter import patterns
from exporter.events import Delivery
from exporter.google import GoogleHosts
from exporter.timestamps import TimestampParser

_MEMORY: Final = 20_000
"""Queue ids remembered for joins (sender, earlier Google deferral): bounded whatever the log holds."""

GMAIL_DOMAINS: Final = frozenset(("gmail.com", "googlemail.com"))

REPLY_START: Final = patterns.compile(
    r"(?<![\w.])[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}|[xX]\.[xX]{1,3}\.[xX]{1,3})(?![\w.])"
)
"""Where a reply with an enhanced code starts inside an MTA's own words: 'NNN-N.N.N' or 'NNN N.N.N'."""


_RFC5424: Final = patterns.compile(
    r"(?:<\d{1,3}>)?1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: \ufeff?|$)"
)
"""The header of a line in RFC 5424's syslog format (rsyslog's RSYSLOG_SyslogProtocol23Format, syslog-ng's
syslog-protocol, remote syslog collectors): PRI and version, time, host, app name, process id, message id,
structured data; the message after it may start with a byte order mark."""


def classic_syslog(text: str) -> str:
    """A line in RFC 5424's syslog format written as the traditional 'TIME HOST APP[PID]: MESSAGE' that every MTA
    parser reads; any other line as it is."""
    if not text or text[0] not in "<1":
        return text
    m = _RFC5424.match(text)
    if m is None:
        return text
    stamp, host, app, pid = m.groups()
    tag = app if pid == "-" else f"{app}[{pid}]"
    return f"{stamp} {host} {tag}: {text[m.end() :]}"


MAX_MEMORY_CHARS: Final = 1024
"""A remembered key or value is a queue id, a domain, an address or one reply: never longer than this."""


class BoundedMap(OrderedDict[str, str]):
    """A small LRU map: the oldest entries go once it holds `limit` of them."""

    def __init__(self, limit: int = _MEMORY) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)

    def state(self) -> list[list[str]]:
        """The entries, oldest first, as JSON-able pairs."""
        return [[k, v] for k, v in self.items()]

    def restore(self, pairs: Any, where: str) -> None:
        """Replaces the entries with saved ones; raises ValueError (and keeps the entries) when they are not
        pairs of strings. Past the limit, the newest are kept."""
        if not isinstance(pairs, list):
            raise ValueError(f"{where}: expected a list, got {type(pairs).__name__}")
        for pair in pairs:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(x, str) and len(x) <= MAX_MEMORY_CHARS for x in pair)
            ):
                raise ValueError(f"{where}: expected pairs of strings, got {str(pair)[:80]}")
        self.clear()
        for key, value in pairs[-self.limit :]:
            self[key] = value


class Context:
    """Per-stream state the parsers need: Google's hosts, the clock of the log and queue-id joins."""

    def __init__(self, google: GoogleHosts, *, now: float | None = None, track_senders: bool = False) -> None:
        self.google = google
        self.clock = TimestampParser(now)
        self.track_senders = track_senders
        self.senders = BoundedMap()
        """queue id -> envelope sender domain, from the MTA's 'from=' lines."""
        self.google_queue_ids = BoundedMap()
        """queue ids with a delivery attempt at Google, to recognise a later 'status=expired'."""
        self.addresses = BoundedMap(1000)
        """relay address -> Google host name, for MTAs that name only the address on outcome lines."""
        self.sessions = BoundedMap(1000)
        """MTA session id -> relay address."""
        self.last_replies = BoundedMap(1000)
        """relay address -> the last reply refused there before any recipient."""
        self.nearby_google: str | None = None
        """A Google host that free text named just before the entry being parsed (the analyser sets it)."""
        self.line = b""
        self.stamp: bytes | None = None
        """The container runtime's time of the line being parsed, when the line has none of its own."""

    def time(self) -> float | None:
        """Timestamp of the line being parsed."""
        found = self.clock.parse(self.line)
        if found is None and self.stamp:
            return self.clock.parse(self.stamp + b" ")
        return found

    def _maps(self) -> dict[str, BoundedMap]:
        return {
            "senders": self.senders,
            "google_queue_ids": self.google_queue_ids,
            "addresses": self.addresses,
            "sessions": self.sessions,
            "last_replies": self.last_replies,
        }

    def state(self) -> dict[str, Any]:
        """The join memory and the log's clock, JSON-able: saved with the position it was read up to, so that a
        reload or a restart joins a later line (an expiry days after Google's deferral) as if nothing happened."""
        return {"clock": self.clock.state(), **{name: m.state() for name, m in self._maps().items()}}

    def restore(self, data: Any) -> None:
        """Continues from a saved state; raises ValueError when it is not one (nothing is changed then)."""
        if not isinstance(data, dict):
            raise ValueError(f"memory: expected a mapping, got {type(data).__name__}")
        maps = self._maps()
        staged = {name: BoundedMap(m.limit) for name, m in maps.items()}
        for name, m in staged.items():
            m.restore(data.get(name, []), f"memory.{name}")
        clock = data.get("clock")
        if clock is not None:
            TimestampParser().restore(clock)  # validates before anything changes
        for name, m in maps.items():
            m.clear()
            m.update(staged[name])
        if clock is not None:
            self.clock.restore(clock)


@dataclass(frozen=True, slots=True)
class LogFormat:
    """What an MTA module declares about its log lines (each module's FORMAT)."""

    name: str
    """The `log.format` value that forces it."""
    claims: Callable[[str], bool]
    """A cheap test whether a line is this MTA's own: auto-detection gives the line to the first format that
    claims it, and to no other, even when its parser finds no delivery in it."""
    parse: Callable[[str, Context], Delivery | None]
    """The Delivery a line records, or None."""
    never_a_delivery: Callable[[bytes, Context], bool] | None = None
    """A cheaper byte-level test, run before decoding, for lines of this MTA that never record a delivery."""


def connection_delivery(
    mta: str,
    ctx: Context,
    queue_id: str | None,
    host: str | None,
    reply: str | None,
    error: str | None = None,
) -> Delivery:
    """A reply (or a failure to get one) logged with no recipient outcome: scope `connection`."""
    return Delivery(
        mta=mta,
        scope="connection",
        status=None,
        timestamp=ctx.time(),
        queue_id=queue_id,
        recipient_domain=None,
        google_host=host,
        reply=reply,
        connection_error=error,
    )


def domain_of(address: str | None) -> str | None:
    """Lower-case domain of an address, or None; the local part never leaves this function."""
    if not address:
        return None
    _, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not domain:
        return None
    return domain.lower().rstrip(".>") or None


_ERROR_KINDS: Final = (
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("connection refused", "refused"),
    ("refused", "refused"),
    ("lost connection", "lost_connection"),
    ("connection reset", "lost_connection"),
    ("connection closed", "lost_connection"),
    ("unexpected disconnection", "lost_connection"),
    ("tls", "tls"),
    ("ssl", "tls"),
    ("handshake", "tls"),
    ("certificate", "tls"),
    ("etimedout", "timeout"),
    ("econnrefused", "refused"),
    ("econnreset", "lost_connection"),
    ("name service error", "dns"),
    ("host lookup did not complete", "dns"),
    ("enotfound", "dns"),
    ("no such host", "dns"),
    ("name or service not known", "dns"),
    ("name resolution", "dns"),
    ("host not found", "dns"),
    ("domain name not found", "dns"),
    ("no mx", "dns"),
    ("dns", "dns"),
)


def connection_error_kind(text: str) -> str:
    """Why Google never answered, from an MTA's own words."""
    lower = text.lower()
    for needle, kind in _ERROR_KINDS:
        if needle in lower:
            return kind
    return "other"
