"""Queue listings as the real daemons wrote them (tests/fixtures/queues, recorded by tests/fixtures/make_mta_logs.sh)
give exactly what each queued recipient waits for; malformed, truncated and hostile listings are skipped and
counted, never fatal; a listing of any size is read in bounded memory."""

from __future__ import annotations

import csv
import gc
import json
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import pytest
from conftest import REPO

from bench import queue_listings as generated
from exporter.google import GoogleHosts
from exporter.queue import exim, opensmtpd, postfix, sendmail
from exporter.queue.classify import UNANSWERED_KINDS, Outcome, QueueClassifier, Tally
from exporter.queue.domains import GoogleDomains
from exporter.queue.listing import ListingStats, QueuedRecipient, read_chunks, split_lines
from exporter.rules import CATEGORIES, load_rules

QUEUES = REPO / "tests" / "fixtures" / "queues"
RULES = load_rules()
RECORDED_AT = 1796293800.0
"""A moment just after the fixtures were recorded (their arrival times are the recording machine's clock)."""

# OpenSMTPD keeps only 'Network error on destination MXs' for a refused connection: no host, no cause.
OPENSMTPD_REFUSED = "other"

Reader = Callable[[Iterable[bytes], ListingStats], Iterator[QueuedRecipient]]


def exim_msglog(message_id: str) -> bytes | None:
    path = QUEUES / "exim-msglog" / message_id
    return path.read_bytes() if path.exists() else None


READERS: dict[str, Reader] = {
    "postfix": postfix.parse,
    "exim": lambda lines, stats: exim.parse(lines, stats, exim_msglog, RECORDED_AT),
    "sendmail": lambda lines, stats: sendmail.parse(lines, stats, RECORDED_AT),
    "opensmtpd": opensmtpd.parse,
}
LISTINGS = {
    "exim-bpr.txt": "exim",
    "sendmail-bp-v.txt": "sendmail",
    "sendmail-bp.txt": "sendmail",
    "opensmtpd-show-queue.txt": "opensmtpd",
}
MAX_LINE = {"postfix": postfix.MAX_LINE_BYTES, "exim": exim.MAX_LINE_BYTES}


def classifier(*learned: str) -> QueueClassifier:
    domains = GoogleDomains()
    for domain in learned:
        domains.add(domain)
    return QueueClassifier(RULES, GoogleHosts(), domains)


def read(mta: str, chunks: Iterable[bytes]) -> tuple[list[QueuedRecipient], ListingStats]:
    stats = ListingStats()
    lines = split_lines(chunks, MAX_LINE.get(mta, 64 * 1024), stats)
    return list(READERS[mta](lines, stats)), stats


def read_file(name: str) -> tuple[list[QueuedRecipient], ListingStats]:
    with open(QUEUES / name, "rb") as stream:
        return read(LISTINGS[name], read_chunks(stream))


def manifest(mta: str) -> list[dict[str, str]]:
    with open(QUEUES / "manifest.tsv", encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle, delimiter="\t") if row["mta"] == mta]


def expected_outcome(mta: str, listing: str, row: dict[str, str]) -> Outcome | None:
    what = row["expected"]
    if what == "not_google":
        return None
    if what == "refused" and mta == "opensmtpd":
        return Outcome("unanswered", OPENSMTPD_REFUSED)
    if what in CATEGORIES:
        return Outcome("category", what)
    return Outcome("unanswered", what)


@pytest.mark.parametrize("listing", sorted(LISTINGS))
def test_recorded_listing_gives_what_each_recipient_waits_for(listing: str) -> None:
    mta = LISTINGS[listing]
    recipients, stats = read_file(listing)
    judge = classifier("workspace.example").judge  # as if the log had shown it delivered to Google
    rows = manifest(mta)
    by_id = {r.queue_id: r for r in recipients}
    assert stats.unreadable == {"malformed": 0, "too_long": 0, "truncated": 0}
    assert stats.messages == len(rows) == len(recipients)
    for row in rows:
        found = by_id[row["queue_id"]]
        assert found.domain == row["recipient"].rpartition("@")[2]
        assert judge(found) == expected_outcome(mta, listing, row), row


@pytest.mark.parametrize("listing", sorted(LISTINGS))
def test_recorded_arrival_times_are_the_recording_minute(listing: str) -> None:
    recipients, _ = read_file(listing)
    # Recorded between 10:29 and 10:30 (machine clock 1796293740-1796293799); Sendmail lists minutes only.
    assert all(1796293740 <= r.arrival <= RECORDED_AT for r in recipients if r.arrival is not None)
    assert all(r.arrival is not None for r in recipients)


