"""The queue reader runs a real listing command: a snapshot per listing, failures and timeouts turn success to 0 and
take the queue gauges off /metrics (logged once per cause), and no listing process is ever left behind."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from support import process_running

from exporter.events import Delivery
from exporter.google import GoogleHosts
from exporter.queue.classify import UNANSWERED_KINDS, QueueClassifier
from exporter.queue.collector import QueueCollector
from exporter.queue.command import detect, is_sendmail
from exporter.queue.domains import GoogleDomains
from exporter.queue.programs import mta_of_command, split_command
from exporter.queue.reader import QueueReader, QueueSnapshot, build, choose
from exporter.rules import CATEGORIES, load_rules

QUEUES = REPO / "tests" / "fixtures" / "queues"
RULES = load_rules()


def reader(mta: str, argv: list[str], *, timeout: float = 10.0, **kw: object) -> QueueReader:
    classifier = QueueClassifier(RULES, GoogleHosts(), GoogleDomains())
    return QueueReader(mta, argv, classifier, interval=60.0, timeout=timeout, **kw)  # type: ignore[arg-type]


def cat(name: str) -> list[str]:
    return ["cat", str(QUEUES / name)]


def nonzero(counts: object) -> dict[str, int]:
    assert isinstance(counts, dict) or hasattr(counts, "items")
    return {k: v for k, v in counts.items() if v}  # type: ignore[attr-defined]


def test_listing_command_output_becomes_the_snapshot() -> None:
    clock = iter([1796293800.0, 1796293801.0])
    queue = reader("opensmtpd", cat("opensmtpd-show-queue.txt"), clock=lambda: next(clock))
    snap = queue.scrape()
    assert snap.success and snap.error is None
    assert nonzero(snap.recipients) == {"rate_limit": 2, "mailbox_full": 1, "authentication": 1}
    assert nonzero(snap.unanswered) == {"not_tried": 1}
    assert snap.oldest_age_seconds == 1796293800.0 - 1796293781.0
    assert snap.last_success_time == 1796293801.0
    assert queue.snapshot is snap


def metrics_text(queue: QueueReader) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(lambda: queue.snapshot))
    return generate_latest(registry).decode()


def test_collector_serves_every_category_and_kind_and_nothing_else() -> None:
    queue = reader("opensmtpd", cat("opensmtpd-show-queue.txt"), clock=lambda: 1796293800.0)
    queue.scrape()
    text = metrics_text(queue)
    categories = [ln for ln in text.splitlines() if ln.startswith("gmail_queue_recipients{")]
    kinds = [ln for ln in text.splitlines() if ln.startswith("gmail_queue_unanswered_recipients{")]
    assert len(categories) == len(CATEGORIES) and len(kinds) == len(UNANSWERED_KINDS)
    assert 'gmail_queue_recipients{category="rate_limit"} 2.0' in categories
    assert 'gmail_queue_unanswered_recipients{kind="not_tried"} 1.0' in kinds
    assert "gmail_queue_oldest_message_age_seconds 19.0" in text
    assert "gmail_exporter_queue_scrape_success 1.0" in text
    assert "gmail_exporter_queue_last_scrape_timestamp_seconds 1.7962938e+09" in text
    assert "@" not in text.replace("# HELP", "").split("gmail_queue", 1)[1]


def test_failed_listing_drops_the_queue_gauges_and_keeps_the_last_success_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = tmp_path / "listing"
    listing.write_bytes((QUEUES / "opensmtpd-show-queue.txt").read_bytes())
    queue = reader("opensmtpd", ["cat", str(listing)], clock=lambda: 1796293800.0)
    assert queue.scrape().success
    listing.unlink()
    with caplog.at_level(logging.INFO, logger="exporter.queue"):
        for _ in range(3):
            snap = queue.scrape()
    assert not snap.success
    assert snap.error is not None and snap.error.startswith("exit status 1: cat: ")
    assert snap.last_success_time == 1796293800.0
    text = metrics_text(queue)
    assert "gmail_exporter_queue_scrape_success 0.0" in text
    assert "gmail_queue_" not in text
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1  # once per cause, not once per listing
    listing.write_bytes((QUEUES / "opensmtpd-show-queue.txt").read_bytes())
    with caplog.at_level(logging.INFO, logger="exporter.queue"):
        assert queue.scrape().success
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_missing_program_is_a_failed_listing_not_a_crash() -> None:
    snap = reader("postfix", ["/nonexistent/postqueue", "-j"]).scrape()
    assert not snap.success
    assert snap.error == "cannot run /nonexistent/postqueue: No such file or directory"


def test_listing_in_the_wrong_format_is_a_failure_that_says_so() -> None:
    snap = reader("postfix", cat("sendmail-bp-v.txt")).scrape()
    assert not snap.success
    assert snap.error == "nothing in the listing reads as postfix's queue (is --queue.mta right?)"


def wait_dead(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_running(pid):
            return True
        time.sleep(0.05)
    return False


def hanging_from(pids: Path) -> Callable[[], float]:
    """The listing's clock, at 0 until the listing has written its two pids (it then hangs, its helper started):
    its timeout counts from there. Counted from the fork, a listing starved on a busy machine could be ended
    before it wrote them, with nothing left to check. After 30 s without them the clock runs anyway."""
    first_call = time.monotonic()
    hanging: list[float] = []

    def monotonic() -> float:
        if not hanging:
            written = pids.read_text() if pids.exists() else ""
            if written.count("\n") < 2 and time.monotonic() - first_call < 30:
                return 0.0
            hanging.append(time.monotonic())
        return time.monotonic() - hanging[0]

    return monotonic


def test_timed_out_listing_kills_its_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A listing that starts a helper in the background, prints half a line and hangs.
    script = f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; printf 'partial'; sleep 300"
    started = time.monotonic()
    snap = reader("opensmtpd", ["sh", "-c", script], timeout=1.0, monotonic=hanging_from(pids)).scrape()
    assert not snap.success and snap.error == "timed out after 1s"
    assert time.monotonic() - started < 60  # ended by the deadline, not by the listing's own sleep
    for pid in map(int, pids.read_text().split()):
        assert wait_dead(pid), f"process {pid} outlived the timed-out listing"


def test_listing_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"trap '' TERM; sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"
    # Timed out once the listing ignores SIGTERM (the trap comes before the pids).
    snap = reader("opensmtpd", ["sh", "-c", script], timeout=1.0, monotonic=hanging_from(pids)).scrape()
    assert not snap.success and snap.error == "timed out after 1s"
    for pid in map(int, pids.read_text().split()):
        assert wait_dead(pid), f"process {pid} ignored SIGTERM and outlived the listing"


def test_listing_dies_with_the_exporter_even_when_the_exporter_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    program = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from exporter.google import GoogleHosts
        from exporter.queue.classify import QueueClassifier
        from exporter.queue.domains import GoogleDomains
        from exporter.queue.reader import QueueReader
        from exporter.rules import Rules
        classifier = QueueClassifier(Rules(()), GoogleHosts(), GoogleDomains())
        argv = ["sh", "-c", "echo $$ > {pid_file}; exec sleep 300"]
        QueueReader("opensmtpd", argv, classifier, interval=600.0).scrape()
        """
    )
    exporter = subprocess.Popen([sys.executable, "-c", program])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline and exporter.poll() is None
            time.sleep(0.05)
        listing = int(pid_file.read_text())
        assert process_running(listing)
    finally:
        exporter.send_signal(signal.SIGKILL)
        exporter.wait()
    dead = wait_dead(listing)
    if not dead:
        os.kill(listing, signal.SIGKILL)  # leave nothing behind, even when failing
    assert dead, "the listing outlived the exporter killed with SIGKILL"


