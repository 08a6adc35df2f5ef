"""Hostile log lines cannot create unbounded or personal label values."""

from __future__ import annotations

import random
import re
from pathlib import Path

from daemon_harness import GOOGLE, Exporter, append, sent

SAFE_VALUE = re.compile(r"[a-z0-9_.:/\-]*")
MAX_REJECTION_SERIES = 1000


def _hostile(n: int, rng: random.Random) -> str:
    code = rng.randint(400, 599)
    enhanced = f"{code // 100}.{rng.randint(0, 9)}.{rng.randint(0, 120)}"
    reply = (
        f"{code}-{enhanced} Mailbox victim{n}@example.org at 10.{n % 250}.{n % 7}.9 or 2001:db8::{n:x} "
        f"refused <script>{n}</script> {code} {enhanced} x{n}.1 - gsmtp"
    )
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {n:010X}: to=<victim{n}@gmail.com>, relay={GOOGLE}, delay=1, "
        f"delays=0/0/0/1, dsn={enhanced}, status=bounced (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
        f"{reply} (in reply to RCPT TO command))\n"
    )


def test_hostile_replies_keep_labels_bounded(tmp_path: Path) -> None:
    rng = random.Random(7)
    log = tmp_path / "mail.log"
    lines = 5000
    log.write_text("".join(_hostile(n, rng) for n in range(lines)) + sent(lines))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="sent", timeout=30)
        samples = exporter.scrape()
    rejections = {labels: v for (name, labels), v in samples.items() if name == "gmail_rejections_total"}
    assert sum(rejections.values()) == lines
    assert len(rejections) <= MAX_REJECTION_SERIES + 16 * 3 * 2
    folded = sum(v for labels, v in rejections.items() if ("reason", "other") in labels)
    assert folded > 0
    for (name, labels), _ in samples.items():
        for label, value in labels:
            if label == "source":
                continue
            assert "@" not in value and SAFE_VALUE.fullmatch(value), (name, label, value)


def test_sender_domain_label_only_for_allowlisted_domains(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    config = tmp_path / "exporter.yml"
    config.write_text(f"log:\n  paths: [{log}]\nmetrics:\n  sender_domains: [example.com]\n")
    text = ""
    for n in range(40):
        sender = "news@example.com" if n % 4 == 0 else f"spam@evil-{n}.test"
        text += f"Nov 29 21:32:48 mx1 postfix/qmgr[811]: {n:010X}: from=<{sender}>, size=1000, nrcpt=1 (queue active)\n"
        text += sent(n)
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        append(log, text)
        exporter.wait_for("gmail_deliveries_total", 40, status="sent")
        assert exporter.value("gmail_deliveries_total", status="sent", sender_domain="example.com") == 10
        assert exporter.value("gmail_deliveries_total", status="sent", sender_domain="other") == 30
        domains = {
            dict(labels).get("sender_domain")
            for (name, labels) in exporter.scrape()
            if name in ("gmail_deliveries_total", "gmail_rejections_total")
        }
        assert domains == {"example.com", "other"}
