"""Lints the Grafana dashboard the way grafana/dashboard-linter does, and checks its provisioning files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_queries import dashboard_queries, load_dashboard, panels, rows

from exporter.rules import CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "grafana" / "provisioning"
RUNBOOK = ROOT / "deploy" / "runbook.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# The metric contract of the exporter (plus Prometheus' own up); a name outside it is a typo.
CONTRACT_METRICS = {
    "gmail_deliveries_total",
    "gmail_rejections_total",
    "gmail_connection_errors_total",
    "gmail_last_rejection_timestamp_seconds",
    "gmail_last_delivery_timestamp_seconds",
    "gmail_consecutive_rejections",
    "gmail_exporter_build_info",
    "gmail_exporter_lines_total",
    "gmail_exporter_bytes_total",
    "gmail_exporter_lines_skipped_total",
    "gmail_exporter_log_rotations_total",
    "gmail_exporter_log_offset_bytes",
    "gmail_exporter_log_size_bytes",
    "gmail_exporter_last_line_timestamp_seconds",
    "gmail_exporter_config_last_reload_successful",
    "gmail_exporter_config_last_reload_success_timestamp_seconds",
    "gmail_exporter_state_write_errors_total",
    "gmail_queue_recipients",
    "gmail_queue_unanswered_recipients",
    "gmail_queue_oldest_message_age_seconds",
    "up",
}
METRIC = re.compile(r"\b(up|gmail_[a-z_]+)\b(\s*\{[^}]*\})?")
# The two families that carry the optional sender_domain label.
BY_SENDER = {"gmail_deliveries_total", "gmail_rejections_total"}
PER_HOUR = "suffix:/h"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in panels(dashboard) for target in panel.get("targets", [])]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def test_dashboard_has_a_stable_uid_and_import_metadata(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "gmail-rejection-exporter"
    assert "id" not in dashboard, "a dashboard id is per Grafana instance; the uid identifies it"
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "Prometheus that scrapes gmail-rejection-exporter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    required = {(item["type"], item["id"]) for item in dashboard["__requires"]}
    panel_types = {("panel", panel["type"]) for panel in panels(dashboard)}
    assert required == {("grafana", "grafana"), ("datasource", "prometheus")} | panel_types


def test_datasource_job_instance_sender_domain_and_runbook_variables(dashboard: dict[str, Any]) -> None:
    variable = variables(dashboard)
    assert list(variable) == ["datasource", "job", "instance", "sender_domain", "runbook"]
    assert variable["datasource"]["type"] == "datasource"
    assert variable["datasource"]["query"] == "prometheus"
    # Replaced by the data source chosen on UI import; left as is by file provisioning, where Grafana falls back
    # to the default Prometheus data source.
    assert variable["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert variable["job"]["query"]["query"] == "label_values(gmail_exporter_build_info, job)"
    assert (
        variable["instance"]["query"]["query"]
        == 'label_values(gmail_exporter_build_info{job=~"$job"}, instance)'
    )
    assert (
        variable["sender_domain"]["query"]["query"]
        == 'label_values(gmail_deliveries_total{job=~"$job", instance=~"$instance"}, sender_domain)'
    )
    for name in ("job", "instance", "sender_domain"):
        assert variable[name]["type"] == "query"
        assert variable[name]["datasource"] == DATASOURCE
        assert variable[name]["multi"] is True and variable[name]["includeAll"] is True
        assert variable[name]["hide"] == 0
    # All must also match series without the label (sender domains off): ".*", not ".+".
    assert variable["sender_domain"]["allValue"] == ".*"
    # The runbook address the rules file sets once, read from its series; hidden, it only builds links.
    assert variable["runbook"]["query"]["query"] == "label_values(gmail_alert_runbook_info, url)"
    assert variable["runbook"]["datasource"] == DATASOURCE
    assert variable["runbook"]["hide"] == 2
    assert variable["runbook"]["multi"] is False and variable["runbook"]["includeAll"] is False


def datasource_refs(node: Any) -> list[Any]:
    """Every value of a "datasource" key anywhere in the document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(datasource_refs(item))
    return found


def test_no_hard_coded_datasource(dashboard: dict[str, Any]) -> None:
    refs = datasource_refs(dashboard)
    assert len(refs) == len(list(panels(dashboard))) + len(targets(dashboard)) + 4
    assert all(ref == DATASOURCE for ref in refs)


def test_every_panel_has_a_unit_a_description_and_queries(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in [*panels(dashboard), *rows(dashboard)]]
    assert len(ids) == len(set(ids)) == 28
    for panel in panels(dashboard):
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert len(panel["description"]) > 30, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_selector_filters_job_instance_and_where_it_exists_sender_domain(
    dashboard: dict[str, Any],
) -> None:
    for panel, target in targets(dashboard):
        selectors = METRIC.findall(target["expr"])
        assert selectors, panel["title"]
        for name, matchers in selectors:
            assert name in CONTRACT_METRICS, f"{panel['title']}: {name} is not an exporter metric"
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
                f"{panel['title']}: {name}"
            )
            assert ('sender_domain=~"$sender_domain"' in matchers) == (name in BY_SENDER), (
                f"{panel['title']}: {name}"
            )


