"""Docker's json-file logs and Kubernetes' CRI logs read as log formats: the envelope taken off each line, parts
joined per stream, the MTA's line inside recognised as if it had been written to a plain log."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.containers import TIME, cri, cri_entry, docker, docker_entry
from exporter import mta
from exporter.analyse import MAX_LINE_BYTES, Analyser, Skipped
from exporter.events import Event
from exporter.mta import containers
from exporter.rules import load_rules
from exporter.sources import generations

RULES = load_rules([])
LOGS = REPO / "tests" / "fixtures" / "logs"
POSTFIX = (LOGS / "postfix.log").read_bytes()
"""A real Postfix's log: what Postfix in a container writes to its stdout (`maillog_file = /dev/stdout`)."""
DMARC = (
    b"Dec  3 13:57:16 mx1 postfix/smtp[9001]: 0F8D71680EE: to=<jane.doe@gmail.com>, relay=gmail-smtp-in.l."
    b"google.com[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=5.7.26, status=bounced (host gmail-smtp-in.l."
    b"google.com[192.0.2.7] said: 550-5.7.26 Unauthenticated email from example.org is not accepted due to "
    b"550-5.7.26 domain's DMARC policy. 550 5.7.26 q16si3475662wrs.311 - gsmtp (in reply to end of DATA "
    b"command))\n"
)
NOISE = b"Dec  3 13:57:16 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]\n"
DSN = (
    b"Final-Recipient: rfc822; jane.doe@gmail.com\n"
    b"Diagnostic-Code: smtp; 550-5.7.26 Unauthenticated email from example.org is not accepted due to\n"
    b"    550-5.7.26 domain's DMARC policy. 550 5.7.26 q16si3475662wrs.311 - gsmtp\n"
)
"""A bounce notice's fields, printed by an application to its stdout: free text of several lines, no time."""


def results(data: bytes, *, log_format: str | None = None, cuts: list[int] | None = None) -> list[tuple]:
    """(line number, outcome) of each result, the data read in blocks of whole lines cut after the given lines."""
    analyser = Analyser(RULES, log_format=log_format, now=1_780_000_000)
    lines = data.splitlines(keepends=True)
    bounds = [0, *sorted(set(c for c in (cuts or []) if 0 < c < len(lines))), len(lines)]
    found: list[tuple] = []
    seen = 0
    for start, end in itertools.pairwise(bounds):
        numbers: list[int] = []
        count, batch = analyser.analyse_block(b"".join(lines[start:end]), numbers)
        found += [(seen + n + 1, outcome(r)) for n, r in zip(numbers, batch, strict=True)]
        seen += count
    numbers = []
    count, batch = analyser.flush(numbers)
    found += [(seen + n + 1, outcome(r)) for n, r in zip(numbers, batch, strict=True)]
    assert seen + count == len(lines)
    return sorted(found)  # a damaged envelope's result comes first in its block


def outcome(result: Event | Skipped) -> tuple:
    if isinstance(result, Skipped):
        return ("skipped", result.reason)
    d, reply, verdict = result.delivery, result.reply, result.verdict
    return (d.mta, d.status, d.queue_id, reply.code if reply else None, verdict.reason if verdict else None)


def timed(data: bytes, cuts: list[int] | None = None) -> list[tuple[int, float | None]]:
    """(line number, time) of each event."""
    analyser = Analyser(RULES, now=1_780_000_000)
    lines = data.splitlines(keepends=True)
    bounds = [0, *sorted(set(c for c in (cuts or []) if 0 < c < len(lines))), len(lines)]
    found: list[tuple[int, float | None]] = []
    seen = 0
    for start, end in [*itertools.pairwise(bounds), (0, 0)]:
        numbers: list[int] = []
        if (start, end) == (0, 0):
            count, batch = analyser.flush(numbers)
        else:
            count, batch = analyser.analyse_block(b"".join(lines[start:end]), numbers)
        found += [
            (seen + n + 1, r.delivery.timestamp)
            for n, r in zip(numbers, batch, strict=True)
            if isinstance(r, Event)
        ]
        seen += count
    return found


FIXTURES = sorted(p.name for p in LOGS.glob("*.log"))


