"""Log timestamps: a syslog stamp gets the year that puts it nearest to the log's latest time (or the clock before
its first stamp), never more than MAX_AHEAD_SECONDS ahead of the clock; a line that repeats the last line's
leading stamp takes its time without a search, and that shortcut changes no result."""

from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.timestamps import MAX_AHEAD_SECONDS, TimestampParser

NOW = time.mktime((2026, 12, 31, 12, 0, 0, 0, 0, -1))
HOUR = 3600
DAY = 86_400

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


def local(*fields: int) -> float:
    """Unix time of a local date and time."""
    return time.mktime((*fields, 0, 0, -1))  # type: ignore[arg-type]


def stamp(when: float) -> bytes:
    """The syslog stamp of a Unix time, as rsyslog and Postfix write it."""
    t = time.localtime(when)
    return f"{time.strftime('%b', t)} {t.tm_mday:>2} {time.strftime('%H:%M:%S', t)}".encode()


def years(reader: TimestampParser | float, *lines: str) -> list[int | None]:
    """The year each line's syslog stamp gets (None: no time), read in order by `reader` (a parser, or a clock
    time for a new one). Checks that the rest of the time is the stamp's own."""
    parser = reader if isinstance(reader, TimestampParser) else TimestampParser(reader)
    out: list[int | None] = []
    for line in lines:
        value = parser.parse(line.encode() + b" mx postfix/smtp[1]: x")
        if value is None:
            out.append(None)
            continue
        assert stamp(value).decode() == line[:15]
        out.append(time.localtime(value).tm_year)
    return out


class Clock:
    """A clock a test moves on."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def zone() -> Iterator[Callable[[str], None]]:
    """Sets the local time zone (a POSIX TZ string, so no tz database is needed) for one test."""
    mp = pytest.MonkeyPatch()

    def set_zone(tz: str) -> None:
        mp.setenv("TZ", tz)
        time.tzset()

    yield set_zone
    mp.undo()
    time.tzset()


def test_the_repeated_stamp_shortcut_gives_what_the_full_search_gives() -> None:
    fast, full = TimestampParser(NOW), FullSearch(NOW)
    assert [fast.parse(line) for line in LINES] == [full.parse(line) for line in LINES]


def test_a_syslog_stamp_alone_gives_what_the_full_search_gives() -> None:
    """syslog_time(), the fast path's entry, between lines read whole: the same times and year."""
    fast, full = TimestampParser(NOW), FullSearch(NOW)
    got, expected = [], []
    for line in LINES:
        stamp = line[:15].rstrip()
        alone = stamp if stamp[:3].isalpha() and stamp[-3:-2] == b":" else None
        got.append(fast.syslog_time(alone) if alone is not None else fast.parse(line))
        expected.append(full.parse(line))
    assert got == expected
    assert TimestampParser(NOW).syslog_time(b"Feb 30 10:00:00") is None


def test_the_year_moves_forward_at_new_year() -> None:
    parser = TimestampParser(NOW)
    got = [parser.parse(line) for line in LINES[:9]]
    dec31 = time.mktime((2026, 12, 31, 23, 59, 59, 0, 0, -1))
    assert got[0] == got[1] == dec31 - 1
    assert got[2] == got[3] == got[4] == got[6] == dec31
    assert got[5] == calendar.timegm((2026, 12, 31, 23, 59, 59, 0, 0, 0)) + 0.25
    assert got[7] == got[8] == time.mktime((2027, 1, 1, 0, 0, 0, 0, 0, -1))


def test_a_december_straggler_after_new_year_keeps_its_year() -> None:
    now = local(2026, 1, 2, 9, 0, 0)
    stamps = ("Dec 31 23:59:58", "Jan  1 00:00:01", "Dec 31 23:59:59", "Jan  1 00:00:05")
    assert years(now, *stamps) == [2025, 2026, 2025, 2026]


