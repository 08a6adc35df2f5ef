"""The fast path reads exactly what the line-by-line path reads: on generated and hostile Postfix logs, cut into
blocks anywhere, Analyser.summarise_block() (the fast path, which `report` and the daemon use) and
Analyser.analyse_block() (the reference path, which `classify` uses) give the same events one by one, the same
line counts, the same held entries and the same join memory. A parser change that the fast path does not mirror
fails here, and the self-tests below prove that a deliberately broken fast-path rule is caught."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CORPUS, REPO, TESTS
from fixtures.gmail_lookalike import format_reply
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_shapes_corpus import SHAPES

from exporter import fastpath
from exporter.analyse import MAX_LINE_BYTES, SKIP_REASONS, Analyser, Skipped
from exporter.events import Event
from exporter.fastpath import Accepted, Refused
from exporter.ingest import FAST_PATH_BYTES, Ingest
from exporter.metrics import Metrics
from exporter.metrics.saved import dump
from exporter.offline import Report
from exporter.queue.domains import GoogleDomains
from exporter.rules import CATEGORIES, load_rules

RULES = load_rules()
NOW = 1_796_000_000.0  # 2026-11-29: the stamps below are read as of this day
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# -- the parts a Postfix outcome line is made of, ordinary and hostile --

STAMPS = ["Nov 29 21:32:48", "Nov 29 21:32:49", "Nov  3 04:05:06", "Dec 31 23:59:59", "Jan  1 00:00:01",
          "Feb 29 12:00:00", "Feb 30 12:00:00", "Nov 29 25:00:00", "2026-11-29T21:32:48.123456+01:00",
          "2026-11-29 21:32:48", "Nov 29 21:32:48.123"]  # fmt: skip
HOSTS = ["mx1", "mail.example.org", "mx-out.example.org", "host/smtpd[1]"]
SERVICES = ["postfix/smtp", "postfix-out/smtp", "postfix/lmtp", "postfix/error", "smtp", "postfix/smtpd"]
QUEUE_IDS = ["1A2B3C4D5E", "4Zxyz12Kq9bDDf", "B2ADD2181B9", "warning", "NOQUEUE", "ab"]
RECIPIENTS = ["alice@gmail.com", "Bob.Smith@GoogleMail.com", "carol@acme-corp.example", "d=e@gmail.com",
              "relay=aspmx.l.google.com@x.example", "x[1]@gmail.com", "weird, status=sent@gmail.com",
              "gr\u00fc\u00df@gmail.com", "a b@gmail.com", "x@gmail.com.", "@gmail.com", "x@"]  # fmt: skip
RELAYS = ["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com", "aspmx.l.google.com",
          "aspmx3.googlemail.com", "ASPMX.L.GOOGLE.COM", "aspmx.l.google.com.", "evilgoogle.com",
          "mx.example.net", "smtp.google.com", "none"]  # fmt: skip
FIELDS = [", delay=1.2, delays=0.1/0/0.3/0.8, dsn=2.0.0", ", conn_use=2, delay=0.5, delays=0/0/0/0.5, dsn=4.7.0",
          ", orig_to=<a@b.example>, delay=1, delays=0/0/0/1, dsn=5.1.1", ", delay=1, status=bounced, dsn=5.0.0",
          ", delay=1, delays=0/0/0/1, dsn=x"]  # fmt: skip
STATUSES = ["sent", "deferred", "bounced", "expired", "undeliverable"]
SESSION_IDS = ["q16si3475662wrs.311", "a640c23a62f3a-aac0eff19desi1759812166b.313", "nodigits", "x1", "gsmtp"]
AFTER = ["", " (in reply to RCPT TO command)", " (in reply to end of DATA command)", " (in reply to gsmtp command)",
         " (in reply to MAIL FROM command) extra"]  # fmt: skip
ACCEPTED = ["250 2.0.0 OK  1764300001 {sid} - gsmtp", "250 2.0.0 OK {sid} - gsmtp", "250 ok", "",
            "250 2.0.0 OK see /smtpd[1] {sid} - gsmtp", "250 [x] OK - gsmtp", " 250 2.0.0 OK "]  # fmt: skip
ODDITIES = ["", " said: 550 5.7.1 inside", " postfix/smtpd[7]: ", " /qmgr[3]: status=expired", " - gsmtp",
            "\u00e9\u00e8", " GSMTP", " host x[1.2.3.4] said: 421 again"]  # fmt: skip
BETWEEN = [
    "Nov 29 21:32:48 mx1 postfix/smtpd[1]: connect from mail-ej1-f53.google.com[209.85.218.53]",
    "Nov 29 21:32:48 mx1 postfix/smtpd[1]: 1A2B3C4D5E: client=mail-ej1-f53.google.com[209.85.218.53]",
    "Nov 29 21:32:48 mx1 postfix/qmgr[2]: 1A2B3C4D5E: from=<news@gmail.com>, size=1, nrcpt=1 (queue active)",
    "Nov 29 21:32:49 mx1 postfix/qmgr[2]: 1A2B3C4D5E: from=<news@example.org>, status=expired, returned to sender",
    "Nov 29 21:32:49 mx1 postfix/qmgr[2]: B2ADD2181B9: from=<a@example.org>, status=expired, returned to sender",
    "Nov 29 21:32:50 mx1 postfix/smtp[3]: 1A2B3C4D5E: host gmail-smtp-in.l.google.com[142.250.1.1] said: 421 4.7.0 "
    "Try again later, closing connection. q16si3475662wrs.311 - gsmtp (in reply to end of DATA command)",
    "Nov 29 21:32:50 mx1 postfix/smtp[3]: connect to alt1.gmail-smtp-in.l.google.com[142.250.1.2]:25: Connection "
    "timed out",
    "Nov 29 21:32:51 mx1 postfix/smtpd[1]: disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1",
    # RFC 5424 syslog: the reference path reads these, the fast path must leave them to it.
    "<22>1 2026-11-29T21:32:52.1+00:00 mx1 postfix/smtp 3 - - 1A2B3C4D5E: to=<alice@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[142.250.1.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK "
    "q16si3475662wrs.311 - gsmtp)",
    '<22>1 2026-11-29T21:32:52Z mx1 postfix/smtp 3 - [origin ip="192.0.2.1"] B2ADD2181B9: to=<b@gmail.com>, '
    "relay=gmail-smtp-in.l.google.com[142.250.1.1]:25, delay=1, delays=0/0/0/1, dsn=4.7.28, status=deferred (host "
    "gmail-smtp-in.l.google.com[142.250.1.1] said: 421 4.7.28 Rate limited. q16si3475662wrs.311 - gsmtp (in reply "
    "to end of DATA command))",
    "The mail system",
    "<alice@gmail.com>: host gmail-smtp-in.l.google.com[142.250.1.1] said:",
    "    550-5.1.1 The email account that you tried to reach does not exist. q16si3475662wrs.311 - gsmtp",
    "The email account that you tried to reach does not exist. Please try double-checking the recipient's email",
    "Remote-MTA: dns; gmail-smtp-in.l.google.com",
    "Diagnostic-Code: smtp; 550 5.7.26 Unauthenticated email from example.org is not accepted",
    "Dec  1 00:00:00 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]",
    "",
    "   ",
    "x" * (MAX_LINE_BYTES + 10),
    "Nov 29 21:32:52 mx1 postfix/smtp[3]: 1A2B3C4D5E: to=<a@gmail.com>\x00, relay=aspmx.l.google.com[1.2.3.4]:25",
]


PARTS: dict[str, list[str]] = {
    "stamp": STAMPS, "host": HOSTS, "service": SERVICES, "queue_id": QUEUE_IDS, "recipient": RECIPIENTS,
    "relay": RELAYS, "fields": FIELDS, "status": STATUSES, "accepted": ACCEPTED, "verb": ["said",
    "refused to talk to me", "told"], "said_host": ["{relay}", "other.example", "{relay} "], "after": AFTER,
    "session_id": SESSION_IDS, "end": ["", "\r", " ", ")", " extra"],
}  # fmt: skip
"""The parts of an outcome line: the first of each is Postfix's usual, the others are what the fast path must
either read as the parser does or leave to it."""


def outcome(reply: str = "421 4.7.0 Try again later, closing connection.", **parts: str) -> str:
    """An outcome line from its parts (the usual ones unless given)."""
    p = {name: choices[0] for name, choices in PARTS.items()} | parts
    if p["status"] == "sent":
        detail = p["accepted"].format(sid=p["session_id"])
    else:
        said_host = p["said_host"].format(relay=p["relay"])
        detail = f"host {said_host}[142.250.1.1] {p['verb']}: {reply} {p['session_id']} - gsmtp{p['after']}"
    return (
        f"{p['stamp']} {p['host']} {p['service']}[4092]: {p['queue_id']}: to=<{p['recipient']}>, "
        f"relay={p['relay']}[142.250.1.1]:25{p['fields']}, status={p['status']} ({detail}){p['end']}"
    )


HOSTILE = [
    outcome(**{name: value, "status": status})
    for status in ("sent", "deferred")
    for name, choices in PARTS.items()
    if name != "status"
    for value in choices[1:]
] + [outcome(status=status) for status in STATUSES]
"""Every outcome line that differs from Postfix's usual one in one part, accepted and deferred."""


