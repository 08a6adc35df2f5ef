"""Log timestamps -> Unix seconds: traditional syslog, RFC 3339/ISO 8601 and Exim's local time."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final

from exporter import patterns

_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"),
        start=1,
    )
}
_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""Longest month lengths; February 29 exists in leap years only."""
_ISO: Final = patterns.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?(Z|[+-]\d\d:?\d\d)?(?=[\s\]|])"
)
_SYSLOG: Final = patterns.compile(
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)"
)
_SEARCH_BYTES: Final = 96
"""Timestamps sit at the start, behind at most a container or relay prefix."""

MAX_AHEAD_SECONDS: Final = 2 * 86_400
"""How far a log's time may run ahead of this machine's clock. Local times of two zones differ by 26 hours
at most, so an MTA in another zone or a slightly wrong clock stays within it; a syslog stamp further ahead
is last year's, and a timestamp further ahead (one stamped 2099) is not the present."""

_HALF_YEAR: Final = 183 * 86_400
_SAVED_RANGE: Final = (-2_208_988_800.0, 253_402_300_799.0)
"""Unix times of 1900-01-01 and 9999-12-31: what a saved reference may be."""


SYSLOG_LEADS: Final = frozenset(month + b" " for month in _MONTHS)
"""How a classic syslog stamp starts."""


def log_lead(blob: bytes, start: int) -> bytes | None:
    """The start of a log line's timestamp ('Nov ' of syslog, '2026-' of ISO and Exim stamps) if the line at
    `start` begins with one."""
    lead = blob[start : start + 4]
    if lead in SYSLOG_LEADS:
        return lead
    year = blob[start : start + 5]
    if year[:2] in (b"19", b"20") and year[2:4].isdigit() and year[4:] == b"-":
        return year
    return None


MAX_MINUTES: Final = 4096
"""Minutes whose local time a parser remembers; past that it starts afresh."""


