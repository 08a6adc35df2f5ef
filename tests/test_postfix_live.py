"""The Postfix part of the fixtures, live: a real Postfix delivers one mail per corpus reply to the Gmail
look-alike, and the exporter classifies what Postfix logged — every refusal gets its category."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mta_harness as h
import pytest
from conftest import CORPUS

from exporter.analyse import Analyser
from exporter.events import Event
from exporter.offline import read_lines
from exporter.rules import load_rules

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(shutil.which("postfix") is None, reason="Postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: port 25 on 127.0.0.x, /etc/hosts, Postfix"),
]

# Replies Gmail gives before it knows the recipient are armed on the look-alike, one connection at a time.
EARLY_STAGES = ("greeting", "ehlo", "mail")


def test_live_postfix_every_reply_gets_its_category(tmp_path: Path) -> None:
    maillog = tmp_path / "maillog"
    late = [r for r in CORPUS if r.stage not in EARLY_STAGES]
    early = [r for r in CORPUS if r.stage in EARLY_STAGES]
    with h.postfix_to_lookalike(maillog) as (postfix, server):
        for row in late:
            postfix.send(f"{row.id}@gmail.com")
        h.wait_for(maillog, r"\bto=<.*status=", len(late), timeout=120)
        for row in early:
            server.clear_armed()
            server.close_idle()
            server.arm(row.id)
            postfix.send(f"{row.id}+early@gmail.com")
            h.wait_for(maillog, rf"\bto=<{row.id}\+early@gmail\.com>.*status=", 1, timeout=30)

    recipient_of = {m.group(1): m.group(2) for m in h.outcomes(maillog)}
    analyser = Analyser(load_rules())
    with open(maillog, "rb") as stream:
        results = analyser.analyse_batch(list(read_lines(stream)))
    got: dict[str, str | None] = {}
    for event in results:
        assert isinstance(event, Event), event
        if event.delivery.scope == "recipient":
            local = recipient_of[str(event.delivery.queue_id)].split("@")[0].split("+")[0]
            assert local not in got, f"{local}: two outcome lines"
            got[local] = event.verdict.category if event.verdict else None
    assert got == {row.id: row.category or None for row in CORPUS}
