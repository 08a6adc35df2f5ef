"""Reload (POST /-/reload and SIGHUP) applies new config and rules without losing a counter."""

from __future__ import annotations

import http.client
import signal
from pathlib import Path

from daemon_harness import Exporter, append, deferred

USER_RULES = """rules:
  - {reason: my_rate_limit, category: rate_limit, enhanced_code: [4.2.1], phrases: ["receiving mail", "quickly"]}
"""


def test_reload_keeps_counters_and_a_failed_reload_keeps_the_old_config(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    config = tmp_path / "exporter.yml"
    config.write_text(f"log:\n  paths: [{log}]\n")
    with Exporter(tmp_path, "--config.file", str(config)) as exporter:
        append(log, deferred(1) + deferred(2))
        exporter.wait_for("gmail_rejections_total", 2, reason="recipient_receiving_rate")
        before = exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds")

        (tmp_path / "mine.yml").write_text(USER_RULES)
        config.write_text(f"log:\n  paths: [{log}]\nrules:\n  files: [mine.yml]\n")
        assert exporter.get("/-/reload", method="POST") == (200, b"Reloaded\n")
        append(log, deferred(3))
        exporter.wait_for("gmail_rejections_total", 1, reason="my_rate_limit")
        assert exporter.value("gmail_rejections_total", reason="recipient_receiving_rate") == 2
        assert exporter.value("gmail_deliveries_total", status="deferred") == 3
        assert exporter.value("gmail_exporter_config_last_reload_successful") == 1
        assert exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds") > before

        config.write_text(f"log:\n  paths: [{log}]\nrules:\n  file: [mine.yml]\n")
        status, body = exporter.get("/-/reload", method="POST")
        assert status == 500
        assert f"{config}:4: rules.file: unknown key".encode() in body
        assert exporter.value("gmail_exporter_config_last_reload_successful") == 0
        append(log, deferred(4))
        exporter.wait_for("gmail_rejections_total", 2, reason="my_rate_limit")  # the old config still runs

        config.write_text(f"log:\n  paths: [{log}]\n")
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until(lambda: exporter.value("gmail_exporter_config_last_reload_successful") == 1)
        append(log, deferred(5))
        exporter.wait_for("gmail_rejections_total", 3, reason="recipient_receiving_rate")
        assert exporter.value("gmail_deliveries_total", status="deferred") == 5
        assert exporter.get("/-/reload")[0] == 405


def test_put_does_not_reload_and_is_refused_with_405_naming_post(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        loaded = exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds")
        connection = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        connection.request("PUT", "/-/reload")
        response = connection.getresponse()
        assert (response.status, response.getheader("Allow"), response.read()) == (
            405,
            "POST",
            b"Method not allowed; use POST\n",
        )
        connection.close()
        assert exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds") == loaded
        assert exporter.get("/-/reload", method="POST") == (200, b"Reloaded\n")
        assert exporter.value("gmail_exporter_config_last_reload_success_timestamp_seconds") > loaded