def test_stragglers_hours_late_at_new_year_keep_their_year() -> None:
    now = local(2026, 1, 1, 6, 0, 0)
    stamps = ("Dec 31 22:00:00", "Jan  1 01:00:00", "Dec 31 20:15:00", "Jan  1 03:00:00", "Dec 31 23:00:00")
    assert years(now, *stamps) == [2025, 2026, 2025, 2026, 2025]


def test_a_log_read_on_new_years_day_that_starts_last_december_keeps_last_years_dates() -> None:
    now = local(2026, 1, 1, 0, 30, 0)
    assert years(now, "Dec 24 06:00:00", "Dec 31 23:59:59", "Jan  1 00:10:00") == [2025, 2025, 2026]


def test_a_january_stamp_a_little_ahead_of_a_december_clock_is_next_year() -> None:
    # The MTA's clock runs a few seconds ahead of ours, or its zone is east of ours.
    assert years(local(2025, 12, 31, 23, 59, 50), "Jan  1 00:00:05", "Dec 31 23:59:49") == [2026, 2025]


def test_a_stamp_more_than_max_ahead_of_the_clock_is_last_years() -> None:
    now = local(2026, 6, 10, 12, 0, 0)
    ahead = now + MAX_AHEAD_SECONDS + HOUR
    assert TimestampParser(now).parse(stamp(ahead)) == ahead - 365 * DAY
    within = now + MAX_AHEAD_SECONDS - HOUR
    assert TimestampParser(now).parse(stamp(within)) == within


def test_an_old_rotated_log_read_months_later_gets_its_own_years() -> None:
    now = local(2026, 3, 10, 12, 0, 0)
    stamps = ("Dec 20 10:00:00", "Dec 31 23:00:00", "Jan  1 01:00:00", "Jan  5 08:00:00")
    assert years(now, *stamps) == [2025, 2025, 2026, 2026]


def test_a_log_that_covers_a_year_read_at_its_end_gets_last_years_spring() -> None:
    now = local(2026, 3, 2, 12, 0, 0)
    stamps = ("Mar  5 10:00:00", "Aug  1 10:00:00", "Dec 31 10:00:00", "Mar  1 10:00:00")
    assert years(now, *stamps) == [2025, 2025, 2025, 2026]


def test_a_daemon_quiet_for_seven_months_dates_its_next_line_this_year() -> None:
    clock = Clock(local(2026, 1, 10, 8, 0, 1))
    parser = TimestampParser(clock=clock)
    assert years(parser, "Jan 10 08:00:00") == [2026]
    clock.now = local(2026, 8, 20, 9, 0, 1)
    assert years(parser, "Aug 20 09:00:00") == [2026]


def test_a_daemon_running_over_new_year_asks_the_clock_again() -> None:
    clock = Clock(local(2026, 6, 1, 12, 0, 0))
    parser = TimestampParser(clock=clock)
    assert years(parser, "Jun  1 11:59:59") == [2026]
    # Months without a line about Google, then New Year: the clock, not the start time, bounds the year.
    clock.now = local(2027, 1, 1, 0, 0, 2)
    assert years(parser, "Dec 31 23:59:59", "Jan  1 00:00:01", "Dec 31 23:59:58") == [2026, 2027, 2026]


def test_february_29_gets_the_leap_year_of_the_log() -> None:
    assert (
        years(local(2028, 3, 1, 12, 0, 0), "Feb 28 23:59:59", "Feb 29 00:00:00", "Mar  1 00:00:00")
        == [2028] * 3
    )


def test_february_29_read_in_a_year_far_from_any_leap_year_is_no_date() -> None:
    now = local(2026, 3, 1, 12, 0, 0)
    assert years(now, "Feb 28 23:59:59", "Feb 29 00:00:00", "Mar  1 00:00:00") == [2026, None, 2026]


@pytest.mark.parametrize("line", [b"Feb 30 10:00:00 a", b"Apr 31 10:00:00 a", b"Jan  0 10:00:00 a",
                                  b"Jan 12 24:00:00 a", b"Jan 12 10:60:00 a", b"Jan 12 10:00:61 a"])  # fmt: skip
