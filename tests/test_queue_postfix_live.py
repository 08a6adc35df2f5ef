"""A real Postfix queue: mail the Gmail look-alike deferred with rate-limit, authentication and mailbox-full replies
and by a refused connection sits in the queue, and the queue reader's snapshot equals what is queued, by category
and kind; it falls when the queue is flushed to an accepting look-alike, and when the queue is deleted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import mta_harness as h
import pytest

from exporter.google import GoogleHosts
from exporter.queue.classify import QueueClassifier
from exporter.queue.domains import GoogleDomains
from exporter.queue.reader import QueueReader, QueueSnapshot
from exporter.rules import load_rules

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(shutil.which("postfix") is None, reason="Postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: port 25 on 127.0.0.x, /etc/hosts, Postfix"),
]

RATE_LIMIT, AUTHENTICATION, MAILBOX_FULL = "seed-07", "beyond-05", "seed-14"
REFUSED = "accept-01+refused@gmail.com"
ELSEWHERE = "someone@elsewhere.example"
TRANSPORT = {
    REFUSED: "smtp:[alt2.gmail-smtp-in.l.google.com]:25",  # 127.0.0.4: nobody listens
    "elsewhere.example": "smtp:[127.0.0.4]:25",  # refused too, but not Google
}


def nonzero(counts: object) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}  # type: ignore[attr-defined]


def queued(postfix: h.Postfix) -> list[dict[str, object]]:
    out = subprocess.run(
        ["postqueue", "-c", str(postfix.conf), "-j"], env=postfix.env, capture_output=True, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def wait_queue(postfix: h.Postfix, recipients: int, timeout: float = 60.0) -> None:
    """Until exactly `recipients` recipients are queued, each with a delay reason (tried and deferred)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = queued(postfix)
        reasons = [r.get("delay_reason") for e in entries for r in e["recipients"]]  # type: ignore[attr-defined]
        if len(reasons) == recipients and all(reasons):
            return
        assert time.monotonic() < deadline, f"queue holds {reasons}"
        time.sleep(0.2)


def test_real_postfix_queue_by_category_and_kind_and_its_fall(tmp_path: Path) -> None:
    maillog = tmp_path / "maillog"
    sent_before = int(time.time())
    with h.postfix_to_lookalike(maillog, transport=TRANSPORT) as (postfix, server):
        for row in (RATE_LIMIT, AUTHENTICATION, MAILBOX_FULL):
            postfix.send(f"{row}@gmail.com")
        postfix.send(REFUSED)
        postfix.send(ELSEWHERE)
        wait_queue(postfix, 5)
        sent_after = int(time.time())

        now = [float(sent_after + 3600)]
        classifier = QueueClassifier(load_rules(), GoogleHosts(), GoogleDomains())
        reader = QueueReader(
            "postfix",
            ["postqueue", "-c", str(postfix.conf), "-j"],
            classifier,
            interval=60.0,
            clock=lambda: now[0],
        )
        first = reader.scrape()
        assert first.success, first.error
        assert nonzero(first.recipients) == {"rate_limit": 1, "authentication": 1, "mailbox_full": 1}
        assert nonzero(first.unanswered) == {"refused": 1}  # elsewhere.example is not waiting for Google
        assert 3600 <= first.oldest_age_seconds <= 3600 + sent_after - sent_before
        assert first.unreadable == {"malformed": 0, "too_long": 0, "truncated": 0}

        # The look-alike now accepts the rate-limited and the mailbox-full recipient: a flush delivers them.
        accept = server.replies["accept-01"]
        server.replies = {**server.replies, RATE_LIMIT: accept, MAILBOX_FULL: accept}
        server.close_idle()
        subprocess.run(["postqueue", "-c", str(postfix.conf), "-f"], env=postfix.env, check=True)
        h.wait_for(maillog, r"to=<(seed-07|seed-14)@gmail\.com>.*status=sent", 2, timeout=60)
        wait_queue(postfix, 3)
        flushed = reader.scrape()
        assert nonzero(flushed.recipients) == {"authentication": 1}
        assert nonzero(flushed.unanswered) == {"refused": 1}

        postfix.flush_queue()  # postsuper -d ALL
        deleted = reader.scrape()
        assert deleted.success
        assert nonzero(deleted.recipients) == {} and nonzero(deleted.unanswered) == {}
        assert deleted.oldest_age_seconds == 0.0
        assert isinstance(deleted, QueueSnapshot)