def test_rates_use_rate_interval_and_counters_are_always_rated(dashboard: dict[str, Any]) -> None:
    for panel, target in targets(dashboard):
        expr = target["expr"]
        assert "irate(" not in expr, panel["title"]
        windows = re.findall(r"\[([^\]]+)\]", expr)
        # A table's instant query totals the dashboard's time range; every other window is the rate interval.
        allowed = {"$__rate_interval", "$__range"} if target.get("instant") else {"$__rate_interval"}
        assert set(windows) <= allowed, panel["title"]
        for function in re.findall(r"\b(rate|increase)\(", expr):
            assert function in {"rate", "increase"}
        assert len(re.findall(r"\b(?:rate|increase)\(", expr)) == len(windows), panel["title"]
        for match in METRIC.finditer(expr):
            if match[1].endswith("_total"):
                before = expr[: match.start()]
                assert re.search(r"\b(rate|increase)\(\s*$", before), (
                    f"{panel['title']}: bare counter {match[1]}"
                )
                assert expr[match.end() :].startswith("["), f"{panel['title']}: {match[1]} without a range"


def test_legends_only_use_labels_the_query_keeps(dashboard: dict[str, Any]) -> None:
    for panel, target in targets(dashboard):
        legend_labels = set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
        by_labels = {
            label.strip()
            for clause in re.findall(r"by \(([^)]*)\)", target["expr"])
            for label in clause.split(",")
        }
        assert legend_labels <= by_labels, panel["title"]


def test_dashboard_queries_substitute_every_variable() -> None:
    queries = dashboard_queries(["gmail-rejection-exporter", "gw"], "mx1.example.org:9791", "prom-uid")
    assert len(queries) == 24
    for query in queries:
        assert "$" not in query.expr
        assert query.datasource_uid == "prom-uid"
        assert 'job=~"(gmail-rejection-exporter|gw)"' in query.expr
        assert 'instance=~"mx1\\\\.example\\\\.org:9791"' in query.expr
    instant = [query.panel_title for query in queries if query.instant]
    assert instant == ["Top reasons and codes", "Last rejection per category"]
    by_title = {query.panel_title: query.expr for query in queries}
    assert "[5m]" in by_title["Top reasons and codes"] and "[1m]" in by_title["Rejections by category"]
    # All sender domains by default (also no label at all), or the chosen ones.
    assert 'sender_domain=~".*"' in by_title["Rejections by category"]
    chosen = dashboard_queries("j", "i", "p", sender_domain=["a.example", "b.example"])
    assert {q.expr.count('sender_domain=~"(a\\\\.example|b\\\\.example)"') for q in chosen} == {0, 1, 2}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's 'prometheus' package (make test does it)")
    queries = dashboard_queries("gmail-rejection-exporter", "mx1.example.org:9791", "prom-uid")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel{q.panel_id}_{q.ref_id}", "expr": q.expr} for q in queries
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_file_provisioning_points_at_the_dashboard_and_a_prometheus_datasource() -> None:
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "gmail-rejection-exporter.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/gmail-rejection-exporter"
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    # $__rate_interval is derived from this; it must equal the Prometheus scrape interval.
    assert datasource["jsonData"]["timeInterval"] == "15s"


def test_queue_row_shows_waiting_for_gmail_by_category_unanswered_by_kind_and_oldest_age(
    dashboard: dict[str, Any],
) -> None:
    queue = {panel["title"]: panel for panel in panels(dashboard) if panel["title"].startswith("Queue: ")}
    assert {title: panel["targets"][0]["expr"] for title, panel in queue.items()} == {
        "Queue: waiting for Gmail by category": (
            'sum by (category) (gmail_queue_recipients{job=~"$job", instance=~"$instance"})'
        ),
        "Queue: unanswered by kind": (
            'sum by (kind) (gmail_queue_unanswered_recipients{job=~"$job", instance=~"$instance"})'
        ),
        "Queue: oldest message for Google": (
            'max by (instance) (gmail_queue_oldest_message_age_seconds{job=~"$job", instance=~"$instance"})'
        ),
    }
    assert {panel["gridPos"]["y"] for panel in queue.values()} == {47}  # the queue row's line
    assert sum(panel["gridPos"]["w"] for panel in queue.values()) == 24
    assert queue["Queue: oldest message for Google"]["fieldConfig"]["defaults"]["unit"] == "s"


def row_of_each_panel(dashboard: dict[str, Any]) -> dict[str, str]:
    """Panel title -> title of the row above it (rows are full-width lines; panels below one belong to it)."""
    starts = sorted((row["gridPos"]["y"], row["title"]) for row in rows(dashboard))
    owner = {}
    for panel in panels(dashboard):
        above = [title for y, title in starts if y < panel["gridPos"]["y"]]
        owner[panel["title"]] = above[-1] if above else ""
    return owner