def test_an_impossible_date_is_no_date(line: bytes) -> None:
    # mktime would quietly move it to another day (Feb 30 -> Mar 2) and so to a wrong year's reference.
    assert TimestampParser(NOW).parse(line) is None


def test_lines_without_a_stamp_change_nothing() -> None:
    lines = ("Dec 31 23:59:58", "a continuation line", "Jan  1 00:00:01", "", "Dec 31 23:59:59")
    assert years(local(2026, 1, 1, 0, 30, 0), *lines) == [2025, None, 2026, None, 2025]


def test_iso_stamps_mixed_in_keep_their_own_year_and_move_no_syslog_year() -> None:
    parser = TimestampParser(local(2026, 1, 1, 0, 30, 0))
    lines = [
        b"Dec 31 23:59:58 a",
        b"2024-06-01T10:00:00+00:00 b",
        b"2099-01-01T00:00:00Z c",
        b"Jan  1 00:00:01 d",
        b"Dec 31 23:59:59 e",
    ]
    got = [parser.parse(line) for line in lines]
    assert got[1] == calendar.timegm((2024, 6, 1, 10, 0, 0, 0, 0, 0))
    assert got[2] == calendar.timegm((2099, 1, 1, 0, 0, 0, 0, 0, 0))
    assert [got[0], got[3], got[4]] == [local(2025, 12, 31, 23, 59, 58), local(2026, 1, 1, 0, 0, 1),
                                        local(2025, 12, 31, 23, 59, 59)]  # fmt: skip


def test_new_year_in_a_zone_with_summer_time_keeps_stragglers_in_their_year(
    zone: Callable[[str], None],
) -> None:
    zone("AEST-10AEDT,M10.1.0,M4.1.0/3")  # Sydney: New Year falls in summer time
    now = local(2026, 1, 1, 2, 0, 0)
    stamps = ("Dec 31 23:59:58", "Jan  1 00:00:01", "Dec 31 23:59:59", "Jan  1 00:00:05")
    assert years(now, *stamps) == [2025, 2026, 2025, 2026]


def test_the_hour_repeated_when_summer_time_ends_moves_no_year(zone: Callable[[str], None]) -> None:
    zone("CET-1CEST,M3.5.0,M10.5.0/3")  # Berlin: 2026-10-25 03:00 CEST becomes 02:00 CET
    now = local(2026, 10, 25, 12, 0, 0)
    stamps = ("Oct 25 01:59:59", "Oct 25 02:30:00", "Oct 25 02:59:59", "Oct 25 02:15:00", "Oct 25 03:00:00")
    assert years(now, *stamps) == [2026] * 5


def test_state_survives_json_and_a_new_parser_continues_from_it() -> None:
    now = local(2026, 1, 1, 0, 10, 0)
    first = TimestampParser(now)
    assert years(first, "Dec 31 23:59:58", "Jan  1 00:00:01") == [2025, 2026]
    saved = json.loads(json.dumps(first.state()))
    second = TimestampParser(now)
    second.restore(saved)
    assert second.state() == first.state() == {"latest": local(2026, 1, 1, 0, 0, 1)}
    assert years(second, "Dec 31 23:59:59", "Jan  1 00:00:05") == [2025, 2026]


def test_a_restored_state_dates_the_backlog_from_where_the_log_was() -> None:
    # Stopped at the last second of 2025 and started again more than a year later: the lines written
    # meanwhile begin where the log was, not at the clock.
    stopped = TimestampParser(local(2025, 12, 31, 23, 59, 59))
    stopped.parse(b"Dec 31 23:59:58 a")
    started = TimestampParser(local(2027, 1, 2, 9, 0, 0))
    started.restore(stopped.state())
    assert years(started, "Jan  1 00:00:01") == [2026]
    assert years(local(2027, 1, 2, 9, 0, 0), "Jan  1 00:00:01") == [2027]