READABLE = [line for line in BETWEEN if "\x00" not in line and len(line) <= MAX_LINE_BYTES]
"""The other lines that leave the fast path on: a block with a NUL byte or an overlong line is read line by line."""
AMONG_OTHERS = [line for i, outcome in enumerate(HOSTILE) for line in (outcome, READABLE[i % len(READABLE)])]
"""The hostile outcome lines, each followed by another line of a mail log (an expiry of a message Google deferred
among them)."""


def outcome_line(rnd: random.Random) -> str:
    """An outcome line at a Google relay in Postfix's usual layout, or with one or two parts altered (drawn
    uniformly: hypothesis's own draws favour the first choices)."""
    parts = {
        name: rnd.choice(PARTS[name][1:]) for name in rnd.sample(list(PARTS), rnd.choice((0, 0, 1, 1, 2)))
    }
    if "status" not in parts:
        parts["status"] = rnd.choice(["sent", "sent", "deferred", "bounced"])
    if "session_id" not in parts:
        parts["session_id"] = rnd.choice(SESSION_IDS[:2])
    text = " ".join(format_reply(rnd.choice(CORPUS), "SID"))
    text = text.removesuffix(" SID - gsmtp").removesuffix(" - gcdp SID - gsmtp")
    if rnd.random() < 0.1:
        text = rnd.choice(ODDITIES) + text + rnd.choice(ODDITIES)
    return outcome(text, **parts)


