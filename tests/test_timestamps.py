"""Log timestamps: syslog stamps get their year from the clock and then only move forward; a line that repeats
the last line's leading stamp takes its time without a search, and that shortcut changes no result."""

from __future__ import annotations

import calendar
import time

from exporter.timestamps import TimestampParser

NOW = time.mktime((2026, 12, 31, 12, 0, 0, 0, 0, -1))

LINES = [
    b"Dec 31 23:59:58 mx postfix/smtp[1]: a",
    b"Dec 31 23:59:58 mx postfix/smtp[1]: b",
    b"Dec 31 23:59:59 mx postfix/smtp[1]: c",
    b"pod-7 | Dec 31 23:59:59 mx postfix/smtp[1]: d",
    b"Dec 31 23:59:59 mx postfix/smtp[1]: e",
    b"2026-12-31T23:59:59.250+00:00 mx postfix/smtp[1]: f",
    b"Dec 31 23:59:59 mx postfix/smtp[1]: g",
    b"Jan  1 00:00:00 mx postfix/smtp[1]: h",
    b"Jan  1 00:00:00 mx postfix/smtp[1]: i",
    b"Dec 31 23:59:59 mx postfix/smtp[1]: j",
    b"Dec 31 23:59:59 mx postfix/smtp[1]: k",
    b"no stamp at all",
    b"Jan  1 00:00:01 mx postfix/smtp[1]: l",
]


class FullSearch(TimestampParser):
    """The same parser without the repeated-stamp shortcut."""

    def parse(self, line: bytes) -> float | None:
        self._leading = b"\xff never a log line"  # no line starts so: always the full search
        return super().parse(line)


def test_the_repeated_stamp_shortcut_gives_what_the_full_search_gives() -> None:
    fast, full = TimestampParser(NOW), FullSearch(NOW)
    assert [fast.parse(line) for line in LINES] == [full.parse(line) for line in LINES]


def test_the_year_moves_forward_at_new_year() -> None:
    parser = TimestampParser(NOW)
    got = [parser.parse(line) for line in LINES[:9]]
    dec31 = time.mktime((2026, 12, 31, 23, 59, 59, 0, 0, -1))
    assert got[0] == got[1] == dec31 - 1
    assert got[2] == got[3] == got[4] == got[6] == dec31
    assert got[5] == calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0)) + 0.25
    assert got[7] == got[8] == time.mktime((2027, 1, 1, 0, 0, 0, 0, 0, -1))