def test_a_restored_state_ahead_of_the_clock_puts_no_stamp_ahead_of_it() -> None:
    parser = TimestampParser(local(2026, 5, 1, 12, 0, 0))
    parser.restore({"latest": local(2030, 1, 1, 0, 0, 0)})  # saved while the clock was wrong
    assert years(parser, "May  1 11:59:00", "Dec 31 12:00:00") == [2026, 2025]


@pytest.mark.parametrize(
    "saved",
    [None, [], "latest", {}, {"latest": 1.0, "year": 2026}, {"year": 2026}, {"latest": "1700000000"},
     {"latest": True}, {"latest": [1.0]}, {"latest": math.nan}, {"latest": math.inf}, {"latest": 1e300},
     {"latest": -1e12}, {"latest": 10**400}, {1: 1.0}],
    ids=["null", "list", "string", "empty", "extra-key", "wrong-key", "number-as-text", "bool", "list-value",
         "nan", "inf", "far-future", "far-past", "huge-int", "int-key"],
)  # fmt: skip
def test_a_malformed_state_raises_value_error_and_changes_nothing(saved: object) -> None:
    parser = TimestampParser(local(2026, 1, 1, 0, 10, 0))
    parser.parse(b"Jan  1 00:00:01 a")
    before = parser.state()
    with pytest.raises(ValueError):
        parser.restore(saved)
    assert parser.state() == before
    assert years(parser, "Dec 31 23:59:59") == [2025]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(json_values | st.fixed_dictionaries({"latest": json_values}))
def test_restore_of_any_json_value_either_works_or_raises_value_error(saved: object) -> None:
    parser = TimestampParser(NOW)
    try:
        parser.restore(saved)
    except ValueError:
        return
    assert parser.parse(b"Dec 31 11:00:00 a") is not None


YEARS = (time.mktime((2001, 1, 1, 0, 0, 0, 0, 0, -1)), time.mktime((2037, 1, 1, 0, 0, 0, 0, 0, -1)))
NEW_YEARS = [time.mktime((year, 1, 1, 0, 0, 0, 0, 0, -1)) for year in range(2002, 2037)]


@settings(max_examples=300, deadline=None)
@given(
    center=st.sampled_from(NEW_YEARS) | st.floats(*YEARS),
    offsets=st.lists(st.integers(-2 * DAY, 2 * DAY), min_size=1, max_size=40),
    delays=st.lists(st.integers(0, 6 * HOUR), min_size=40, max_size=40),
    read_after=st.integers(0, 60 * DAY),
)
def test_stamps_written_up_to_six_hours_late_around_new_year_get_the_year_of_their_true_time(
    center: float, offsets: list[int], delays: list[int], read_after: int
) -> None:
    true_times = [int(center) + offset for offset in offsets]
    # A line is logged when it is written: late by up to six hours (a straggler), so out of order.
    written = sorted(zip(true_times, delays, strict=False), key=lambda pair: pair[0] + pair[1])
    parser = TimestampParser(max(t + d for t, d in written) + read_after)
    got = [parser.parse(stamp(t) + b" mx postfix/smtp[1]: x") for t, _ in written]
    assert [time.localtime(g)[:6] if g is not None else None for g in got] == [
        time.localtime(t)[:6] for t, _ in written
    ]


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(st.floats(*YEARS), max_size=5),
    when=st.floats(*YEARS),
    now=st.floats(*YEARS),
)
def test_no_syslog_stamp_is_put_more_than_max_ahead_of_the_clock(
    before: list[float], when: float, now: float
) -> None:
    parser = TimestampParser(now)
    for earlier in before:
        parser.parse(stamp(earlier))
    value = parser.parse(stamp(when))
    if value is None:  # February 29 with no leap year near the log
        assert stamp(when).startswith(b"Feb 29")
        return
    assert value <= now + MAX_AHEAD_SECONDS
    assert time.localtime(value)[1:6] == time.localtime(when)[1:6]


