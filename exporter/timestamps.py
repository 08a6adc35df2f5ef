"""Log timestamps -> Unix seconds: traditional syslog, RFC 3339/ISO 8601 and Exim's local time."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, Final

_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_ISO: Final = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?(Z|[+-]\d\d:?\d\d)?(?=[\s\]|])"
)
_SYSLOG: Final = re.compile(
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)"
)
_SEARCH_BYTES: Final = 96
"""Timestamps sit at the start, behind at most a container or relay prefix."""


class TimestampParser:
    """Parses the first timestamp of a line. Syslog omits the year: it is inferred from `now` and then only
    moves forward, by one at New Year (a December line followed by a January line)."""

    def __init__(self, now: float | None = None) -> None:
        self._now = now
        self._year: int | None = None
        self._last_month = 0
        self._cache_key = b""
        self._cache_value: float | None = None
        self._iso_key: tuple[bytes | None, ...] = ()
        self._iso_value: float | None = None
        self._leading = b"\x00"
        """The syslog stamp that began the last line when it began with one (most lines of a log)."""

    def state(self) -> dict[str, Any]:
        """What the year inference has learnt, JSON-able."""
        return {"year": self._year, "last_month": self._last_month}

    def restore(self, data: Any) -> None:
        """Continues from a saved state; raises ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"clock: expected a mapping, got {type(data).__name__}")
        year, month = data.get("year"), data.get("last_month", 0)
        if year is not None and (
            not isinstance(year, int) or isinstance(year, bool) or not 1970 <= year <= 9999
        ):
            raise ValueError(f"clock.year: expected a year, got {year!r}")
        if not isinstance(month, int) or isinstance(month, bool) or not 0 <= month <= 12:
            raise ValueError(f"clock.last_month: expected 0 to 12, got {month!r}")
        self._year, self._last_month = year, month

    def parse(self, line: bytes) -> float | None:
        """Unix time of the line's timestamp, or None if it has none we know."""
        # A line that starts with the same syslog stamp as the last one has its time: nothing before the stamp
        # can hold another one, so the searches below would find this one and the cache return its value.
        if line.startswith(self._leading):
            return self._cache_value
        head = line[:_SEARCH_BYTES]
        iso = _ISO.search(head)
        syslog = _SYSLOG.search(head) if iso is None or iso.start() > 0 else None
        if syslog is not None and (iso is None or syslog.start() < iso.start()):
            return self._syslog(syslog)
        if iso is not None:
            return self._iso(iso)
        return None

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
                value = datetime.fromisoformat(text + tz).timestamp()
        except (ValueError, OverflowError):
            value = None
        self._iso_key, self._iso_value = key, value
        return None if value is None else value + fraction

    def _syslog(self, m: re.Match[bytes]) -> float | None:
        month = _MONTHS[m.group(1).decode()]
        if self._year is None:
            now = time.localtime(self._now if self._now is not None else time.time())
            # A log read in January may start in December: a date more than a day ahead is last year's.
            self._year = (
                now.tm_year - 1 if (month, int(m.group(2))) > (now.tm_mon, now.tm_mday + 1) else now.tm_year
            )
        elif month < self._last_month - 6:
            self._year += 1
        self._last_month = month
        key = m.group(0) + str(self._year).encode()
        if key == self._cache_key:
            self._leading = m.group(0) if m.start() == 0 else b"\x00"
            return self._cache_value
        try:
            value = time.mktime(
                (
                    self._year,
                    month,
                    int(m.group(2)),
                    int(m.group(3)),
                    int(m.group(4)),
                    int(m.group(5)),
                    0,
                    0,
                    -1,
                )
            )
        except (ValueError, OverflowError):
            self._leading = b"\x00"  # this line moved the month: the fast path must not skip the year logic
            return None
        self._cache_key, self._cache_value = key, value
        self._leading = m.group(0) if m.start() == 0 else b"\x00"
        return value