def test_rows_group_the_panels_from_delivery_to_exporter_health(dashboard: dict[str, Any]) -> None:
    assert [(row["title"], row["collapsed"]) for row in rows(dashboard)] == [
        ("Delivery to Gmail", False),
        ("Refusals: what to fix", False),
        ("Queue: waiting for Gmail", False),
        ("Exporter health", False),
    ]
    assert all(
        row["gridPos"] == {"x": 0, "y": row["gridPos"]["y"], "w": 24, "h": 1} for row in rows(dashboard)
    )
    owner = row_of_each_panel(dashboard)
    assert "" not in owner.values(), "every panel sits under a row"
    assert {title for title, row in owner.items() if row == "Delivery to Gmail"} == {
        "Gmail acceptance ratio",
        "Messages per hour by final outcome",
        "Consecutive refusals",
        "Gmail acceptance ratio over time",
        "Deferral attempts per hour",
        "Connection errors by kind",
    }
    assert owner["Rejections by category"] == owner["Refusals by sender domain"] == "Refusals: what to fix"
    assert owner["Time since last line read"] == owner["Exporter targets up"] == "Exporter health"
    # No two panels overlap, and none sticks out of the 24 columns.
    cells = set()
    for panel in [*panels(dashboard), *rows(dashboard)]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area


def test_acceptance_divides_sent_by_the_final_outcomes_and_deferral_attempts_stand_apart(
    dashboard: dict[str, Any],
) -> None:
    expr = {panel["title"]: panel["targets"][0]["expr"] for panel in panels(dashboard)}
    selector = 'job=~"$job", instance=~"$instance", sender_domain=~"$sender_domain"'
    sent = f'rate(gmail_deliveries_total{{{selector}, status="sent"}}[$__rate_interval])'
    final = f'rate(gmail_deliveries_total{{{selector}, status=~"sent|bounced|expired"}}[$__rate_interval])'
    assert expr["Gmail acceptance ratio"] == f"sum({sent}) / sum({final})"
    assert (
        expr["Gmail acceptance ratio over time"]
        == f"sum by (instance) ({sent}) / sum by (instance) ({final})"
    )
    assert expr["Messages per hour by final outcome"] == f"sum by (status) ({final}) * 3600"
    assert expr["Deferral attempts per hour"] == (
        f'sum by (instance) (rate(gmail_deliveries_total{{{selector}, status="deferred"}}[$__rate_interval])) * 3600'
    )
    # Only the deferral panel shows deferred outcomes.
    assert [title for title, e in expr.items() if '"deferred"' in e or "deferred|" in e] == [
        "Deferral attempts per hour"
    ]


def test_counts_postmasters_think_of_per_hour_are_per_hour(dashboard: dict[str, Any]) -> None:
    per_hour = {
        panel["title"] for panel in panels(dashboard) if panel["fieldConfig"]["defaults"]["unit"] == PER_HOUR
    }
    assert per_hour == {
        "Messages per hour by final outcome",
        "Deferral attempts per hour",
        "Connection errors by kind",
        "Rejections by category",
        "Authentication / DMARC by reason",
        "Rate limit by reason",
        "Refusals by sender domain",
    }
    for panel in panels(dashboard):
        expr = panel["targets"][0]["expr"]
        assert expr.endswith(") * 3600") == (panel["title"] in per_hour), panel["title"]
        assert "per second" not in panel["description"] or panel["title"] not in per_hour, panel["title"]
    # Exporter internals stay per second.
    units = {panel["title"]: panel["fieldConfig"]["defaults"]["unit"] for panel in panels(dashboard)}
    assert units["Lines read per second"] == units["Skipped lines per second"] == "cps"


def test_categories_link_to_their_runbook_section(dashboard: dict[str, Any]) -> None:
    by_title = {panel["title"]: panel for panel in panels(dashboard)}
    category = by_title["Rejections by category"]
    assert "runbook" in category["description"]
    assert category["fieldConfig"]["defaults"]["links"] == [
        {
            "title": "Runbook: what to fix for ${__field.labels.category}",
            "url": "${runbook}#category-${__field.labels.category}",
            "targetBlank": True,
        }
    ]
    for title in ("Top reasons and codes", "Last rejection per category"):
        (override,) = by_title[title]["fieldConfig"]["overrides"]
        assert override["matcher"] == {"id": "byName", "options": "category"}, title
        assert override["properties"] == [
            {
                "id": "links",
                "value": [
                    {
                        "title": "Runbook: what to fix for ${__value.raw}",
                        "url": "${runbook}#category-${__value.raw}",
                        "targetBlank": True,
                    }
                ],
            }
        ], title
    # Every category the links can name has its section: GitHub's anchor of "### Category `rate_limit`".
    headings = re.findall(r"^### Category `(\w+)`$", RUNBOOK.read_text(), re.MULTILINE)
    assert headings == list(CATEGORIES)


def test_log_lag_is_named_for_what_it_measures(dashboard: dict[str, Any]) -> None:
    by_title = {panel["title"]: panel for panel in panels(dashboard)}
    assert "Log lag" not in by_title
    panel = by_title["Time since last line read"]
    assert panel["targets"][0]["expr"] == (
        'time() - max by (instance, source) (gmail_exporter_last_line_timestamp_seconds{job=~"$job", '
        'instance=~"$instance"} > 0)'
    )
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