stamps = st.builds(
    lambda t: stamp(t).decode(), st.floats(time.mktime((2025, 12, 30, 0, 0, 0, 0, 0, -1)), NOW)
)
lines = st.one_of(
    stamps.map(lambda s: s + " mx postfix/smtp[1]: x"),
    stamps.map(lambda s: "pod-7 | " + s + " mx postfix/smtp[1]: x"),
    st.just("2026-12-31T23:59:59.250+00:00 mx postfix/smtp[1]: iso"),
    st.just("no stamp at all"),
).map(str.encode)


@settings(max_examples=200, deadline=None)
@given(st.lists(lines, max_size=30), st.lists(st.integers(0, 29), max_size=30))
def test_the_shortcut_gives_what_the_full_search_gives_for_any_sequence(
    sequence: list[bytes], repeats: list[int]
) -> None:
    for at in repeats:  # logs repeat a line's stamp often: give the shortcut its chance
        if at < len(sequence):
            sequence.insert(at, sequence[at])
    fast, full = TimestampParser(NOW), FullSearch(NOW)
    assert [fast.parse(line) for line in sequence] == [full.parse(line) for line in sequence]


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("CET-1CEST,M3.5.0,M10.5.0/3", (2026, 3, 29)),  # Berlin: an hour skipped at 02:00
        ("CET-1CEST,M3.5.0,M10.5.0/3", (2026, 10, 25)),  # and repeated at 03:00
        ("NST3:30NDT,M3.2.0/0:01,M11.1.0/0:01", (2010, 3, 14)),  # St John's until 2011: at one past midnight
        ("NST3:30NDT,M3.2.0/0:01,M11.1.0/0:01", (2010, 11, 7)),
        ("LHST-10:30LHDT-11,M10.1.0,M4.1.0", (2026, 10, 4)),  # Lord Howe: half an hour
        ("LHST-10:30LHDT-11,M10.1.0,M4.1.0", (2026, 4, 5)),
    ],
)
def test_each_second_of_a_day_of_summer_time_change_is_the_c_librarys_local_time(
    zone: Callable[[str], None], tz: str, day: tuple[int, int, int]
) -> None:
    """A stamp's time is its minute's, remembered, plus its second: the same as mktime() of the whole stamp at
    every second of a day on which the zone's offset changes, the skipped and repeated hours included."""
    zone(tz)
    year, month, mday = day
    parser = TimestampParser(local(year, month, mday, 12, 0, 0))
    name = time.strftime("%b", (year, month, mday, 0, 0, 0, 0, 1, -1)).encode()
    for second_of_day in range(0, DAY, 7):  # 7 s steps: every second of a minute comes up over the day
        hour, rest = divmod(second_of_day, HOUR)
        minute, second = divmod(rest, 60)
        line = b"%s %2d %02d:%02d:%02d mx postfix/smtp[1]: x" % (name, mday, hour, minute, second)
        assert parser.parse(line) == local(year, month, mday, hour, minute, second), line


def test_the_c_library_is_asked_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's mktime() reads the zone's file at each call: a log's stamps of the same minute ask it once."""
    calls: list[tuple[int, ...]] = []
    real = time.mktime

    def counted(fields: tuple[int, ...]) -> float:
        calls.append(fields)
        return real(fields)  # type: ignore[arg-type]

    start = local(2026, 12, 31, 10, 0, 0)
    parser = TimestampParser(start + HOUR)
    monkeypatch.setattr(time, "mktime", counted)
    values = [parser.parse(stamp(start + s) + b" mx postfix/smtp[1]: x") for s in range(600)]
    assert values == [start + s for s in range(600)]
    minutes = [fields for fields in calls if fields[:4] == (2026, 12, 31, 10)]
    assert [fields[4] for fields in minutes] == list(range(10))
    assert len(calls) - len(minutes) == 2  # the year's bounds
