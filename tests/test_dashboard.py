"""Lints the Grafana dashboard the way grafana/dashboard-linter does, and checks its provisioning files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_queries import dashboard_queries, load_dashboard, panels

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "grafana" / "provisioning"
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


def test_datasource_job_and_instance_variables(dashboard: dict[str, Any]) -> None:
    variable = variables(dashboard)
    assert list(variable) == ["datasource", "job", "instance"]
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
    for name in ("job", "instance"):
        assert variable[name]["type"] == "query"
        assert variable[name]["datasource"] == DATASOURCE
        assert variable[name]["multi"] is True and variable[name]["includeAll"] is True


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
    assert len(refs) == len(list(panels(dashboard))) + len(targets(dashboard)) + 2
    assert all(ref == DATASOURCE for ref in refs)


def test_every_panel_has_a_unit_a_description_and_queries(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)) == 22
    for panel in panels(dashboard):
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert len(panel["description"]) > 30, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_selector_filters_job_and_instance(dashboard: dict[str, Any]) -> None:
    for panel, target in targets(dashboard):
        selectors = METRIC.findall(target["expr"])
        assert selectors, panel["title"]
        for name, matchers in selectors:
            assert name in CONTRACT_METRICS, f"{panel['title']}: {name} is not an exporter metric"
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
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
    assert len(queries) == 22
    for query in queries:
        assert "$" not in query.expr
        assert query.datasource_uid == "prom-uid"
        assert 'job=~"(gmail-rejection-exporter|gw)"' in query.expr
        assert 'instance=~"mx1\\\\.example\\\\.org:9791"' in query.expr
    instant = [query.panel_title for query in queries if query.instant]
    assert instant == ["Top reasons and codes", "Last rejection per category"]
    assert "[5m]" in queries[6].expr and "[1m]" in queries[3].expr


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
    assert {panel["gridPos"]["y"] for panel in queue.values()} == {66}  # one row, below the others
    assert sum(panel["gridPos"]["w"] for panel in queue.values()) == 24
    assert queue["Queue: oldest message for Google"]["fieldConfig"]["defaults"]["unit"] == "s"