OTHERS = [*BETWEEN, *(row["text"] for row in SHAPES)]


@st.composite
def logs(draw: st.DrawFn) -> list[str]:
    """Outcome lines among the other lines of a mail log: Postfix's, free text, the shapes corpus, hostile ones."""
    rnd = draw(st.randoms(use_true_random=False))
    size = draw(st.integers(1, 60))
    kinds = (
        outcome_line,
        lambda r: r.choice(HOSTILE),
        lambda r: r.choice(READABLE),
        lambda r: r.choice(OTHERS),
    )
    return [rnd.choice(kinds)(rnd) for _ in range(size)]


def blocks_of(text: bytes, cuts: list[int]) -> Iterator[bytes]:
    """The text in blocks of whole lines, cut after the lines that `cuts` point into (as a reader hands them)."""
    start = 0
    for cut in sorted(set(cuts)):
        end = text.find(b"\n", min(cut, len(text)))
        if end < 0 or end < start:
            continue
        yield text[start : end + 1]
        start = end + 1
    if start < len(text):
        yield text[start:]


def expanded(results: list[object]) -> list[object]:
    out: list[object] = []
    for result in results:
        if isinstance(result, Accepted):
            assert result.count == len(list(result.events())) > 0
            out.extend(result.events())
        elif isinstance(result, Refused):
            out.append(result.event())
        else:
            assert isinstance(result, Event | Skipped)
            out.append(result)
    return out


def differences(text: bytes, cuts: list[int], **analyser: object) -> list[str]:
    """Where the fast path and the reference path part on one log: empty when they agree event by event."""
    reference = Analyser(RULES, now=NOW, **analyser)  # type: ignore[arg-type]
    fast = Analyser(RULES, now=NOW, **analyser)  # type: ignore[arg-type]
    found: list[str] = []
    # `report` counts the fast path's results as they come (runs, refusals by template), not their events.
    wanted, counted = Report(rules=RULES), Report(rules=RULES)
    for number, block in enumerate([*blocks_of(text, cuts), None]):
        want = reference.analyse_block(block) if block is not None else reference.flush()
        got = fast.summarise_block(block) if block is not None else fast.flush()
        for result in want[1]:
            if isinstance(result, Event):
                wanted.add(result)
        for result in got[1]:
            if isinstance(result, Refused):
                counted.add_refused(result)
            elif isinstance(result, Accepted):
                counted.add_accepted(result)
            elif isinstance(result, Event):
                counted.add(result)
        if want[0] != got[0]:
            found.append(f"block {number}: {want[0]} lines read, fast path says {got[0]}")
        events = expanded(list(got[1]))
        for index, (a, b) in enumerate(zip(want[1], events, strict=False)):
            if a != b:
                found.append(f"block {number}, result {index}:\n  reference {a}\n  fast      {b}")
        if len(want[1]) != len(events):
            found.append(f"block {number}: {len(want[1])} results, fast path gives {len(events)}")
    if reference.memory() != fast.memory():
        found.append("join memory differs")
    if wanted.as_json() != counted.as_json():
        found.append(f"reports differ:\n  reference {wanted.as_json()}\n  fast      {counted.as_json()}")
    return found


