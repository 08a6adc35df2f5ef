"""`classify`, `report` and `check-rules` as a user runs them: real processes, real files."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from exporter import config
from exporter.cli import build_parser

LOGS = REPO / "tests" / "fixtures" / "logs"
CLASSIFY_KEYS = {
    "line", "mta", "scope", "status", "code", "enhanced_code", "category", "reason", "severity", "origin",
    "google_host",
}  # fmt: skip


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def classify(*args: str, stdin: bytes | None = None) -> list[dict[str, object]]:
    done = run("classify", *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


DMARC_LINE = (
    b"Nov 29 21:32:49 mx1 postfix/smtp[9001]: 0F8D71680EE: to=<jane.doe@gmail.com>, relay=gmail-smtp-in.l."
    b"google.com[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=5.7.26, status=bounced (host gmail-smtp-in.l."
    b"google.com[192.0.2.7] said: 550-5.7.26 Unauthenticated email from example.org is not accepted due to "
    b"550-5.7.26 domain's DMARC policy. 550 5.7.26 q16si3475662wrs.311 - gsmtp (in reply to end of DATA "
    b"command))\n"
)
NOISE = b"Nov 29 21:32:49 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]\n"


def test_classify_from_stdin_prints_the_contract_and_only_google_lines() -> None:
    objects = classify(stdin=NOISE + DMARC_LINE + NOISE)
    assert len(objects) == 1
    obj = objects[0]
    assert obj.keys() >= CLASSIFY_KEYS
    assert {k: obj[k] for k in sorted(CLASSIFY_KEYS)} == {
        "category": "authentication",
        "code": "550",
        "enhanced_code": "5.7.26",
        "google_host": "gmail-smtp-in.l.google.com",
        "line": 2,
        "mta": "postfix",
        "origin": "gsmtp",
        "reason": "dmarc_policy",
        "scope": "recipient",
        "severity": "permanent",
        "status": "bounced",
    }
    assert "jane.doe" not in json.dumps(obj)


def test_classify_accepted_delivery_has_null_category() -> None:
    line = (
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
        b"[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 OK  1795988790 "
        b"jemjhxwmvm4d7puwewyy.985 - gsmtp)\n"
    )
    (obj,) = classify(stdin=line)
    assert (obj["status"], obj["category"], obj["reason"], obj["severity"], obj["code"]) == (
        "sent",
        None,
        None,
        None,
        "250",
    )


def test_classify_counts_on_real_postfix_log_match_report(tmp_path: Path) -> None:
    log = LOGS / "postfix.log"
    objects = classify(str(log))
    recipient = [o for o in objects if o["scope"] == "recipient"]
    by_status: dict[str, int] = {}
    for o in recipient:
        by_status[str(o["status"])] = by_status.get(str(o["status"]), 0) + 1
    by_category: dict[str, int] = {}
    for o in recipient:
        if o["category"]:
            by_category[str(o["category"])] = by_category.get(str(o["category"]), 0) + 1

    gz = tmp_path / "postfix.log.1.gz"
    half = log.read_bytes().splitlines(keepends=True)
    gz.write_bytes(gzip.compress(b"".join(half[: len(half) // 2])))
    rest = tmp_path / "postfix.log"
    rest.write_bytes(b"".join(half[len(half) // 2 :]))
    done = run("report", "--format", "json", str(gz), str(rest))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["lines"] == len(half)
    assert {k: v for k, v in report["deliveries"].items() if v} == by_status
    assert report["rejections_by_category"] == by_category
    assert sum(r["count"] for r in report["rejections"]) == sum(by_category.values())
    for row in report["rejections"]:
        assert "@gmail.com" not in row["example"] or "***@gmail.com" in row["example"]


def test_report_text_names_categories_reasons_and_codes() -> None:
    done = run("report", str(LOGS / "postfix.log"))
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    for needle in (
        "Deliveries to Google",
        "Rejections by category",
        "authentication",
        "dmarc_policy",
        "5.7.26",
    ):
        assert needle in text


def test_report_holds_no_whole_log_in_memory(tmp_path: Path) -> None:
    # 300 MB of log (with a 100 MB line without newline at the end) read with a peak RSS far below that.
    big = tmp_path / "big.log"
    with open(big, "wb") as out:
        block = (NOISE * 999 + DMARC_LINE) * 200
        for _ in range(10):
            out.write(block)
        out.write(b"x" * 100_000_000)
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's pages across exec.
    code = (
        "import sys; sys.argv = ['exporter', 'report', '--format', 'json', sys.argv[1]];"
        "import exporter.cli as c; rc = c.main();"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
        "print(hwm, file=sys.stderr); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(big)], capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["lines"] == 2_000_001
    assert report["rejections_by_category"] == {"authentication": 2000}
    assert report["skipped_lines"] == {"too_long": 1}
    peak_kib = int(done.stderr.split()[-1])
    assert peak_kib < 60_000, f"peak RSS {peak_kib} KiB"


def test_check_rules_ok_and_bad(tmp_path: Path) -> None:
    ok = run("check-rules")
    assert ok.returncode == 0
    assert ok.stdout.startswith(b"OK: ")
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - reason: my_rule\n    category: spam\n    code: 550\n    phrases: [x]\n")
    done = run("check-rules", str(bad))
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        f"gmail-rejection-exporter: {bad}:5: phrases: 'x' is too short to match reliably (3+ letters)"
    )


def test_classify_with_a_bad_user_rules_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - {reason: a, category: nonsense, code: 550}\n")
    done = run("classify", "--rules.file", str(bad), stdin=b"")
    assert done.returncode == 2
    assert f"{bad}:2: category:" in done.stderr.decode()


def test_report_reads_gzip_bzip2_and_xz_by_their_content_whatever_their_name(tmp_path: Path) -> None:
    log = NOISE + DMARC_LINE + NOISE
    files = {
        "mail.log.1.gz": gzip.compress(log),
        "mail.log.2": bz2.compress(log),  # logrotate with compress and no compressext
        "mail.log.3.bz2": lzma.compress(log),  # named wrongly: the content decides
        "mail.log.4.gz": log,  # a plain file that only looks compressed by name
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    done = run("report", "--format", "json", *(str(tmp_path / name) for name in files))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["lines"], report["rejections_by_category"]) == (12, {"authentication": 4})
    assert [o["line"] for o in classify(*(str(tmp_path / name) for name in files))] == [2, 2, 2, 2]


def test_a_damaged_compressed_file_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    damaged = tmp_path / "mail.log.1.xz"
    damaged.write_bytes(lzma.compress(DMARC_LINE * 100)[:-20])
    for command in ("report", "classify"):
        done = run(command, str(damaged))
        assert done.returncode == 1, done.stderr
        assert done.stderr.decode().startswith("gmail-rejection-exporter: "), done.stderr
        assert b"Traceback" not in done.stderr


def test_offline_commands_check_the_shared_flags_as_run_does() -> None:
    for command in ("classify", "report"):
        done = run(command, "--log.format", "qmail", "-")
        assert done.returncode == 2
        assert done.stderr.decode().strip() == (
            "gmail-rejection-exporter: command line: log.format: must be one of "
            "auto, postfix, sendmail, opensmtpd, exim, generic, docker, cri"
        )
        for host in ("relay example", ".", "..", ".relay.example"):  # a name of no label names no host
            done = run(command, "--google.host", host, "-")
            assert (host, done.returncode) == (host, 2)
            assert "command line: google.hosts: must be host names" in done.stderr.decode()


def test_google_host_flag_names_a_relay_for_every_command(tmp_path: Path) -> None:
    line = DMARC_LINE.replace(b"gmail-smtp-in.l.google.com", b"Relay.Example.NET").replace(b" - gsmtp", b"")
    assert classify(stdin=line) == []
    (obj,) = classify("--google.host", "relay.example.net", stdin=line)
    assert (obj["google_host"], obj["reason"]) == ("relay.example.net", "dmarc_policy")
    log = tmp_path / "mail.log"
    log.write_bytes(line)
    for command in ("run", "check-config"):
        parsed = build_parser(command).parse_args(
            [command, "--google.host", "Relay.Example.NET", "--log.path", str(log)]
        )
        assert config.load(parsed).google_hosts == ("relay.example.net",)
    done = run("check-config", "--google.host", "relay.example.net", "--log.path", str(log))
    assert done.returncode == 0, done.stderr


def test_report_marks_a_cut_example_reply_with_an_ellipsis(tmp_path: Path) -> None:
    sentence = b"550-5.7.26 Please contact the administrator of example.org if this was legitimate mail. "
    long_line = DMARC_LINE.replace(b"550 5.7.26 q16si", sentence * 6 + b"550 5.7.26 q16si", 1)
    examples = {}
    for name, line in (("short", DMARC_LINE), ("long", long_line)):
        log = tmp_path / f"{name}.log"
        log.write_bytes(line)
        done = run("report", "--format", "json", str(log))
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)["rejections"]
        examples[name] = row["example"]
    assert examples["short"] == (
        "Unauthenticated email from example.org is not accepted due to domain's DMARC policy."
    )
    assert len(examples["long"]) <= 300 and examples["long"].endswith("…")
    assert examples["long"][:-1] in (examples["short"] + " " + "Please contact the administrator of "
                                     "example.org if this was legitimate mail. " * 6)  # fmt: skip


def test_a_reader_that_goes_away_ends_report_and_classify_quietly(tmp_path: Path) -> None:
    """`report log | head` and `classify log | head`: once the reader has gone, the command stops writing and
    exits 0 with nothing on stderr, as the filters it is piped into expect (no traceback)."""
    log = tmp_path / "mail.log"
    log.write_bytes(DMARC_LINE * 50 + NOISE)
    for command in (["report"], ["report", "--format", "json"], ["classify"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first byte is written
        try:
            done = subprocess.run(
                [sys.executable, "-m", "exporter", *command, str(log)],
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=120,
                check=False,
            )
        finally:
            os.close(write_end)
        assert (command, done.returncode, done.stderr) == (command, 0, b"")