def test_delivered_recipient_of_a_partly_delivered_message_is_not_queued() -> None:
    recipients, _ = read_file("exim-bpr.txt")
    assert "gmail.com" in {r.domain for r in recipients}
    # accept-04@gmail.com shared a message with seed-09@gmail.com and was delivered ('D' in the listing).
    assert sum(1 for r in recipients if r.queue_id == manifest_id("exim", "seed-09@gmail.com")) == 1


def manifest_id(mta: str, recipient: str) -> str:
    return next(r["queue_id"] for r in manifest(mta) if r["recipient"] == recipient)


@pytest.mark.parametrize(
    ("listing", "refused_counts"),
    [
        ("exim-bpr.txt", True),  # the msglog's host line names alt2.gmail-smtp-in.l.google.com
        ("sendmail-bp-v.txt", True),  # 'Connection refused by alt2.gmail-smtp-in.l.google.com.'
        ("sendmail-bp.txt", False),  # without -v the host name is cut at 60 characters
        ("opensmtpd-show-queue.txt", False),  # no host at all
    ],
)
def test_refused_workspace_recipient_counts_by_host_name_until_its_domain_is_learned(
    listing: str, refused_counts: bool
) -> None:
    recipients, _ = read_file(listing)
    refused = next(r for r in recipients if r.domain == "workspace.example")
    assert (classifier().judge(refused) is not None) is refused_counts
    assert classifier("workspace.example").judge(refused) is not None


# -- Postfix's JSON ----------------------------------------------------------------------------------------------
def postfix_entry(queue_id: str = "4F2C21C0A3B", **changes: object) -> bytes:
    entry: dict[str, object] = {
        "queue_name": "deferred",
        "queue_id": queue_id,
        "arrival_time": 1700000000,
        "message_size": 300,
        "forced_expire": False,
        "sender": "news@example.org",
        "recipients": [
            {
                "address": "a@gmail.com",
                "delay_reason": "host gmail-smtp-in.l.google.com[192.0.2.2] said: 452-4.2.2 The email account "
                "that you tried to reach is over quota. 452 4.2.2 x1si2.3 - gsmtp (in reply to RCPT TO command)",
            },
            {"address": "b@gmail.com"},
        ],
    }
    entry.update(changes)
    return json.dumps(entry).encode() + b"\n"


def test_postfix_recipient_without_delay_reason_was_not_tried() -> None:
    recipients, stats = read("postfix", [postfix_entry()])
    judge = classifier().judge
    assert [judge(r) for r in recipients] == [
        Outcome("category", "mailbox_full"),
        Outcome("unanswered", "not_tried"),
    ]
    assert [r.arrival for r in recipients] == [1700000000.0, 1700000000.0]
    assert stats.messages == 1


HOSTILE_POSTFIX = [
    b"not json at all\n",
    b"[" * 100_000 + b"\n",  # nesting deep enough to exhaust a recursive parser
    b'{"queue_id": "A", "arrival_time": 1e999, "recipients": []}\n',  # infinite time
    b'{"queue_id": "A", "arrival_time": true, "recipients": []}\n',
    b'{"queue_id": 7, "arrival_time": 1, "recipients": []}\n',
    b'{"queue_id": "A", "arrival_time": 1, "recipients": [{"address": ["x"]}]}\n',
    b'{"queue_id": "A", "arrival_time": 1, "recipients": "a@gmail.com"}\n',
    b'{"queue_id": "A", "arrival_time": 1' + b"0" * 5000 + b', "recipients": []}\n',  # int beyond str limits
    b'"just a string"\n',
    b'{"queue_id": "\xff\xfe", "arrival_time": 1, "recipients": []}\n',  # not UTF-8
    b'{"queue_id": "A\x00", "arrival_time": 1, "recipients": []}\n',  # NUL byte
    b'{"queue_id": "A", "arrival_time": 1' + b"0" * 400 + b', "recipients": []}\n',  # beyond any float
]


def test_hostile_postfix_entries_are_skipped_and_counted_between_good_ones() -> None:
    chunks = [postfix_entry("GOOD1"), *HOSTILE_POSTFIX, postfix_entry("GOOD2")]
    recipients, stats = read("postfix", chunks)
    assert [r.queue_id for r in recipients] == ["GOOD1", "GOOD1", "GOOD2", "GOOD2"]
    assert stats.unreadable == {"malformed": len(HOSTILE_POSTFIX), "too_long": 0, "truncated": 0}


def test_overlong_entry_is_skipped_without_being_held_and_the_next_one_read() -> None:
    huge = b'{"queue_id": "' + b"A" * (postfix.MAX_LINE_BYTES + 10) + b'"}\n'
    pieces = [huge[i : i + 65536] for i in range(0, len(huge), 65536)]
    recipients, stats = read("postfix", [*pieces, postfix_entry("NEXT")])
    assert {r.queue_id for r in recipients} == {"NEXT"}
    assert stats.unreadable == {"malformed": 0, "too_long": 1, "truncated": 0}


