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
def test_batch_of_mta_lines_gives_what_single_lines_give(batch: list[bytes]) -> None:
    # An MTA's lines stand alone (only free text groups into entries): the prefilter changes nothing.
    batch = [b"Nov 29 21:32:49 mx1 postfix/smtp[1]: " + line.replace(b"\n", b" ") for line in batch]
    single = Analyser(RULES, now=0)
    many = Analyser(RULES, now=0)
    expected = [r for r in map(single.analyse, batch) if r is not None]
    assert many.analyse_batch(batch) + many.flush()[1] == expected


def test_the_prefilter_finds_each_marker_in_any_case_and_the_configured_hosts() -> None:
    """The markers that begin with the first one's byte share one pass (a configured host that does too joins
    it), each other marker has its own: a block finds exactly the lines that name one, in any letter case, and the
    lines without one give nothing."""
    analyser = Analyser(RULES, google_hosts=("gw.relay.example", "mx.relay.example"))
    named = [
        b"relay=ASPMX.L.GOOGLE.COM[192.0.2.1]:25",
        b"(250 2.0.0 OK 1764300001 h49si8816909stz.039 - GSMTP)",
        b"to=<a@GMail.Com>, status=sent",
        b"connect from mail-wr1-f54.1E100.NET[192.0.2.3]",
        b"relay=GW.relay.example[192.0.2.4]:25",
        b"relay=mx.RELAY.example[192.0.2.5]:25",
        b"1x1h2n-00003H-00: from=<x@example.org>, status=EXPIRED, returned to sender",
        b"network error on destination MXs for gmail-ish.example",
    ]
    others = [b"connect from goo.gle.example[192.0.2.6]", b"to=<a@gmail.co>, status=sent", b"smtp gsmt p"]
    unnamed = (others * 3)[: len(named)]
    lines = [
        b"Nov 29 21:32:49 mx1 postfix/qmgr[1]: " + x
        for pair in zip(named, unnamed, strict=True)
        for x in pair
    ]
    block = b"\n".join(lines) + b"\n"
    count, spans = analyser.prefilter(block)
    assert spans is not None
    assert (count, [block[start:end] for start, end in spans]) == (len(lines), lines[::2])


ORDINARY_LINE = (
    b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
    b"[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host gmail-smtp-in.l.google.com"
    b"[192.0.2.7] said: 550 5.7.1 Something. a1b2c3.4 - gsmtp (in reply to end of DATA command))\n"
)


def _best_of_three(block: bytes) -> float:
    """The fastest of three runs over `block` by a fresh analyser: a busy machine slows some runs, not all."""
    best = float("inf")
    for _ in range(3):
        analyser = Analyser(RULES)
        start = time.perf_counter()
        analyser.analyse_block(block)
        analyser.flush()
        best = min(best, time.perf_counter() - start)
    return best


def _assert_no_blow_up(bait: bytes) -> None:
    """Side by side with ordinary Gmail refusals as long: a quadratic or backtracking path takes thousands of times
    as long, so a factor of 50 (plus a little, for very short inputs) never fails on a slow or busy machine."""
    ordinary = _best_of_three(ORDINARY_LINE * (len(bait) // len(ORDINARY_LINE) + 1))
    assert _best_of_three(bait) < 50 * ordinary + 0.05, bait[:60]


def test_free_text_bait_over_many_lines_stays_fast() -> None:
    # Entries of free text grow line by line: folded lines, reply continuations, lines ending with a colon.
    baits = [
        b"550-5.7.1 gmail.com\n" + b"\n".join([b"  " + b"550-5.7.1 x" * 2800] * 40),
        b"\n".join([b"Remote host said:"] * 2000) + b"\n550 5.7.1 google",
        b"\n".join([b"<<< 550-5.7.1 line %d gsmtp.google" % i for i in range(4000)]),
        b"smtp.gmail.com\n" * 3000 + b"550 5.7.1 x",
    ]
    for bait in baits:
        _assert_no_blow_up(bait)


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
        b"550" + b" " * 30000 + b"5.7.1 gsmtp",
        b"5.7.1" + b" " * 30000 + b"x gsmtp",
        b"Diagnostic-Code: smtp; " + b"550-5.7.1 " * 3000 + b" gmail.com",
        b"said: '550 5.7.1 " + b'\\"' * 8000 + b" - gsmtp",
        b"smtp.gmail.com connect " + b"a." * 15000 + b" failed",
        b"x " + b"q16si3475662wrs.311 " * 1500 + b"google",
    ]
    for bait in baits:
        assert len(bait) <= MAX_LINE_BYTES + 100
        _assert_no_blow_up(bait[:MAX_LINE_BYTES])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(lines, max_size=25), st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8)
)
def test_blocks_cut_anywhere_give_what_the_whole_stream_gives(batch: list[bytes], cuts: list[int]) -> None:
    from exporter.sources.lines import BlockSplitter

    stream = b"\n".join(batch) + b"\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\nlast line without newline"
    chunks, pos = [], 0
    for cut in cuts * 400:
        if pos >= len(stream):
            break
        chunks.append(stream[pos : pos + cut * 97])
        pos += cut * 97
    chunks.append(stream[pos:])
    whole = BlockSplitter(2 * len(stream) + MAX_LINE_BYTES)
    at_once = Analyser(RULES, now=0)
    expected_count, expected = at_once.analyse_block(whole.feed(stream) + whole.flush())
    held_count, held = at_once.flush()
    expected_count, expected = expected_count + held_count, expected + held
    block_splitter = BlockSplitter(MAX_LINE_BYTES)
    by_block = Analyser(RULES, now=0)
    got: list[object] = []
    counted = 0
    for chunk in [*chunks, None]:
        count, results = by_block.analyse_block(
            block_splitter.feed(chunk) if chunk is not None else block_splitter.flush()
        )
        counted += count
        got.extend(results)
    count, results = by_block.flush()
    assert (counted + count, got + results) == (expected_count, expected)
