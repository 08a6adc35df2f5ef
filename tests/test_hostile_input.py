"""Any bytes in: the normaliser, the parsers and the classifier never raise and stay fast."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.analyse import MAX_LINE_BYTES, Analyser, Skipped
from exporter.events import Event
from exporter.labels import code_label, enhanced_label
from exporter.reply import normalise
from exporter.rules import CATEGORIES, load_rules

RULES = load_rules()
ANALYSER = Analyser(RULES)

# Fragments of real lines, so that generated lines reach deep into the parsers instead of the prefilter.
FRAGMENTS = [
    "Nov 29 21:32:49 mx1 ", "postfix/smtp[1]: ", "0F8D71680EE: ", "to=<a@gmail.com>, ", "relay=",
    "gmail-smtp-in.l.google.com[192.0.2.1]:25, ", "status=deferred (", "status=bounced (", "host ",
    " said: ", "550-5.7.26 ", "550 5.7.26 ", "421-4.7.0 ", "\\n", "?", " - gsmtp", " - gcdp ", ")", "(",
    "2026-11-29 21:46:30 1xXmj8-0002ao-1z ", "** ", "== ", "=> ", "H=aspmx.l.google.com [1.2.3.4]:25 ",
    "SMTP error from remote mail server after RCPT TO:<x@gmail.com>: ", "sendmail[1]: 6ATLq9uJ011245: ",
    "reply=", ", stat=", "smtpd[1]: 61cdb445238f6019 mta delivery ", 'stat="', 'result="PermFail" ',
    "unusual rate", "DMARC policy", "5.7.1", "x.x.xx", "\u00e9", "\x00", "\udcff", " ", "  ",
]  # fmt: skip
lines = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), max_size=40).map(
    lambda parts: "".join(parts).encode("utf-8", "surrogateescape")
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines | st.binary(max_size=400))
def test_analyser_never_raises_and_labels_stay_bounded(line: bytes) -> None:
    result = ANALYSER.analyse(line)
    assert result is None or isinstance(result, (Event, Skipped))
    if isinstance(result, Event) and result.verdict is not None:
        assert result.verdict.category in CATEGORIES
        assert result.verdict.severity in ("temporary", "permanent")
    if isinstance(result, Event) and result.reply is not None:
        assert (
            code_label(result.reply.code) in (None, "other") or len(code_label(result.reply.code) or "") == 3
        )
        label = enhanced_label(result.reply.enhanced_code)
        assert label is None or label == "other" or len(label) <= 6


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_normaliser_and_rules_never_raise(text: str) -> None:
    reply = normalise(text)
    verdict = RULES.classify(reply)
    assert verdict.category in CATEGORIES


@settings(max_examples=100, deadline=None)
@given(st.lists(lines, max_size=30))
def test_batch_gives_what_single_lines_give(batch: list[bytes]) -> None:
    batch = [line.replace(b"\n", b" ") for line in batch]
    single = Analyser(RULES, now=0)
    many = Analyser(RULES, now=0)
    expected = [r for r in map(single.analyse, batch) if r is not None]
    assert many.analyse_batch(batch) == expected


def _timed(line: bytes) -> float:
    start = time.perf_counter()
    ANALYSER.analyse(line)
    return time.perf_counter() - start


def test_backtracking_bait_stays_fast() -> None:
    baits = [
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: A: to=<" + b"a" * 30000 + b" gsmtp",
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: A: host " + b"host x[" * 4000 + b" gsmtp",
        b"2026-11-29 21:46:30 1xXmj8-0002ao-1z ** a@gmail.com SMTP error from remote mail server after "
        + b":<" * 15000,
        b"Nov 29 21:32:49 mx1 smtpd[1]: 61cdb445238f6019 mta delivery " + b'a="\\' * 8000 + b" gsmtp",
        b"550-5.7.1 " * 3000 + b" - gsmtp",
        b"\\n" * 16000 + b"gsmtp",
        (b"with " * 6000)[:MAX_LINE_BYTES] + b"google",
    ]
    for bait in baits:
        assert len(bait) <= MAX_LINE_BYTES + 100
        assert _timed(bait[:MAX_LINE_BYTES]) < 0.25, bait[:60]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(lines, max_size=25), st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8)
)
def test_blocks_give_what_lines_give(batch: list[bytes], cuts: list[int]) -> None:
    from exporter.sources.lines import BlockSplitter, LineSplitter

    stream = b"\n".join(batch) + b"\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\nlast line without newline"
    chunks, pos = [], 0
    for cut in cuts * 400:
        if pos >= len(stream):
            break
        chunks.append(stream[pos : pos + cut * 97])
        pos += cut * 97
    chunks.append(stream[pos:])
    line_splitter, block_splitter = LineSplitter(MAX_LINE_BYTES), BlockSplitter(MAX_LINE_BYTES)
    by_line = Analyser(RULES, now=0)
    by_block = Analyser(RULES, now=0)
    expected: list[object] = []
    got: list[object] = []
    counted = 0
    for chunk in chunks:
        for line in line_splitter.feed(chunk):
            expected.append(by_line.analyse(line))
        count, results = by_block.analyse_block(block_splitter.feed(chunk))
        counted += count
        got.extend(results)
    for line in line_splitter.flush():
        expected.append(by_line.analyse(line))
    count, results = by_block.analyse_block(block_splitter.flush())
    counted += count
    got.extend(results)
    assert counted == len(expected)
    assert got == [r for r in expected if r is not None]
