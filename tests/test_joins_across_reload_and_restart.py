"""Lines that only mean something together with an earlier one keep meaning it across a reload and a restart:
Postfix's `status=expired` days after Google deferred the message, the sender domain of a `from=` line labelling a
later outcome, Exim's `<=` sender line, and OpenSMTPD's session lines naming Google's address and reply before the
recipient line that only says "Network error on destination MXs". The join memory is saved with the position it
was read up to, so a kill -9 at any moment neither loses a join nor counts a line twice."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import REPO, STOPS, Exporter, append, deferred

FIXTURES = REPO / "tests" / "fixtures" / "logs"


def expired(n: int) -> str:
    """Postfix's queue manager gives up on message n (the line names neither Google nor the recipient)."""
    return f"Dec  4 21:32:49 mx1 postfix/qmgr[811]: {n:010X}: from=<news@example.net>, status=expired, returned to sender\n"


def queued_from(n: int, sender: str) -> str:
    return f"Nov 29 21:32:40 mx1 postfix/qmgr[811]: {n:010X}: from=<{sender}>, size=306, nrcpt=1 (queue active)\n"


def test_an_expiry_after_a_reload_joins_googles_earlier_deferral(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, deferred(1) + deferred(2))
        exporter.wait_for("gmail_deliveries_total", 2, status="deferred")
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until(lambda: "configuration reloaded" in exporter.output(), 10, "the reload")
        append(log, expired(1) + expired(3))  # message 3 never went to Google: its expiry is not ours
        exporter.wait_for("gmail_deliveries_total", 1, status="expired")
        assert exporter.value("gmail_deliveries_total", status="deferred") == 2


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
def test_an_expiry_after_a_restart_joins_googles_earlier_deferral(
    tmp_path: Path, stop: Callable[[Exporter], None]
) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, deferred(1) + deferred(2))
        exporter.wait_for("gmail_deliveries_total", 2, status="deferred")
        stop(exporter)
    append(log, expired(2))  # while the exporter is down
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="expired")
        append(log, expired(1) + expired(3))
        exporter.wait_for("gmail_deliveries_total", 2, status="expired")
        assert exporter.value("gmail_deliveries_total", status="deferred") == 2


def _sender_config(tmp_path: Path, log: Path, *, log_format: str = "auto") -> Path:
    config = tmp_path / "exporter.yml"
    config.write_text(
        f"log:\n  paths: [{log}]\n  format: {log_format}\nmetrics:\n  sender_domains: [example.net, example.org]\n"
    )
    return config


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
def test_a_postfix_sender_before_a_restart_labels_the_outcome_after_it(
    tmp_path: Path, stop: Callable[[Exporter], None]
) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    config = _sender_config(tmp_path, log)
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        append(log, queued_from(1, "news@example.net") + queued_from(2, "alerts@example.org") + deferred(1))
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred", sender_domain="example.net")
        stop(exporter)
    append(log, deferred(2))
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred", sender_domain="example.org")
        assert exporter.value("gmail_deliveries_total", status="deferred", sender_domain="example.net") == 1
        assert exporter.value("gmail_deliveries_total", status="deferred", sender_domain="other") == 0


def test_an_exim_sender_before_a_restart_labels_the_deferral_after_it(tmp_path: Path) -> None:
    recorded = (FIXTURES / "exim.log").read_text().splitlines(keepends=True)
    sender, deferral = recorded[0], recorded[3]  # '<= news@example.org', then Google's 421 for that message
    assert " <= news@example.org " in sender and " == seed-00@gmail.com " in deferral
    log = tmp_path / "mainlog"
    log.touch()
    config = _sender_config(tmp_path, log, log_format="exim")
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        append(log, sender)
        exporter.wait_until(lambda: exporter.value("gmail_exporter_lines_total", source=str(log)) == 1)
        assert exporter.stop() == 0
    append(log, deferral)
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred", sender_domain="example.org")
        assert exporter.value("gmail_deliveries_total", status="deferred", sender_domain="other") == 0


def test_an_opensmtpd_session_before_a_restart_explains_the_recipient_line_after_it(tmp_path: Path) -> None:
    recorded = (FIXTURES / "opensmtpd.log").read_text().splitlines(keepends=True)
    session, recipient = recorded[7:10], recorded[12]
    assert "mta connecting" in session[0] and "mta error" in session[2]
    assert 'stat="Network error on destination MXs"' in recipient and "google" not in recipient.lower()
    log = tmp_path / "maillog"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, "".join(session))
        exporter.wait_until(lambda: exporter.value("gmail_exporter_lines_total", source=str(log)) == 3)
        assert exporter.stop() == 0
    append(log, recipient)
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="deferred")
        assert (
            exporter.value(
                "gmail_rejections_total", code="421", enhanced_code="4.3.0", reason="temporary_system_problem"
            )
            == 1
        )


FOLDED_REFUSAL = (
    "Nov 29 21:32:48 mx1 postfix/qmgr[2]: 0F8D71680EE: from=<news@example.org>, size=1, nrcpt=1 (queue active)\n",
    "Diagnostic-Code: smtp; 550-5.7.26 This mail has been blocked because the sender is\n",
    "    unauthenticated. 550-5.7.26 Gmail requires all senders to authenticate with\n"
    "    either SPF or DKIM. 550 5.7.26\n"
    "    a1si1234567wra.12 - gsmtp\n"
    "Nov 29 21:32:49 mx1 postfix/smtpd[1]: connect from unknown[192.0.2.1]\n",
)
"""Gmail's refusal folded over four lines of free text (a DSN's Diagnostic-Code), written in three parts: the
entry's first line ends a block, and is held back until the block that may continue it."""


def _refusals(exporter: Exporter) -> float:
    return exporter.value(
        "gmail_rejections_total", category="authentication", reason="unauthenticated_sender"
    )


def _write_start_of_folded_refusal(exporter: Exporter, log: Path) -> None:
    append(log, FOLDED_REFUSAL[0])
    exporter.wait_for("gmail_exporter_lines_total", 1, source=str(log))
    append(log, FOLDED_REFUSAL[1])  # held back: its entry may go on in the next block
    exporter.wait_until(lambda: exporter.value("gmail_exporter_log_offset_bytes", source=str(log)) ==
                        log.stat().st_size, 10, "the entry's first line read")  # fmt: skip


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
def test_a_folded_refusal_cut_by_a_restart_is_counted_once(
    tmp_path: Path, stop: Callable[[Exporter], None]
) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        _write_start_of_folded_refusal(exporter, log)
        stop(exporter)
    append(log, FOLDED_REFUSAL[2])
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_exporter_lines_total", 6, source=str(log))
        assert _refusals(exporter) == 1


def test_a_folded_refusal_cut_by_a_reload_is_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        _write_start_of_folded_refusal(exporter, log)
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until(lambda: "configuration reloaded" in exporter.output(), 10, "the reload")
        append(log, FOLDED_REFUSAL[2])
        exporter.wait_for("gmail_exporter_lines_total", 6, source=str(log))
        assert _refusals(exporter) == 1