def test_reader_lists_once_per_interval_until_stopped() -> None:
    stop = threading.Event()
    now = [1796293800.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 3:
            stop.set()

    queue = reader("opensmtpd", cat("opensmtpd-show-queue.txt"), clock=lambda: now[0], sleep=sleep)
    queue.run(stop)
    assert sleeps == [60.0, 60.0, 60.0]
    # Three listings, the last at 1796293800 + 120: the oldest message has aged two intervals more.
    assert queue.snapshot.last_success_time == 1796293920.0
    assert queue.snapshot.oldest_age_seconds == 1796293920.0 - 1796293781.0


def test_snapshot_cannot_be_changed() -> None:
    snap = reader("opensmtpd", cat("opensmtpd-show-queue.txt")).scrape()
    with pytest.raises(TypeError):
        snap.recipients["rate_limit"] = 99  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.success = False  # type: ignore[misc]
    assert isinstance(snap, QueueSnapshot)


# -- choosing the MTA and command --------------------------------------------------------------------------------
def finder(installed: dict[str, str]) -> object:
    return lambda name: installed.get(name)


def test_auto_prefers_postfix_whose_mailq_is_not_sendmail() -> None:
    installed = {
        "postqueue": "/usr/sbin/postqueue",
        "sendmail": "/usr/sbin/sendmail",
        "mailq": "/usr/bin/mailq",
    }
    assert detect(finder(installed)) == "postfix"  # type: ignore[arg-type]


def test_postfix_sendmail_binary_is_not_taken_for_sendmail(tmp_path: Path) -> None:
    postfix_like = tmp_path / "sendmail"
    postfix_like.write_bytes(b"\x7fELF...postdrop...MAIL_CONFIG...sendmail.cf?")
    real = tmp_path / "sendmail-real"
    real.write_bytes(b"\x7fELF..." + b"x" * (1 << 20) + b"/etc/mail/sendmail.cf\x00Sendmail")
    assert not is_sendmail(str(postfix_like))
    assert is_sendmail(str(real))  # the marker found past the first read's end too
    assert detect(finder({"sendmail": str(postfix_like)})) is None  # type: ignore[arg-type]
    assert detect(finder({"sendmail": str(real)})) == "sendmail"  # type: ignore[arg-type]


def test_compatibility_link_to_exim_or_smtpctl_is_not_sendmail(tmp_path: Path) -> None:
    for target in ("exim4", "smtpctl"):
        binary = tmp_path / target
        binary.write_bytes(b"sendmail.cf")
        link = tmp_path / f"sendmail-{target}"
        link.symlink_to(binary)
        assert not is_sendmail(str(link))


@pytest.mark.skipif(not Path("/usr/sbin/postqueue").exists(), reason="Postfix is not installed")
def test_installed_postfix_sendmail_is_recognised_as_not_sendmail() -> None:
    assert not is_sendmail("/usr/sbin/sendmail")


def test_command_is_split_like_a_shell_and_names_its_mta() -> None:
    argv = split_command("sudo -n 'postqueue' -c \"/etc/postfix two\" -j")
    assert argv == ["sudo", "-n", "postqueue", "-c", "/etc/postfix two", "-j"]
    assert mta_of_command(argv) == "postfix"
    assert mta_of_command(split_command("docker exec mta /usr/sbin/exim4 -bpr")) == "exim"
    assert mta_of_command(split_command("sudo -n mailq -v")) is None
    with pytest.raises(ValueError):
        split_command("   ")
    with pytest.raises(ValueError):
        split_command("postqueue 'unclosed")


def test_choice_of_mta_and_command() -> None:
    assert choose("none", ["postqueue", "-j"]) is None
    assert choose("auto", ["sudo", "-n", "smtpctl", "show", "queue"]) == (
        "opensmtpd",
        ["sudo", "-n", "smtpctl", "show", "queue"],
    )
    assert choose("sendmail", ["sudo", "-n", "mailq", "-v"]) == ("sendmail", ["sudo", "-n", "mailq", "-v"])
    with pytest.raises(ValueError, match=re.escape("set --queue.mta")):
        choose("auto", ["sudo", "-n", "mailq"])


def test_shell_metacharacters_in_the_command_are_never_interpreted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    snap = reader("postfix", split_command(f"echo ; touch {marker}")).scrape()
    assert not marker.exists()
    assert not snap.success  # 'echo' printed '; touch …', which is no Postfix listing


# -- Google domains learned from the log ----------------------------------------------------------------------
def delivery(domain: str | None, host: str | None, scope: str = "recipient") -> Delivery:
    return Delivery("postfix", scope, "sent", None, "Q", domain, host, None)


def test_domains_delivered_to_google_are_learned_and_others_are_not() -> None:
    domains = GoogleDomains()
    domains.learn(delivery("corp.example", "aspmx.l.google.com"))
    domains.learn(delivery("elsewhere.example", None))
    domains.learn(delivery("conn.example", "aspmx.l.google.com", scope="connection"))
    domains.learn(delivery("gmail.com", "gmail-smtp-in.l.google.com"))
    assert "corp.example" in domains and "gmail.com" in domains and "googlemail.com" in domains
    assert "elsewhere.example" not in domains and "conn.example" not in domains
    assert domains.state() == {"version": 1, "domains": ["corp.example"]}


def test_learned_domains_are_bounded_least_recently_seen_first_out() -> None:
    domains = GoogleDomains(limit=3)
    for name in ("a.example", "b.example", "c.example", "a.example", "d.example"):
        domains.add(name)
    assert domains.state()["domains"] == ["c.example", "a.example", "d.example"]


@given(
    st.lists(
        st.sampled_from(["a.example", "B.example", "b.example.", "c.example", "gmail.com", "bad_", None])
    )
)
def test_a_blocks_domains_learnt_at_once_leave_what_learning_them_one_by_one_leaves(
    names: list[str | None],
) -> None:
    """learn_domains() keeps only each name's last time: the same domains in the same order, evictions
    included."""
    at_once, one_by_one = GoogleDomains(limit=2), GoogleDomains(limit=2)
    at_once.learn_domains(names)
    for name in names:
        if name is not None:
            one_by_one.learn(delivery(name, "aspmx.l.google.com"))
    assert at_once.state() == one_by_one.state()


def test_learned_domains_survive_a_save_and_restore_through_json() -> None:
    domains = GoogleDomains()
    domains.add("Corp.Example.")
    restored = GoogleDomains()
    restored.restore(json.loads(json.dumps(domains.state())))
    assert "corp.example" in restored and len(restored) == 1


@pytest.mark.parametrize(
    "state",
    [
        None,
        [],
        {"version": 2, "domains": []},
        {"version": 1},
        {"version": 1, "domains": "corp.example"},
        {"version": 1, "domains": ["corp.example", 7]},
        {"version": 1, "domains": ["x@corp.example"]},
        {"version": 1, "domains": ["CORP.example"]},
        {"version": 1, "domains": ["a.example"] * 10_001},
    ],
)
def test_malformed_saved_domains_are_refused_and_change_nothing(state: object) -> None:
    domains = GoogleDomains()
    domains.add("kept.example")
    with pytest.raises(ValueError):
        domains.restore(state)
    assert domains.state()["domains"] == ["kept.example"]


def test_not_tried_recipient_counts_once_its_workspace_domain_is_learned(tmp_path: Path) -> None:
    listing = tmp_path / "listing"
    listing.write_text(
        json.dumps({"queue_id": "ABC", "arrival_time": 1, "recipients": [{"address": "ceo@corp.example"}]})
        + "\n"
    )
    domains = GoogleDomains()
    queue = QueueReader(
        "postfix", ["cat", str(listing)], QueueClassifier(RULES, GoogleHosts(), domains), interval=60.0
    )
    assert nonzero(queue.scrape().unanswered) == {}
    domains.learn(delivery("corp.example", "aspmx.l.google.com"))
    assert nonzero(queue.scrape().unanswered) == {"not_tried": 1}


def test_exim_reader_finds_the_message_logs_where_exim_says_its_spool_is(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "msglog").mkdir(parents=True)
    for log in (QUEUES / "exim-msglog").iterdir():
        (spool / "msglog" / log.name).write_bytes(log.read_bytes())
    exim = tmp_path / "bin" / "exim"
    exim.parent.mkdir()
    # A stand-in for `sudo -n exim`: answers -bP spool_directory and -bpr like Exim, nothing else.
    exim.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2" = "-bP spool_directory" ] && {{ echo "spool_directory = {spool}"; exit 0; }}\n'
        f'[ "$1" = "-bpr" ] && exec cat {QUEUES / "exim-bpr.txt"}\n'
        "exit 2\n"
    )
    exim.chmod(0o755)
    # A FIFO in place of one message's log: skipped (that message counts as not tried), never waited on.
    fifo_id = next(r["queue_id"] for r in manifest_rows("exim") if r["recipient"] == "seed-14@gmail.com")
    (spool / "msglog" / fifo_id).unlink()
    os.mkfifo(spool / "msglog" / fifo_id)
    queue = reader("exim", [str(exim), "-bpr"], clock=lambda: 1796293800.0)
    snap = queue.scrape()
    assert snap.success, snap.error
    assert nonzero(snap.recipients) == {"rate_limit": 2, "authentication": 1}
    assert nonzero(snap.unanswered) == {"refused": 1, "not_tried": 2}
    (spool / "msglog" / fifo_id).unlink()
    (spool / "msglog" / fifo_id).write_bytes((QUEUES / "exim-msglog" / fifo_id).read_bytes())
    snap = queue.scrape()
    assert nonzero(snap.recipients) == {"rate_limit": 2, "mailbox_full": 1, "authentication": 1}
    assert nonzero(snap.unanswered) == {"refused": 1, "not_tried": 1}


