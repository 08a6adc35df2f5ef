"""Every PromQL query of the Grafana dashboard, with Grafana's variables replaced, ready to send to Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent.parent / "grafana" / "gmail-rejection-exporter.json"


@dataclass(frozen=True)
class DashboardQuery:
    """One panel target: where it is shown, the PromQL sent, and whether Grafana runs it as an instant query."""

    panel_id: int
    panel_title: str
    ref_id: str
    datasource_uid: str
    expr: str
    instant: bool


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def rows(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The row panels that group the others."""
    return [panel for panel in dashboard["panels"] if panel["type"] == "row"]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """All panels that show data, including those nested in collapsed rows; not the rows themselves."""
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def regex_value(values: list[str]) -> str:
    """A multi-value variable the way Grafana renders it inside =~ for Prometheus."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replaces $name and ${name} (longest names first, so $__rate_interval is not read as $__range...)."""
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return text


def dashboard_queries(
    job: str | list[str],
    instance: str | list[str],
    datasource: str,
    *,
    sender_domain: str | list[str] | None = None,
    rate_interval: str = "1m",
    time_range: str = "5m",
    dashboard: Path = DASHBOARD,
) -> list[DashboardQuery]:
    """Every target expression of the dashboard with $job, $instance, $sender_domain, ${datasource},
    $__rate_interval and $__range replaced. job, instance and sender_domain are plain label values (not regular
    expressions); a list selects several; no sender_domain is the variable's All, which also matches series
    without the label."""
    variables = {
        "job": regex_value([job] if isinstance(job, str) else job),
        "instance": regex_value([instance] if isinstance(instance, str) else instance),
        "sender_domain": (
            ".*"
            if sender_domain is None
            else regex_value([sender_domain] if isinstance(sender_domain, str) else sender_domain)
        ),
        "datasource": datasource,
        "__rate_interval": rate_interval,
        "__range": time_range,
    }
    queries = []
    for panel in panels(load_dashboard(dashboard)):
        for target in panel.get("targets", []):
            remaining = substitute(target["expr"], variables)
            if "$" in remaining:
                raise ValueError(f"panel {panel['title']!r}: unknown variable in {target['expr']!r}")
            queries.append(
                DashboardQuery(
                    panel_id=panel["id"],
                    panel_title=panel["title"],
                    ref_id=target["refId"],
                    datasource_uid=substitute(target["datasource"]["uid"], variables),
                    expr=remaining,
                    instant=bool(target.get("instant", False)),
                )
            )
    return queries
