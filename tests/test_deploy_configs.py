"""The example Prometheus and Alertmanager configs: the real tools accept them and every alert is routed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.example.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.example.yml"
RULES = ROOT / "deploy" / "prometheus" / "gmail-rejection-exporter.rules.yml"
DEFAULT_PORT = 9791


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's '{package}' package (make test does it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def receivers_for(labels: dict[str, str]) -> list[str]:
    amtool = tool("amtool", "prometheus-alertmanager")
    pairs = [f"{key}={value}" for key, value in sorted(labels.items())]
    result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *pairs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def test_promtool_check_config_accepts_the_example_and_loads_the_rules() -> None:
    result = run(tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert "gmail-rejection-exporter.rules.yml" in result.stdout


def test_example_scrape_config_targets_the_exporter_port_and_matches_the_down_alert() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["gmail-rejection-exporter.rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "gmail-rejection-exporter"
    assert job["metrics_path"] == "/metrics"
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets[:3] == [f"mx1.example.org:{DEFAULT_PORT}", f"mx2.example.org:{DEFAULT_PORT}",
                           f"loghost.example.org:{DEFAULT_PORT}"]  # fmt: skip
    (down,) = [alert for alert in alerts() if alert["alert"] == "GmailRejectionExporterDown"]
    job_regex = re.search(r'job=~"([^"]+)"', down["expr"])
    assert job_regex is not None
    assert re.fullmatch(job_regex[1], job["job_name"])
    assert re.fullmatch(job_regex[1], "monitoring/gmail-rejection-exporter")


def test_amtool_check_config_accepts_the_example() -> None:
    result = run(tool("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 6 receivers" in result.stdout
    assert " - 6 inhibit rules" in result.stdout


EXPECTED_RECEIVERS = {
    "GmailAuthenticationRejectionSpike": ["postmaster-pager", "dns-admins"],
    "GmailAuthenticationRejectionSustained": ["postmaster-pager", "dns-admins"],
    "GmailSenderDomainAuthenticationRejections": ["postmaster-pager", "dns-admins"],
    "GmailRateLimitSpike": ["bulk-sending"],
    "GmailRateLimitSustained": ["bulk-sending"],
    "GmailSpamRejections": ["bulk-sending"],
    "GmailReputationBlock": ["postmaster-pager", "bulk-sending"],
    "GmailPTRRejections": ["postmaster-pager", "mail-infrastructure"],
    "GmailTLSRejections": ["mail-infrastructure"],
    "GmailRejectionRatioHigh": ["postmaster-pager"],
    "GmailInstanceRejectionRatioHigh": ["postmaster-pager"],
    "GmailDeferralRatioHigh": ["postmaster"],
    "GmailNothingGetsThrough": ["postmaster-pager"],
    "GmailUnreachable": ["postmaster-pager", "mail-infrastructure"],
    "GmailRejectionExporterDown": ["exporter-maintainers"],
    "GmailRejectionExporterLogNotAdvancing": ["exporter-maintainers"],
    "GmailRejectionExporterSourceDown": ["exporter-maintainers"],
    "GmailRejectionExporterSkippedLines": ["exporter-maintainers"],
    "GmailUnclassifiedRejections": ["exporter-maintainers"],
    "GmailRejectionExporterConfigReloadFailed": ["exporter-maintainers"],
    "GmailRejectionExporterStateWriteErrors": ["exporter-maintainers"],
    # Its category label comes from the queue (the dominant category): without one, the default receiver.
    "GmailQueueBacklog": ["postmaster"],
}


def test_every_alert_of_the_rules_file_is_routed_by_severity_and_category() -> None:
    assert set(EXPECTED_RECEIVERS) == {alert["alert"] for alert in alerts()}
    for alert in alerts():
        labels = {"alertname": alert["alert"], "job": "gmail-rejection-exporter", **alert["labels"]}
        assert receivers_for(labels) == EXPECTED_RECEIVERS[alert["alert"]], alert["alert"]


def test_queue_backlog_goes_where_its_dominant_category_goes() -> None:
    labels = {"alertname": "GmailQueueBacklog", "job": "gmail-rejection-exporter", "severity": "warning"}
    assert receivers_for({**labels, "category": "rate_limit"}) == ["bulk-sending"]
    assert receivers_for({**labels, "category": "authentication"}) == ["dns-admins"]
    assert receivers_for({**labels, "category": "mailbox_full"}) == ["postmaster"]


def test_categories_without_an_alert_of_their_own_go_to_the_postmaster() -> None:
    assert receivers_for({"alertname": "Custom", "category": "policy", "severity": "warning"}) == [
        "postmaster"
    ]
