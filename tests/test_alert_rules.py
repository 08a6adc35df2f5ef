"""The Prometheus rules: promtool accepts them; every alert is tested, documented and tunable in one place."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.rules import CATEGORIES as RULE_CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "gmail-rejection-exporter.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
RUNBOOK = ROOT / "deploy" / "runbook.md"

# The closed category list; an alert's category label must be one of them.
CATEGORIES = set(RULE_CATEGORIES)
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_SERIES = "gmail_alert_runbook_info"
# The runbook's address is set once, as the url label of RUNBOOK_SERIES; each alert appends its section.
RUNBOOK_BASE = f'{{{{ with query "{RUNBOOK_SERIES}" }}}}{{{{ . | first | label "url" }}}}{{{{ end }}}}'
DEFAULT_RUNBOOK = "https://runbooks.example.org/gmail-rejection-exporter/runbook.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (make test does it)")
    return path


def load_rules(path: Path = RULES) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def alert_tests() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_accepts_the_rules_file() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_rule_test_files() -> None:
    assert [p.name for p in RULE_TESTS] == [
        "exporter-alerts.test.yml",
        "gmail-alerts.test.yml",
        "log-not-advancing.test.yml",
        "outcome-alerts.test.yml",
        "recording-rules.test.yml",
    ]


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    firing = {case["alertname"] for case in alert_tests() if case.get("exp_alerts")}
    silent = {case["alertname"] for case in alert_tests() if not case.get("exp_alerts")}
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts without a test that expects them firing"
    assert names - silent == set(), "alerts without a test that expects them silent"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert set(alert["labels"]) <= {"severity", "category"}, name
        if "category" in alert["labels"]:
            assert alert["labels"]["category"] in CATEGORIES, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: no section '{name.lower()}' in deploy/runbook.md"


def test_the_runbook_address_is_one_absolute_url_set_in_the_rules_file() -> None:
    (series,) = [rule for rule in load_rules() if rule.get("record") == RUNBOOK_SERIES]
    assert series["expr"] == "vector(1)"
    assert series["labels"] == {"url": DEFAULT_RUNBOOK}
    assert re.fullmatch(r"https://[a-z0-9.-]+/\S*", series["labels"]["url"])
    # The example test files expect the alerts to render it.
    for path in RULE_TESTS:
        for url in re.findall(r"runbook_url: (\S+)", path.read_text()):
            assert url.startswith(f"{DEFAULT_RUNBOOK}#"), (path.name, url)


def test_changing_the_runbook_address_changes_every_alert_link(tmp_path: Path) -> None:
    rules = RULES.read_text()
    assert rules.count(DEFAULT_RUNBOOK) == 1
    (tmp_path / "gmail-rejection-exporter.rules.yml").write_text(
        rules.replace(DEFAULT_RUNBOOK, "https://wiki.example.net/mail/gmail-runbook")
    )
    (tmp_path / "exporter.test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["gmail-rejection-exporter.rules.yml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": 'up{job="gmail-rejection-exporter",instance="mx1:9791"}',
                                "values": "0x10",
                            }
                        ],
                        "alert_rule_test": [
                            {
                                "eval_time": "10m",
                                "alertname": "GmailRejectionExporterDown",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "job": "gmail-rejection-exporter",
                                            "instance": "mx1:9791",
                                            "severity": "warning",
                                        },
                                        "exp_annotations": {
                                            "summary": "gmail-rejection-exporter cannot be scraped",
                                            "description": "mx1:9791 (gmail-rejection-exporter) has been unreachable"
                                            " for 5 minutes: Gmail refusals on that host are not being watched.",
                                            "runbook_url": "https://wiki.example.net/mail/gmail-runbook"
                                            "#gmailrejectionexporterdown",
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = run_promtool("test", "rules", str(tmp_path / "exporter.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_sustained_alert_takes_over_from_its_spike_alert_in_the_same_group() -> None:
    """Rules of a group run in order: after its spike alert, the sustained alert sees the spike's ALERTS series of
    the same evaluation, so exactly one of the two is open while a failure goes on."""
    data = yaml.safe_load(RULES.read_text())
    pairs = 0
    for group in data["groups"]:
        names = [rule.get("alert") for rule in group["rules"]]
        for index, rule in enumerate(group["rules"]):
            name = rule.get("alert", "")
            if not name.endswith("Sustained"):
                continue
            spike = name.replace("Sustained", "Spike")
            assert spike in names[:index], f"{name} must follow {spike} in its group"
            assert f'ALERTS{{alertname="{spike}", alertstate="firing"}}' in rule["expr"], name
            assert rule["labels"] == group["rules"][names.index(spike)]["labels"], name
            assert "for" not in rule, f"{name}: a for: would leave a gap when the spike alert resolves"
            pairs += 1
    assert pairs == 2


def test_alerts_about_one_category_carry_it_as_a_label() -> None:
    for alert in alerts():
        selected = set(re.findall(r'category="([a-z_]+)"', alert["expr"]))
        assert selected == ({alert["labels"]["category"]} if "category" in alert["labels"] else set()), alert[
            "alert"
        ]


def test_recording_rules_follow_level_metric_operations() -> None:
    records = [rule["record"] for rule in load_rules() if "record" in rule]
    for name in records:
        if name in ("gmail_alert_threshold", RUNBOOK_SERIES):
            continue
        assert re.fullmatch(r"[a-z_]+:gmail_[a-z_]+:[a-z0-9_]+", name), name
    # The optional sender_domain label never reaches a recorded series.
    for rule in load_rules():
        if "record" in rule and "gmail_" in rule["expr"] and "without" in rule["expr"]:
            uses_raw_rejections_or_deliveries = re.search(
                r"gmail_(rejections|deliveries)_total", rule["expr"]
            )
            if uses_raw_rejections_or_deliveries:
                assert "sender_domain" in rule["expr"], rule["record"]


def numeric_literals(expr: str) -> list[str]:
    """Numbers in a PromQL expression outside strings, range selectors and offsets."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"offset\s+\w+", "offset", stripped)
    return re.findall(r"(?<![\w.:])\d+(?:\.\d+)?(?![\w.:])", stripped)