def as_log(lines: list[str], crlf: bool = False) -> bytes:
    return ("\r\n" if crlf else "\n").join(lines).encode("utf-8") + b"\n"


GENERATED = {"lines": logs(), "cuts": st.lists(st.integers(0, 20_000), max_size=4), "crlf": st.booleans()}


def gate(how: settings) -> Callable[[], None]:
    """The differential test on generated logs, run as `how` says."""

    @given(**GENERATED)
    @how
    def same_on_generated(lines: list[str], cuts: list[int], crlf: bool) -> None:
        text = as_log(lines, crlf=crlf and len(lines) % 3 == 0)
        assert differences(text, cuts) == []

    return same_on_generated


test_fast_path_gives_the_reference_events_on_generated_logs = gate(SETTINGS)


def test_fast_path_gives_the_reference_events_on_every_hostile_outcome_line() -> None:
    for lines in (HOSTILE, [x for line in HOSTILE for x in (line, BETWEEN[0], line)], AMONG_OTHERS):
        text = as_log(lines)
        for cuts in ([], [len(text) // 2], list(range(0, len(text), 1500))):
            assert differences(text, cuts) == []


@given(lines=logs(), cuts=st.lists(st.integers(0, 20_000), max_size=3))
@settings(SETTINGS, max_examples=15)
def test_fast_path_agrees_with_a_forced_postfix_format_and_user_hosts(
    lines: list[str], cuts: list[int]
) -> None:
    text = as_log(lines)
    assert differences(text, cuts, log_format="postfix", google_hosts=("mx.example.net",)) == []


def test_fast_path_agrees_on_the_real_postfix_fixtures() -> None:
    for name in ("postfix.log", "postfix-maillog.log", "postfix-iso.log"):
        text = (TESTS / "fixtures" / "logs" / name).read_bytes()
        for cuts in ([], [1000, 5000, 20_000], list(range(0, len(text), 777))):
            assert differences(text, cuts) == [], name


def test_fast_path_agrees_on_the_benchmark_log_with_a_month_and_year_change(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from bench.generate import generate

    postfix, exim = tmp_path / "postfix.log", tmp_path / "exim.log"
    generate(postfix, exim, 6000, 7)
    lines = postfix.read_bytes().split(b"\n")
    # Move the second half to a new month and the last quarter to a new year: the clock's year rule at work.
    half, quarter = len(lines) // 2, 3 * len(lines) // 4
    moved = lines[:half] + [re.sub(rb"^Nov 2\d", b"Dec 31", x) for x in lines[half:quarter]]
    moved += [re.sub(rb"^Nov 2\d", b"Jan  1", x) for x in lines[quarter:]]
    text = b"\n".join(moved)
    assert differences(text, [len(text) // 3, len(text) // 2]) == []
    assert b"relay=gmail-smtp-in.l.google.com" in text  # the fast path had lines to read


def test_the_fast_path_reads_most_outcome_lines_itself() -> None:
    """Not a vacuous gate: on an ordinary log, the fast path reads the accepted mail as Accepted runs and serves
    refusals from vouched templates, so the comparison above compares two different readings."""
    text = (TESTS / "fixtures" / "logs" / "postfix.log").read_bytes()
    analyser = Analyser(RULES, now=NOW)
    _, results = analyser.summarise_block(text)
    accepted = sum(r.count for r in results if isinstance(r, Accepted))
    assert accepted == text.count(b"status=sent (250 2.0.0 OK")
    fast = analyser._fast
    assert fast is not None
    assert any(t.vouched for t in fast._templates.values())


# -- the gate catches a fast path that reads a line otherwise than the parser --


def broken(
    monkeypatch: pytest.MonkeyPatch, name: str, old: bytes = b"", new: bytes = b"", flags: int = 0
) -> None:
    """Replaces one of the fast path's patterns by a wrong one."""
    pattern: re.Pattern[bytes] = getattr(fastpath, name)
    assert old in pattern.pattern
    wrong = re.compile(pattern.pattern.replace(old, new), pattern.flags | flags)
    assert wrong != pattern
    monkeypatch.setattr(fastpath, name, wrong)


def caught() -> bool:
    """Whether the gate fails: on the hostile lines, and on generated logs (without shrinking the example it finds,
    which would only cost time)."""
    if not differences(as_log(HOSTILE), []) and not differences(as_log(AMONG_OTHERS), []):
        return False
    quick = settings(SETTINGS, max_examples=500, phases=[Phase.generate], database=None)
    try:
        gate(quick)()
    except AssertionError:
        return True
    return False


def test_gate_catches_a_fast_path_that_takes_upper_case_relays(monkeypatch: pytest.MonkeyPatch) -> None:
    # The parser lower-cases a relay's name; a fast path that took 'ASPMX.L.GOOGLE.COM' as it stands would not.
    broken(monkeypatch, "OUTCOME", flags=re.IGNORECASE)
    assert caught()


def test_gate_catches_a_fast_path_that_lets_a_recipient_hold_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 'relay=' or ', status=' inside a recipient moves what the parser reads; a loose recipient rule misses that.
    broken(monkeypatch, "OUTCOME", rb"(?P<rcpt>[!-;?-Z\\\]-~]{1,254})", rb"(?P<rcpt>[^>\n]{1,254})")
    assert caught()


def test_gate_catches_a_fast_path_that_calls_a_delivering_service_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A line of a service that delivers (smtp) taken for one that never does would vanish from the results.
    broken(monkeypatch, "OUTCOME", b"(?P<quiet>", b"(?P<quiet>smtp|")
    assert caught()


def test_gate_catches_a_fast_path_that_takes_any_reply_of_accepted_mail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A '[' in the reply can hide a service tag (the parser then reads no delivery), and a line that does not end
    # with the reply's parenthesis is read otherwise: the pattern checks both before it takes accepted mail.
    broken(monkeypatch, "OUTCOME", rb"(?=[^\[]+\)\Z)")
    assert caught()


def test_gate_catches_a_fast_path_that_calls_every_qmgr_line_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    # qmgr's 'status=expired' line of a message Google deferred is an expiry: it must reach the join.
    broken(monkeypatch, "OUTCOME", b"(?P<quiet>", b"(?P<quiet>qmgr|")
    assert caught()


def test_gate_passes_the_fast_path_as_it_is() -> None:
    assert not differences(as_log(HOSTILE), [])
    assert not differences(as_log(AMONG_OTHERS), [])


def test_daemon_counts_a_backlog_read_by_the_fast_path_as_it_counts_lines_appended_one_by_one(
    tmp_path: Path,
) -> None:
    """The daemon's ingest takes big blocks (a backlog) through the fast path and small appends through the
    line-by-line path: the metrics, the consecutive-refusal count, the recent refusals and the Google domains
    learnt come out the same either way."""
    sys.path.insert(0, str(REPO))
    from bench.generate import generate

    postfix = tmp_path / "postfix.log"
    generate(postfix, tmp_path / "exim.log", 4000, 11)
    text = postfix.read_bytes() + as_log(HOSTILE)
    lines = text.split(b"\n")[:-1]

    def ingested(
        blocks: list[bytes], by_domain: bool = True
    ) -> tuple[dict[str, object], dict[str, object], int]:
        metrics = Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS, clock=lambda: NOW)
        domains = GoogleDomains()
        learn_domains = domains.learn_domains if by_domain else None
        ingest = Ingest(
            metrics, lambda: Analyser(RULES, now=NOW), learn=domains.learn, learn_domains=learn_domains
        )
        for block in blocks:
            ingest.block("mail.log", block, len(block), None)
        state = dump(metrics)
        state["recent"] = list(metrics.recent_rejections)
        return state, domains.state(), metrics.consecutive

    one_by_one = ingested([line + b"\n" for line in lines])
    backlog_blocks = [b"\n".join(lines[i : i + 700]) + b"\n" for i in range(0, len(lines), 700)]
    assert min(len(b) for b in backlog_blocks[:-1]) >= FAST_PATH_BYTES
    assert ingested(backlog_blocks) == one_by_one
    assert ingested(backlog_blocks, by_domain=False) == one_by_one
    assert one_by_one[0]["deliveries"]
    assert len(one_by_one[1]["domains"]) >= 4  # the Workspace domains
