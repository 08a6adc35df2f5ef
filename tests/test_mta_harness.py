"""The harness drives a real Postfix to the Gmail look-alike and Postfix logs what Gmail answered."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import mta_harness as h
import pytest

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(shutil.which("postfix") is None, reason="Postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: port 25 on 127.0.0.x, /etc/hosts, Postfix"),
]


def test_postfix_logs_accept_bounce_and_deferral(tmp_path: Path) -> None:
    maillog = tmp_path / "maillog"
    with h.postfix_to_lookalike(maillog) as (postfix, server):
        for rcpt in ("accept-01@gmail.com", "seed-52@gmail.com", "seed-07@gmail.com"):
            postfix.send(rcpt)
        h.wait_for(maillog, r"postfix/smtp\[\d+\]: [0-9A-F]+: to=<", 3, timeout=60)
    text = maillog.read_text()
    relay = r"relay=gmail-smtp-in\.l\.google\.com\[127\.0\.0\.2\]:25, .*"

    assert re.search(
        rf"to=<accept-01@gmail\.com>, {relay}dsn=2\.0\.0, status=sent \(250 2\.0\.0 OK  \d+ \S+ - gsmtp\)",
        text,
    )
    assert re.search(
        rf"to=<seed-52@gmail\.com>, {relay}dsn=5\.7\.26, status=bounced \(host gmail-smtp-in\.l\.google\.com"
        r"\[127\.0\.0\.2\] said: 550-5\.7\.26 This message does not have authentication information .*"
        r"550 5\.7\.26 .* - gsmtp \(in reply to end of DATA command\)\)",
        text,
    )
    assert re.search(
        rf"to=<seed-07@gmail\.com>, {relay}dsn=4\.2\.1, status=deferred \(host gmail-smtp-in\.l\.google\.com"
        r"\[127\.0\.0\.2\] said: 450-4\.2\.1 The user you are trying to contact is receiving mail too .*"
        r"450 4\.2\.1 .* - gsmtp \(in reply to RCPT TO command\)\)",
        text,
    )
    assert {s.row_id for s in server.served} >= {"seed-52", "seed-07"}