def test_alert_expressions_take_their_thresholds_from_the_threshold_group() -> None:
    for alert in alerts():
        assert set(numeric_literals(alert["expr"])) <= {"0"}, alert["alert"]
    thresholds = {
        (rule["labels"]["alert"], rule["labels"]["param"])
        for rule in load_rules()
        if rule.get("record") == "gmail_alert_threshold"
    }
    used = set()
    for alert in alerts():
        for param in re.findall(
            r'gmail_alert_threshold\{alert="([A-Za-z]+)", param="([a-z_]+)"\}', alert["expr"]
        ):
            assert param[0] == alert["alert"], f"{alert['alert']} uses another alert's threshold {param}"
            used.add(param)
    assert used == thresholds, "every threshold is used, every used threshold is defined"


def tuning_table() -> dict[tuple[str, str], tuple[str, str]]:
    rows = {}
    for line in RUNBOOK.read_text().splitlines():
        match = re.match(r"^\| `(\w+)` \| (?:`(\w+)`|—) \| ([\d.]+|—) \| (\w+|—) \|$", line)
        if match:
            rows[(match[1], match[2] or "")] = (match[3], match[4])
    return rows


def test_runbook_tuning_table_lists_the_values_in_the_rules_file() -> None:
    expected = {}
    for alert in alerts():
        params = re.findall(r'param="([a-z_]+)"', alert["expr"]) or [""]
        for param in dict.fromkeys(params):
            value = "—"
            for rule in load_rules():
                labels = rule.get("labels", {})
                if rule.get("record") == "gmail_alert_threshold" and labels == {
                    "alert": alert["alert"],
                    "param": param,
                }:
                    value = re.fullmatch(r"vector\(([\d.]+)\)", rule["expr"])[1]  # type: ignore[index]
            expected[(alert["alert"], param)] = (value, alert.get("for", "—"))
    assert tuning_table() == expected


def test_changing_a_threshold_in_the_threshold_group_changes_the_alert(tmp_path: Path) -> None:
    """Raising the authentication floor above the burst's 0.5/s silences the alert the burst test expects."""
    rules = RULES.read_text()
    original = (
        "        expr: vector(0.02)\n"
        "        labels: {alert: GmailAuthenticationRejectionSpike, param: rate_per_second}\n"
    )
    assert rules.count(original) == 1
    (tmp_path / "gmail-rejection-exporter.rules.yml").write_text(
        rules.replace(original, original.replace("0.02", "1"))
    )
    burst_test = {
        "rule_files": ["gmail-rejection-exporter.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'gmail_rejections_total{job="j",instance="i",category="authentication",'
                        'reason="dmarc_policy",code="550",enhanced_code="5.7.26",severity="permanent",'
                        'origin="gsmtp"}',
                        "values": "0+0.5x420 240+30x30",
                    }
                ],
                "alert_rule_test": [
                    {"eval_time": "440m", "alertname": "GmailAuthenticationRejectionSpike", "exp_alerts": []}
                ],
            }
        ],
    }
    (tmp_path / "burst.test.yml").write_text(yaml.safe_dump(burst_test))
    result = run_promtool("test", "rules", str(tmp_path / "burst.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