@pytest.mark.parametrize("mta", generated.MTAS)
def test_listing_cut_off_mid_entry_counts_the_cut_entry_as_truncated(mta: str) -> None:
    whole = b"".join(listing_chunks(mta, 20))
    recipients, stats = read(mta, [whole[: len(whole) - 5]])
    assert stats.unreadable["truncated"] == 1
    assert len(recipients) in (19, 20)  # a cut Exim/Sendmail recipient line is the last line of its message


def listing_chunks(mta: str, messages: int, *, distinct: bool = True) -> Iterator[bytes]:
    if mta == "exim":
        return generated.exim(messages)
    return getattr(generated, mta)(messages, distinct=distinct)  # type: ignore[no-any-return]


GARBAGE = [
    "0123456789abcdef|local|mta|auth|a|b@gmail.com|c|\u00b2|1|0|1|pending|1|x\n".encode(),  # superscript two
    b"\xff\xfe\xfd garbage \x80\x81\n",
    b"          orphan@gmail.com\n",
    b"|||||||||||||\n",
    b"0123456789abcdef|local|mta|auth|a|b|c|notanumber|1|0|1|pending|1|x\n",
    b"(Deferred: 421 4.7.0 a reply without a message)\n",
]


@pytest.mark.parametrize("mta", ["exim", "sendmail", "opensmtpd"])
def test_garbage_lines_before_a_listing_are_skipped_and_counted(mta: str) -> None:
    clean, _ = read(mta, listing_chunks(mta, 10))
    recipients, stats = read(mta, [*GARBAGE, *listing_chunks(mta, 10)])
    assert [r.queue_id for r in recipients] == [r.queue_id for r in clean]
    assert stats.unreadable["malformed"] >= 3
    assert stats.unreadable["too_long"] == stats.unreadable["truncated"] == 0


HOSTILE_REASONS = [
    "host evil.example[192.0.2.66] said: 550-5.7.26 gsmtp " + "A" * 10_000,
    "999 9.9.999 invented code - gsmtp",
    "421-4.7.28 " + "4.7.28 " * 3000 + "- gsmtp",
    "said: 4" + "0" * 4000,
    "connect to " + "a." * 3000 + "google.com[1.2.3.4]:25: Connection timed out",
    "Deferred: \x1b[31m<script>alert(1)</script> user@gmail.com 450 4.2.1 - gsmtp",
]


@pytest.mark.parametrize("reason", HOSTILE_REASONS)
def test_hostile_delay_reason_gets_a_label_from_the_closed_lists(reason: str) -> None:
    tally = Tally()
    found = QueuedRecipient("Q1", 1.0, "gmail.com", reason[:4096])
    tally.add_all(classifier(), [found])
    assert set(tally.categories) == set(CATEGORIES)
    assert set(tally.unanswered) == set(UNANSWERED_KINDS)
    assert sum(tally.categories.values()) + sum(tally.unanswered.values()) == 1


# -- bounded memory ----------------------------------------------------------------------------------------------
def peak_bytes(mta: str, messages: int) -> tuple[int, dict[str, int]]:
    """tracemalloc's peak while reading and classifying a generated listing, and the counts it gave."""
    judge = classifier()
    gc.collect()
    tracemalloc.start()
    try:
        stats = ListingStats()
        lines = split_lines(listing_chunks(mta, messages), MAX_LINE.get(mta, 64 * 1024), stats)
        if mta == "exim":
            found: Iterator[QueuedRecipient] = exim.parse(
                lines, stats, generated.exim_msglog, generated.START + messages
            )
        elif mta == "sendmail":
            found = sendmail.parse(lines, stats, generated.START + messages)
        else:
            found = READERS[mta](lines, stats)
        tally = Tally()
        tally.add_all(judge, found)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    counts = Counter({k: v for k, v in (*tally.categories.items(), *tally.unanswered.items()) if v})
    return peak, dict(counts)


def assert_bounded(mta: str, small: int, large: int) -> None:
    small_peak, small_counts = peak_bytes(mta, small)
    large_peak, large_counts = peak_bytes(mta, large)
    assert small_counts == generated.expected(mta, small)
    assert large_counts == generated.expected(mta, large)
    # Caches (replies, verdicts, host names) fill up to their bounds with the larger listing: a few MB at most.
    assert large_peak < 2 * small_peak + 8 * 1024 * 1024, (small_peak, large_peak)


@pytest.mark.parametrize("mta", generated.MTAS)
def test_listing_twenty_times_longer_peaks_within_bounded_memory(mta: str) -> None:
    assert_bounded(mta, 1_000, 20_000)


@pytest.mark.slow
@pytest.mark.parametrize("mta", generated.MTAS)
def test_million_message_listing_is_read_in_the_memory_of_a_thousand(mta: str) -> None:
    assert_bounded(mta, 1_000, 1_000_000)
