"""The shapes corpus as one mixed log: every row of tests/data/shapes.tsv, the lines that only mention Google
among them, between ordinary lines of an MTA's log, read by `classify` and `report` in one go. Each row gives
exactly its own event (or none), on one of its own lines, and nothing leaks from one row into the next."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_shapes_corpus import SHAPES, expected, outcome

from exporter.analyse import MAX_LINE_BYTES, Analyser
from exporter.rules import load_rules
from exporter.sources.lines import BlockSplitter

RULES = load_rules()

BETWEEN = [
    "Nov 29 21:32:48 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]",
    "Nov 29 21:32:48 mx1 postfix/qmgr[2]: 0F8D71680EE: from=<news@example.org>, size=1, nrcpt=1 (queue active)",
    "Nov 29 21:32:50 mx1 postfix/smtp[3]: 1A2B3C: to=<a@example.net>, relay=mx.example.net[192.0.2.9]:25, delay=1, "
    "delays=0/0/0/1, dsn=5.1.1, status=bounced (host mx.example.net[192.0.2.9] said: 550 5.1.1 <a@example.net>: "
    "Recipient address rejected: User unknown (in reply to RCPT TO command))",
    "Nov 29 21:32:51 mx1 postfix/smtpd[1]: disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1",
]


def mixed_log(seed: int) -> tuple[str, list[tuple[range, dict[str, object] | None]]]:
    """The rows in a shuffled order, each between ordinary log lines, and where each row's lines are."""
    rows = list(SHAPES)
    random.Random(seed).shuffle(rows)
    lines: list[str] = []
    placed: list[tuple[range, dict[str, object] | None]] = []
    for row in rows:
        lines.extend(BETWEEN)
        start = len(lines) + 1
        lines.extend(row["text"].split("\n"))
        is_negative = row["shape"].startswith("negative_")
        placed.append((range(start, len(lines) + 1), None if is_negative else expected(row)))
    lines.extend(BETWEEN)
    return "\n".join(lines) + "\n", placed


def test_every_row_in_a_mixed_log_gives_exactly_its_own_event(tmp_path: Path) -> None:
    for seed in (1, 2):
        text, placed = mixed_log(seed)
        log = tmp_path / f"mixed-{seed}.log"
        log.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "classify", str(log)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stdout.splitlines()]
        got = [
            (next(i for i, (span, _) in enumerate(placed) if e["line"] in span), outcome(e)) for e in events
        ]
        want = [(i, want) for i, (_, want) in enumerate(placed) if want is not None]
        assert len(want) == sum(1 for row in SHAPES if not row["shape"].startswith("negative_"))
        assert got == want


def test_report_of_the_mixed_log_counts_what_classify_prints(tmp_path: Path) -> None:
    text, _ = mixed_log(3)
    log = tmp_path / "mixed.log"
    log.write_text(text, encoding="utf-8")
    env = {**os.environ, "TZ": "UTC"}
    run = [sys.executable, "-m", "exporter"]
    events = [
        json.loads(line)
        for line in subprocess.run(
            [*run, "classify", str(log)], capture_output=True, text=True, env=env
        ).stdout.splitlines()
    ]
    report = json.loads(
        subprocess.run(
            [*run, "report", "--format", "json", str(log)], capture_output=True, text=True, env=env
        ).stdout
    )
    assert report["lines"] == text.count("\n")
    recipient = [e for e in events if e["scope"] == "recipient"]
    assert sum(report["deliveries"].values()) == len(recipient)
    assert report["rejections_by_category"] == {
        c: n
        for c in sorted({str(e["category"]) for e in recipient if e["category"]})
        if (n := sum(1 for e in recipient if e["category"] == c))
    }


MIXED, _ = mixed_log(4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6))
def test_the_mixed_log_cut_into_blocks_anywhere_gives_what_it_gives_whole(sizes: list[int]) -> None:
    data = MIXED.encode()
    whole = Analyser(RULES, now=0)
    count, results = whole.analyse_block(data)
    held_count, held = whole.flush()
    expected = (count + held_count, results + held)
    splitter, analyser = BlockSplitter(MAX_LINE_BYTES), Analyser(RULES, now=0)
    got_count, got, pos = 0, [], 0
    for size in sizes * (len(data) // min(sizes) + 1):
        if pos >= len(data):
            break
        n, found = analyser.analyse_block(splitter.feed(data[pos : pos + size]))
        got_count, got, pos = got_count + n, got + found, pos + size
    n, found = analyser.analyse_block(splitter.flush())
    held_count, held = analyser.flush()
    assert (got_count + n + held_count, got + found + held) == expected