def manifest_rows(mta: str) -> list[dict[str, str]]:
    with open(QUEUES / "manifest.tsv", encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle, delimiter="\t") if row["mta"] == mta]


def test_build_turns_the_reader_off_for_none_and_names_the_mta_for_a_command() -> None:
    classifier = QueueClassifier(RULES, GoogleHosts(), GoogleDomains())
    assert build("none", 60.0, (), classifier) is None
    built = build("auto", 30.0, ("sudo", "-n", "postqueue", "-j"), classifier)
    assert built is not None
    assert (built.mta, built.argv, built.interval, built.timeout) == (
        "postfix",
        ["sudo", "-n", "postqueue", "-j"],
        30.0,
        30.0,
    )


def test_a_parser_bug_fails_the_listing_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(QueueClassifier):
        def judge(self, recipient: object) -> None:  # type: ignore[override]
            raise RuntimeError("bug")

    queue = QueueReader(
        "opensmtpd",
        cat("opensmtpd-show-queue.txt"),
        Broken(RULES, GoogleHosts(), GoogleDomains()),
        interval=60.0,
    )
    with caplog.at_level(logging.INFO, logger="exporter.queue"):
        snaps = [queue.scrape() for _ in range(3)]
    assert [s.error for s in snaps] == ["unexpected error: RuntimeError"] * 3
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