def _leap(year: int) -> bool:
    """calendar.isleap(), without importing calendar (and datetime with it) for one line."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _new_year(year: int) -> float:
    return time.mktime((year, 1, 1, 0, 0, 0, 0, 0, -1))


def _fixed(now: float) -> Callable[[], float]:
    return lambda: now


class TimestampParser:
    """Parses the first timestamp of a line.

    A syslog stamp has no year. It gets the year that puts it nearest to the reference: the latest syslog
    time of the log so far, moved on by the clock time passed since it was seen (a log quiet for months
    follows the calendar), or the clock itself before the log's first stamp. No year may put a stamp more
    than MAX_AHEAD_SECONDS ahead of the clock. So a line written late by another process, minutes or hours
    out of order, keeps its year at New Year; a log read in January may start in December; and reading an
    old rotated log gives last year's dates, not next year's."""

    def __init__(self, now: float | None = None, *, clock: Callable[[], float] | None = None) -> None:
        """`now` fixes the clock (reading a log as of that time); `clock` supplies it; by default the
        current time, asked again for each new stamp, so a daemon running for months stays current."""
        self._clock = clock if clock is not None else time.time if now is None else _fixed(now)
        self._latest: float | None = None
        """The latest syslog time inferred so far: the reference for the next stamps."""
        self._latest_at = 0.0
        """The clock when _latest was set."""
        self._year = (0, 0.0, 0.0)
        """The year of the last reference, when it began and ended: it changes once a year."""
        self._stamp = b""
        self._value: float | None = None
        """The last syslog stamp computed and its time: a log repeats a stamp line after line."""
        self._iso_key: tuple[bytes | None, ...] = ()
        self._iso_value: float | None = None
        self._leading = b"\x00"
        """The syslog stamp that began the last line when it began with one (most lines of a log)."""
        self._fields: dict[bytes, tuple[int, ...]] = {}
        """A syslog stamp's minute -> its month, day, hour and minute (empty when it is no time): a log's stamps
        repeat their minute up to 60 times."""
        self._minutes: dict[tuple[int, int, int, int, int], float] = {}
        """(year, month, day, hour, minute) -> the local time of its start (see _minute)."""

    def parse(self, line: bytes) -> float | None:
        """Unix time of the line's timestamp, or None if it has none we know."""
        # A line that starts with the same syslog stamp as the last one has its time: nothing before the stamp
        # can hold another one, so the searches below would find this one and the cache return its value.
        if line.startswith(self._leading):
            return self._value
        head = line[:_SEARCH_BYTES]
        iso = _ISO.search(head)
        syslog = _SYSLOG.search(head) if iso is None or iso.start() > 0 else None
        if syslog is not None and (iso is None or syslog.start() < iso.start()):
            return self._syslog(syslog)
        if iso is not None:
            return self._iso(iso)
        return None

    def syslog_time(self, stamp: bytes) -> float | None:
        """parse() of a classic syslog stamp alone, as _SYSLOG matches it whole (the fast path's): the same result,
        without the searches (no other timestamp can be in it)."""
        if stamp.startswith(self._leading):
            return self._value
        m = _SYSLOG.match(stamp)
        if m is None or m.end() != len(stamp):
            return self.parse(stamp)
        return self._syslog(m)

    def state(self) -> dict[str, float | None]:
        """What year inference has learnt from the log, as JSON-able data to save with the log's position."""
        return {"latest": self._latest}

    def restore(self, saved: object) -> None:
        """Continue from a state() of the same log; ValueError, and nothing changed, if it is not one."""
        if not isinstance(saved, dict) or set(saved) != {"latest"}:
            raise ValueError("timestamp state must be a mapping with the one key 'latest'")
        latest = saved["latest"]
        if latest is not None:
            if isinstance(latest, bool) or not isinstance(latest, int | float):
                raise ValueError(
                    f"timestamp state 'latest' must be a number or null, not {type(latest).__name__}"
                )
            low, high = _SAVED_RANGE
            if not low <= latest <= high:  # false for NaN too; no float() of a huge int
                raise ValueError(f"timestamp state 'latest' is out of range: {latest!r:.40}")
            latest = float(latest)
        self._latest, self._latest_at = latest, self._clock()
        self._stamp, self._value, self._leading = b"", None, b"\x00"

    def _iso(self, m: re.Match[bytes]) -> float | None:
        fraction = float(m.group(7)) if m.group(7) else 0.0
        # The cache keys on the whole seconds and the zone: sub-second stamps (Exim, rsyslog) repeat those.
        key = m.group(1, 2, 3, 4, 5, 6, 8)
        if key == self._iso_key:
            return None if self._iso_value is None else self._iso_value + fraction
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        zone = m.group(8)
        value: float | None
        try:
            if zone is None:
                value = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
            else:
                text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
                tz = "+00:00" if zone == b"Z" else zone.decode()
                if len(tz) == 5:
                    tz = tz[:3] + ":" + tz[3:]
                # Imported for a stamp with a zone only: with calendar, it was 3 ms of every command's start.
                from datetime import datetime

                value = datetime.fromisoformat(text + tz).timestamp()
        except (ValueError, OverflowError):
            value = None
        self._iso_key, self._iso_value = key, value
        return None if value is None else value + fraction

    def _syslog(self, m: re.Match[bytes]) -> float | None:
        stamp = m.group(0)
        if stamp != self._stamp:
            self._stamp, self._value = stamp, self._infer(m)
        self._leading = stamp if m.start() == 0 else b"\x00"
        return self._value

    def _minute(self, year: int, month: int, day: int, hour: int, minute: int) -> float:
        """The local time of a minute's start, remembered: the C library's mktime() reads the zone's file again at
        each call (a stat per new stamp, a tenth of report's time), and a zone's offset changes at a whole minute,
        so a stamp's time is its minute's plus its second. Raises what mktime() raises."""
        key = (year, month, day, hour, minute)
        value = self._minutes.get(key)
        if value is None:
            value = time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))
            if len(self._minutes) >= MAX_MINUTES:
                self._minutes.clear()
            self._minutes[key] = value
        return value

    def _infer(self, m: re.Match[bytes]) -> float | None:
        """The time of a syslog stamp, with the year nearest to the reference (see the class)."""
        stamp = m.group(0)
        fields = self._fields.get(stamp[:-3])  # its minute: 'Nov 28 06:00' of 'Nov 28 06:00:17'
        if fields is None:
            month = _MONTHS[m.group(1)]
            day, hour, minute = int(m.group(2)), int(m.group(3)), int(m.group(4))
            fields = (
                (month, day, hour, minute) if 1 <= day <= _DAYS[month] and hour < 24 and minute < 60 else ()
            )
            if len(self._fields) >= MAX_MINUTES:
                self._fields.clear()
            self._fields[stamp[:-3]] = fields
        second = int(stamp[-2:])
        if not fields or second > 60:
            return None
        month, day, hour, minute = fields
        now = self._clock()
        limit = now + MAX_AHEAD_SECONDS
        latest = self._latest
        reference = now if latest is None else min(latest + max(0.0, now - self._latest_at), limit)
        year, start, end = self._year
        if not start <= reference < end:
            year = time.localtime(reference).tm_year
            self._year = (year, _new_year(year), _new_year(year + 1))
        best: float | None = None
        for candidate in (year, year - 1, year + 1):
            if month == 2 and day == 29 and not _leap(candidate):
                continue
            try:
                value = self._minute(candidate, month, day, hour, minute) + second
            except (OverflowError, ValueError):
                continue
            if value <= limit and (best is None or abs(value - reference) < abs(best - reference)):
                best = value
                if abs(value - reference) <= _HALF_YEAR:
                    break  # the other years are further away
        if best is not None and (latest is None or best > latest):
            self._latest, self._latest_at = best, now
        return best
