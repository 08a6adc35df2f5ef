"""The shapes corpus: real, publicly posted text that carries a Gmail reply, in every shape people paste or other
software writes, each classified exactly by `classify`; and text that only mentions Google gives no event.

tests/data/shapes.tsv holds the rows, tests/data/gmail-wordings.tsv every public Gmail wording; the README
beside them says where the rows come from and how their text is escaped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import TESTS
from fixtures.gmail_lookalike import Reply, format_reply

from exporter.cli import main
from exporter.events import CONNECTION_ERROR_KINDS
from exporter.rules import CATEGORIES

DATA = TESTS / "data"
SHAPE_COLUMNS = ["id", "shape", "code", "enhanced_code", "category", "connection_error", "source", "note", "text"]  # fmt: skip
WORDING_COLUMNS = [
    "id", "code", "enhanced_code", "category", "first_line_categories", "in_replies_tsv", "seen_at", "text",
    "first_line",
]  # fmt: skip
SID = "a640c23a62f3a-aac0eff19desi1759812166b.313"
_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def unescape(field: str) -> str:
    """A TSV field back to its text: backslash escapes \\\\, \\t, \\n and \\r; anything else is an error."""
    out: list[str] = []
    chars = iter(field)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt not in _ESCAPES:
            raise ValueError(f"bad escape \\{nxt} in {field[:80]!r}")
        out.append(_ESCAPES[nxt])
    return "".join(out)


def load_tsv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        lines = [line for line in fh if not line.startswith("#")]
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader)
    assert header == columns, f"{path.name}: columns {header}"
    rows = []
    for number, fields in enumerate(reader, start=2):
        assert len(fields) == len(columns), f"{path.name}: data row {number} has {len(fields)} fields"
        rows.append({k: unescape(v) for k, v in zip(columns, fields, strict=True)})
    return rows


SHAPES = load_tsv(DATA / "shapes.tsv", SHAPE_COLUMNS)
WORDINGS = load_tsv(DATA / "gmail-wordings.tsv", WORDING_COLUMNS)
POSITIVE = [r for r in SHAPES if not r["shape"].startswith("negative_")]
NEGATIVE = [r for r in SHAPES if r["shape"].startswith("negative_")]


def classify_text(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """What `classify FILE` prints for a file holding exactly this text (the row's lines, in order)."""
    pasted = tmp_path / "pasted.txt"
    pasted.write_bytes(text.encode("utf-8") + b"\n")
    capsys.readouterr()
    assert main(["classify", str(pasted)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def outcome(event: dict[str, object]) -> dict[str, object]:
    return {k: event[k] for k in ("code", "enhanced_code", "category", "connection_error")}


def expected(row: dict[str, str]) -> dict[str, object]:
    return {k: row[k] or None for k in ("code", "enhanced_code", "category", "connection_error")}


@pytest.mark.parametrize("row", POSITIVE, ids=lambda r: r["id"])
def test_pasted_gmail_reply_gives_one_event_with_its_codes_and_category(
    row: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = classify_text(row["text"], tmp_path, capsys)
    assert [outcome(e) for e in events] == [expected(row)], row["note"]


@pytest.mark.parametrize("row", NEGATIVE, ids=lambda r: r["id"])
def test_text_that_only_mentions_google_gives_no_event(
    row: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert classify_text(row["text"], tmp_path, capsys) == [], row["note"]


def wire(wording: dict[str, str]) -> list[str]:
    reply = Reply(wording["id"], wording["code"], wording["enhanced_code"], wording["category"], "data", "gsmtp",
                  wording["text"])  # fmt: skip
    return format_reply(reply, sid=SID)


def postfix_line(wording: dict[str, str]) -> str:
    status = "deferred" if wording["code"].startswith("4") else "bounced"
    dsn = wording["enhanced_code"] or wording["code"][0] + ".0.0"
    host = "gmail-smtp-in.l.google.com[142.250.102.27]"
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: 0F8D71680EE: to=<user@gmail.com>, relay={host}:25, delay=1, "
        f"delays=0/0/0/1, dsn={dsn}, status={status} (host {host} said: {' '.join(wire(wording))} "
        f"(in reply to end of DATA command))"
    )


@pytest.mark.parametrize("wording", WORDINGS, ids=lambda w: w["id"])
@pytest.mark.parametrize("shape", ["postfix", "bare"])
def test_every_public_gmail_wording_gets_its_category(
    wording: dict[str, str], shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = wire(wording)
    text = postfix_line(wording) if shape == "postfix" else " ".join(lines)
    events = classify_text(text, tmp_path, capsys)
    assert [(e["code"], e["enhanced_code"], e["category"]) for e in events] == [
        (wording["code"], wording["enhanced_code"] or None, wording["category"])
    ]


FIRST_LINES = [w for w in WORDINGS if w["first_line"]]


@pytest.mark.parametrize("wording", FIRST_LINES, ids=lambda w: w["id"])
def test_first_reply_line_alone_is_classified_only_when_it_names_one_message(
    wording: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sendmail logs only the first line of Gmail's reply: a first line that only one Gmail message starts
    with gets that message's category; one that several start with is honestly unclassified."""
    line = (
        f"Nov 29 21:52:09 mx4 sendmail[11245]: 6ATLq9uJ011245: to=<user@gmail.com>, delay=00:00:01, "
        f"xdelay=00:00:01, mailer=esmtp, pri=30015, relay=gmail-smtp-in.l.google.com. [142.250.102.27], "
        f"dsn={wording['enhanced_code']}, reply={wording['code']} {wording['enhanced_code']} {wording['first_line']}, "
        f"stat={'Deferred' if wording['code'].startswith('4') else 'Service unavailable'}"
    )
    candidates = wording["first_line_categories"].split(",")
    want = candidates[0] if len(candidates) == 1 else "unclassified"
    events = classify_text(line, tmp_path, capsys)
    assert [e["category"] for e in events] == [want], candidates


def test_corpus_rows_are_well_formed() -> None:
    """Ids are unique, every row names its source, categories come from the closed list, and a row expects a
    refusal with its category, an accepted delivery without one, or a connection error (negative rows nothing)."""
    ids = [r["id"] for r in SHAPES] + [w["id"] for w in WORDINGS]
    assert len(ids) == len(set(ids))
    for row in SHAPES:
        assert row["source"].startswith(("http://", "https://", "synthetic from http")), row["id"]
        assert row["text"].strip(), row["id"]
        if row["shape"].startswith("negative_"):
            assert not (row["code"] or row["category"] or row["connection_error"]), row["id"]
        elif row["connection_error"]:
            assert row["connection_error"] in CONNECTION_ERROR_KINDS and not row["category"], row["id"]
        elif row["code"].startswith("2"):
            assert not row["category"], row["id"]  # an accepted delivery has no category
        else:
            assert row["category"] in CATEGORIES, row["id"]
    for w in WORDINGS:
        assert w["seen_at"], w["id"]
        assert w["category"] in CATEGORIES, w["id"]
        assert bool(w["first_line"]) == bool(w["first_line_categories"]), w["id"]
        if w["first_line"]:
            assert set(w["first_line_categories"].split(",")) <= set(CATEGORIES), w["id"]
            assert w["category"] in w["first_line_categories"].split(","), w["id"]