@pytest.mark.parametrize("name", FIXTURES)
def test_a_container_log_gives_the_events_of_the_plain_log_on_the_same_lines(name: str) -> None:
    plain_log = (LOGS / name).read_bytes()
    plain = results(plain_log)
    assert len(plain) > 10
    assert results(docker(plain_log)) == plain
    assert results(cri(plain_log)) == plain
    assert (
        results(cri(plain_log, stream="stderr")) == plain
    )  # Exim logging to stderr (log_file_path = :stderr)


def test_docker_escapes_what_the_driver_escapes() -> None:
    assert b"\\u003cnews@example.org\\u003e" in docker(POSTFIX)  # what Docker writes for <news@example.org>


def test_cri_parts_are_joined_and_numbered_by_their_first_line() -> None:
    plain = results(POSTFIX)
    parted = results(cri(POSTFIX, part=40))
    assert [o for _, o in parted] == [o for _, o in plain]
    lines = cri(POSTFIX, part=40).splitlines()
    for number, _ in parted:  # each result's line is where its MTA line began: after an F, or the first line
        assert number == 1 or lines[number - 2].split(b" ", 3)[2] == b"F"


def test_docker_parts_of_a_long_line_are_joined() -> None:
    parted = docker(NOISE + DMARC + NOISE, part=len(DMARC) // 4 + 1)
    assert parted.count(b"\n") == 2 + 4  # the reply line took four json-file lines
    assert results(parted) == [(2, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy"))]


def test_parts_are_joined_per_stream_when_stdout_and_stderr_interleave() -> None:
    first, rest = DMARC[:120], DMARC[120:-1]
    data = (
        cri_entry(first, tag="P", stream="stderr")
        + cri_entry(NOISE[:-1], stream="stdout")
        + cri_entry(rest, tag="F", stream="stderr")
    )
    assert [o for _, o in results(data)] == [("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=6),
    envelope=st.sampled_from(["docker", "cri"]),
)
def test_any_cut_into_blocks_gives_the_same_results(cuts: list[int], envelope: str) -> None:
    data = (NOISE * 3 + DMARC + NOISE + DSN) * 3
    wrap = docker if envelope == "docker" else cri
    wrapped = b"".join(
        wrap(line, part=70, time=f"2026-12-03T13:57:{n:02d}Z") for n, line in enumerate(data.splitlines(True))
    )
    assert results(wrapped, cuts=cuts) == results(wrapped)
    assert timed(wrapped, cuts) == timed(wrapped)
    assert len(timed(wrapped)) == 6 and all(t is not None for _, t in timed(wrapped))


def test_escaped_unicode_is_decoded_and_an_escaped_nul_skips_only_its_line() -> None:
    accented = DMARC.replace(b"jane.doe", "jané.dœ".encode())
    emoji = DMARC.replace(b"0F8D71680EE", b"0F8D71680EF").replace(b"DMARC policy", "DMARC policy 🙂".encode())
    lone = docker_entry(DMARC.replace(b"0F8D71680EE", b"0F8D71680E0")).replace(b"mx1", b"mx\\ud800")
    pair = docker_entry(emoji).replace("🙂".encode(), b"\\ud83d\\ude42")  # as writers that escape all put it
    lines = [
        docker_entry(accented),
        docker_entry(NOISE[:-1] + b"\x00\n"),
        docker_entry(DMARC.replace(b"gsmtp", b"gsmtp\x00")),
        pair,
        lone,  # an escaped lone surrogate, no character: read as U+FFFD
    ]
    assert b"\\u0000" in lines[1]
    assert results(b"".join(lines)) == [
        (1, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")),
        (2, ("skipped", "not_text")),
        (3, ("skipped", "not_text")),
        (4, ("postfix", "bounced", "0F8D71680EF", "550", "dmarc_policy")),
        (5, ("postfix", "bounced", "0F8D71680E0", "550", "dmarc_policy")),
    ]


@pytest.mark.parametrize(
    "damaged",
    [
        b'{"log":"Dec  3 13:57:16 mx1 postfix/smtp[9001]: 0F8D7',  # cut by a crash
        b'{"log":12,"stream":"stdout","time":"2026-12-03T13:57:16Z"}',  # a log that is no text
        b'{"log":"x\\q","stream":"stdout","time":"2026-12-03T13:57:16Z"}',  # a bad escape
        b'{"log":"\xff\xfe","stream":"stdout","time":"2026-12-03T13:57:16Z"}',  # bytes that are not UTF-8
        b'{"stream":["stdout"],"log":"x\\n","time":"2026-12-03T13:57:16Z"}',
    ],
)
def test_a_damaged_json_line_is_skipped_and_counted_and_the_next_line_is_read(damaged: bytes) -> None:
    data = docker(NOISE) + damaged + b"\n" + docker(DMARC)
    assert results(data) == [
        (2, ("skipped", "unparseable")),
        (3, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")),
    ]


def test_a_gigantic_line_in_parts_is_skipped_as_too_long_and_the_rest_of_it_dropped() -> None:
    giant = b"Dec  3 13:57:16 mx1 postfix/smtp[1]: " + b"gsmtp " * (MAX_LINE_BYTES // 3) + b"\n"
    for wrap in (cri, docker):
        data = wrap(NOISE + giant + DMARC, part=16 * 1024)
        assert data.count(b"\n") == 2 + 5
        assert results(data) == [
            (2, ("skipped", "too_long")),
            (7, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")),
        ]


def test_a_gigantic_json_file_line_cut_by_the_reader_is_skipped_as_too_long() -> None:
    cut = docker_entry(b"<" * (MAX_LINE_BYTES // 5) + b"\n")[: MAX_LINE_BYTES + 1]  # what the reader hands on
    assert results(cut + b"\n" + docker(DMARC)) == [
        (1, ("skipped", "too_long")),
        (2, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")),
    ]


def test_a_part_without_its_last_part_at_the_end_of_the_stream_is_analysed_as_it_is() -> None:
    data = cri_entry(NOISE[:-1]) + cri_entry(DMARC[:-1], tag="P")
    assert results(data) == [(2, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy"))]


def test_a_part_held_is_saved_with_the_memory_and_joined_after_a_restart() -> None:
    before = Analyser(RULES, now=1_780_000_000)
    count, found = before.analyse_block(cri_entry(DMARC[:150], tag="P"))
    assert (count, found) == (1, [])
    saved = json.loads(json.dumps(before.memory()))
    after = Analyser(RULES, now=1_780_000_000)
    after.restore_memory(saved)
    count, found = after.analyse_block(cri_entry(DMARC[150:-1]))
    assert count == 1
    assert [outcome(r) for r in found] == [("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")]


@pytest.mark.parametrize(
    "bad",
    [
        {"parts": {"stdin": "x"}},
        {"parts": {"stdout": "x" * (MAX_LINE_BYTES + 1)}},
        {"parts": {"stdout": 1}},
        {"dropping": "stdout"},
        {"parts": {"stdout": "x"}, "times": {"stdout": 5}},
        {"parts": {"stdout": "\udfff"}},
        [],
    ],
)
def test_a_bad_saved_part_is_refused_and_changes_nothing(bad: object) -> None:
    analyser = Analyser(RULES, now=1_780_000_000)
    analyser.analyse_block(cri_entry(DMARC[:150], tag="P"))
    memory = analyser.memory()
    with pytest.raises(ValueError):
        analyser.restore_memory({**memory, "containers": bad})
    assert analyser.memory() == memory


def test_a_plain_log_of_json_events_is_not_taken_for_docker() -> None:
    event = b'{"event":"bounce","response":"550-5.7.26 Unauthenticated email is not accepted - gsmtp"}\n'
    assert [o[0] for _, o in results(event)] == ["generic"]
    # An application's own JSON lines that start like the driver's but carry no time: plain text, line by line.
    own = b'{"log":"550-5.7.26 Unauthenticated email is not accepted - gsmtp","level":"error"}\n'
    assert [(n, o[0]) for n, o in results(own * 3)] == [(1, "generic"), (2, "generic"), (3, "generic")]


def test_a_named_envelope_requires_it_of_every_line() -> None:
    data = NOISE + cri(DMARC) + docker(DMARC)
    assert results(data, log_format="cri") == [
        (1, ("skipped", "unparseable")),
        (2, ("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")),
        (3, ("skipped", "unparseable")),
    ]
    assert [o for _, o in results(data)] == [("postfix", "bounced", "0F8D71680EE", "550", "dmarc_policy")] * 2
    assert "docker" in mta.FORMATS and "cri" in mta.FORMATS


def test_a_forced_mta_format_reads_its_container_logs_too() -> None:
    assert [o[0] for _, o in results(cri(DMARC), log_format="postfix")] == ["postfix"]


def test_kubernetes_and_docker_rotations_are_generations_in_order() -> None:
    names = [
        "0.log", "0.log.20261203-140200", "0.log.20261203-135700.gz", "0.log.20261203-135200.gz",
        "0.log.20261203-140200.tmp", "1.log",
    ]  # fmt: skip
    assert generations.oldest_first("0.log", names) == [
        "0.log.20261203-135200.gz", "0.log.20261203-135700.gz", "0.log.20261203-140200",
    ]  # fmt: skip
    docker_names = ["abc-json.log", "abc-json.log.1", "abc-json.log.3.gz", "abc-json.log.2"]
    assert generations.oldest_first("abc-json.log", docker_names) == [
        "abc-json.log.3.gz", "abc-json.log.2", "abc-json.log.1",
    ]  # fmt: skip


def _exporter(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, timeout=120, check=False, cwd=REPO
    )


def test_classify_and_report_read_container_logs_and_a_line_split_by_a_rotation(tmp_path: Path) -> None:
    rotated = tmp_path / "0.log.20261203-135700.gz"
    live = tmp_path / "0.log"
    rotated.write_bytes(gzip.compress(cri(NOISE) + cri_entry(DMARC[:150], tag="P")))
    live.write_bytes(cri_entry(DMARC[150:-1]) + cri(NOISE) + docker(DMARC))
    done = _exporter("report", "--format", "json", str(rotated), str(live))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["lines"] == 5
    assert report["deliveries"]["bounced"] == 2
    # classify numbers each file's lines on its own: the end of the split line is Gmail's reply in free text.
    done = _exporter("classify", str(live))
    assert done.returncode == 0, done.stderr
    assert [(o["line"], o["mta"], o["reason"]) for o in map(json.loads, done.stdout.splitlines())] == [
        (1, "generic", "dmarc_policy"),
        (3, "postfix", "dmarc_policy"),
    ]


def times(data: bytes) -> list[float | None]:
    analyser = Analyser(RULES, now=1_780_000_000)
    _, found = analyser.analyse_block(data)
    found += analyser.flush()[1]
    return [r.delivery.timestamp for r in found if isinstance(r, Event)]


def test_a_line_without_a_time_of_its_own_has_the_runtimes_time() -> None:
    bare = DMARC.split(b" mx1 ", 1)[1]  # postfix/smtp[9001]: ... as an MTA logging to stdout without syslog
    at = 1_796_306_236.123456  # the runtime's 2026-12-03T13:57:16.123456Z
    for wrap in (cri, docker):
        data = wrap(bare, time="2026-12-03T13:57:16.123456Z") + wrap(DMARC, time="2026-12-03T20:00:00Z")
        found = times(data)
        assert found[0] == pytest.approx(at)
        assert time.localtime(found[1])[1:6] == (12, 3, 13, 57, 16)  # the MTA's own (local) time wins
    parted = cri_entry(bare[:50], tag="P", time="2026-12-03T13:57:16.123456Z") + cri_entry(
        bare[50:-1], time="2026-12-03T13:58:00Z"
    )
    assert times(parted) == [pytest.approx(at)]  # a line in parts: when it began
    assert times(cri_entry(bare[:-1], tag="P", time="2026-12-03T13:57:16.123456Z")) == [pytest.approx(at)]


def test_the_time_of_a_part_held_across_a_restart_is_kept() -> None:
    bare = DMARC.split(b" mx1 ", 1)[1]
    before = Analyser(RULES, now=1_780_000_000)
    before.analyse_block(cri_entry(bare[:150], tag="P", time="2026-12-03T13:57:16.5Z"))
    after = Analyser(RULES, now=1_780_000_000)
    after.restore_memory(json.loads(json.dumps(before.memory())))
    _, found = after.analyse_block(cri_entry(bare[150:-1], time="2026-12-03T14:00:00Z"))
    assert [r.delivery.timestamp for r in found if isinstance(r, Event)] == [1_796_306_236.5]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        st.sampled_from(list('\\"<>&\tu003cen ab\u00e9\u2028\U0001f642\x01')) | st.characters(codec="utf-8"),
        max_size=40,
    ),
    whole=st.booleans(),
)
def test_a_json_file_line_gives_back_exactly_the_text_written(text: str, whole: bool) -> None:
    data = text.replace("\n", " ").encode()
    line = docker_entry(data + b"\n" if whole else data, stream="stderr").rstrip(b"\n")
    if not data and not whole:
        return  # the driver writes no empty part
    assert containers.docker_fields(line) == ("stderr", data, whole, TIME.encode())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # containerd: RFC 3339 with nanoseconds, trailing zeros trimmed
        (b"2026-12-03T13:57:16.1Z stdout F text", ("stdout", b"text", True, b"2026-12-03T13:57:16.1Z")),
        (b"2026-12-03T13:57:16Z stderr P part", ("stderr", b"part", False, b"2026-12-03T13:57:16Z")),
        # CRI-O (conmon): the node's local offset
        (
            b"2026-12-03T14:57:16.123456789+01:00 stdout F text",
            ("stdout", b"text", True, b"2026-12-03T14:57:16.123456789+01:00"),
        ),
        (b"2026-12-03T13:57:16Z stdout F ", ("stdout", b"", True, b"2026-12-03T13:57:16Z")),  # an empty line
        (b"2026-12-03T13:57:16Z stdout F", ("stdout", b"", True, b"2026-12-03T13:57:16Z")),
        (b"2026-12-03T13:57:16Z stdout P:X a b", ("stdout", b"a b", False, b"2026-12-03T13:57:16Z")),
        (b"2026-12-03T13:57:16Z stdin F text", None),
        (b"2026-12-03T13:57:16 stdout F text", None),  # no zone: not a runtime's time
        (b"2026-12-03T13:57:16Z stdout f text", None),
        (b"2026-11-29T23:09:36.704760+00:00 vm postfix/smtp[1]: x", None),  # rsyslog's RFC 3339: plain
    ],
)
def test_cri_line_shapes(line: bytes, expected: tuple[str, bytes, bool, bytes] | None) -> None:
    assert containers.cri_fields(line) == expected


def test_cri_o_times_with_an_offset_are_read() -> None:
    bare = DMARC.split(b" mx1 ", 1)[1]
    assert times(cri(bare, time="2026-12-03T14:57:16.5+01:00")) == [1_796_306_236.5]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (  # `docker run --log-opt tag=...` or labels: attrs before time
            b'{"log":"text \\u003cx\\u003e\\n","stream":"stdout","attrs":{"tag":"mta"},"time":"2026-12-03T13:57:16Z"}',
            ("stdout", b"text <x>", True, b"2026-12-03T13:57:16Z"),
        ),
        (
            b'{"stream":"stdout","time":"2026-12-03T13:57:16Z"}',
            ("stdout", b"", False, b"2026-12-03T13:57:16Z"),
        ),
        (b'{"log":"part","stream":"stderr","time":"t"}', ("stderr", b"part", False, b"t")),
        (b'{"log":"x\\n","stream":"stdout"}', containers.NOT_DOCKER),  # no time: an application's own JSON
        (b'{"log":"x\\n","stream":"stdout","time":"t"', None),  # cut
        (b'{"log":"x\\n","stream":"stdout","time":1}', None),
    ],
)
def test_json_file_line_shapes(line: bytes, expected: tuple[str, bytes, bool, bytes] | None) -> None:
    assert containers.docker_fields(line) == expected


def test_an_empty_json_file_part_holds_nothing() -> None:
    unwrapper = containers.Unwrapper(None, MAX_LINE_BYTES)
    unwrapper.unwrap(b'{"stream":"stdout","time":"2026-12-03T13:57:16Z"}\n')
    assert unwrapper.state() == {}
    assert not unwrapper.wrapped(NOISE)
