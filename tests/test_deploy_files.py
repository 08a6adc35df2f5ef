"""Deployment files: Kubernetes manifests, systemd unit, example config and Dockerfile agree with each other."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "gmail-rejection-exporter.service"
SYSTEMD_CONFIG = DEPLOY / "systemd" / "config.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
PORT = 9791
EXPORTER = "gmail-rejection-exporter"

API_VERSIONS = {
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "DaemonSet": "apps/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def only(kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in manifests() if doc["kind"] == kind]
    return doc


def exporter_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == EXPORTER]
    return container


def test_every_yaml_file_under_deploy_parses() -> None:
    paths = sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) == 15
    for path in paths:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None], path


def test_kubernetes_manifests_have_the_expected_kinds_and_api_versions() -> None:
    kinds = sorted(doc["kind"] for doc in manifests())
    assert kinds == sorted(API_VERSIONS)
    for doc in manifests():
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], doc["kind"]
        assert doc["metadata"]["name"]


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_exporter_containers_expose_the_metrics_port_and_run_unprivileged(kind: str) -> None:
    workload = only(kind)
    container = exporter_container(workload)
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/var/lib/gmail-rejection-exporter"].get("readOnly") is not True
    assert all(
        mount.get("readOnly") for path, mount in mounts.items() if path != "/var/lib/gmail-rejection-exporter"
    )
    assert "--config.file=/etc/gmail-rejection-exporter/config.yml" in container["args"]
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_sidecar_shares_the_log_volume_with_the_mta() -> None:
    pod = only("Deployment")["spec"]["template"]["spec"]
    (mta,) = [c for c in pod["containers"] if c["name"] != EXPORTER]
    assert {"name": "maillog", "mountPath": "/var/log/mail"} in mta["volumeMounts"]
    assert {"name": "maillog", "mountPath": "/var/log/mail", "readOnly": True} in exporter_container(
        only("Deployment")
    )["volumeMounts"]
    assert {"name": "maillog", "emptyDir": {}} in pod["volumes"]


def test_daemonset_reads_the_host_log_directory() -> None:
    volumes = {v["name"]: v for v in only("DaemonSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["varlog"]["hostPath"] == {"path": "/var/log", "type": "Directory"}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/gmail-rejection-exporter"


def test_service_and_monitors_select_the_exporter_on_its_port() -> None:
    service, deployment, daemonset = only("Service"), only("Deployment"), only("DaemonSet")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": PORT, "targetPort": "metrics"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service_monitor = only("ServiceMonitor")["spec"]
    assert service_monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in service_monitor["endpoints"]] == [("metrics", "/metrics")]
    pod_monitor = only("PodMonitor")["spec"]
    assert (
        pod_monitor["selector"]["matchLabels"].items()
        <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [(e["port"], e["path"]) for e in pod_monitor["podMetricsEndpoints"]] == [("metrics", "/metrics")]
    # Both monitors name the job after app.kubernetes.io/name, which the exporter-down alert matches.
    assert service_monitor["jobLabel"] == pod_monitor["jobLabel"] == "app.kubernetes.io/name"
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == EXPORTER
    assert daemonset["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == EXPORTER


def test_configmap_and_systemd_config_have_the_same_keys_and_port() -> None:
    systemd_config = yaml.safe_load(SYSTEMD_CONFIG.read_text())
    kubernetes_config = yaml.safe_load(only("ConfigMap")["data"]["config.yml"])
    expected_keys = {
        "log": {"paths", "format"},
        "journal": {"enabled", "units"},
        "state": {"file"},
        "web": {"listen_address", "telemetry_path", "config_file"},
        "rules": {"files"},
        "google": {"hosts"},
        "metrics": {"sender_domains"},
        "queue": {"mta", "interval", "command"},
    }
    for config in (systemd_config, kubernetes_config):
        assert {key: set(value) for key, value in config.items()} == expected_keys
        assert config["web"]["listen_address"] == f":{PORT}"
        assert config["web"]["telemetry_path"] == "/metrics"
        assert config["state"]["file"] == "/var/lib/gmail-rejection-exporter/state.json"
        assert config["log"]["format"] == "auto"
        assert config["queue"] == {"mta": "auto", "interval": "60s", "command": None}
    assert systemd_config["log"]["paths"] == ["/var/log/mail.log"]
    assert {key: value for key, value in systemd_config.items() if key != "log"} == {
        key: value for key, value in kubernetes_config.items() if key != "log"
    }


def test_prometheusrule_is_the_output_of_its_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(KUBERNETES / "make-prometheusrule.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (KUBERNETES / "prometheusrule.yml").read_text() == result.stdout, (
        "regenerate: python3 deploy/kubernetes/make-prometheusrule.py > deploy/kubernetes/prometheusrule.yml"
    )
    rules = yaml.safe_load((DEPLOY / "prometheus" / "gmail-rejection-exporter.rules.yml").read_text())
    assert only("PrometheusRule")["spec"] == rules


def test_dockerfile_is_small_non_root_with_state_volume_and_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^VOLUME /var/lib/gmail-rejection-exporter$", text, re.MULTILINE)
    assert re.search(rf"^EXPOSE {PORT}$", text, re.MULTILINE)
    healthcheck = re.search(r"^HEALTHCHECK .*?\n(.*)$", text, re.MULTILINE)
    assert healthcheck and f"urllib.request.urlopen('http://127.0.0.1:{PORT}/-/healthy'" in healthcheck[1]
    assert "--no-cache-dir" in text


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_is_hardened() -> None:
    settings = unit_settings()
    expected = {
        "DynamicUser": ["yes"],
        "User": [EXPORTER],
        "SupplementaryGroups": ["adm"],
        "StateDirectory": [EXPORTER],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "NoNewPrivileges": ["yes"],
        "ProtectKernelTunables": ["yes"],
        "ProtectKernelModules": ["yes"],
        "ProtectKernelLogs": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "CapabilityBoundingSet": [""],
        "MemoryDenyWriteExecute": ["yes"],
        "ReadOnlyPaths": ["/var/log"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
    }
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert settings["SystemCallFilter"][0] == "@system-service"
    (nofile,) = settings["LimitNOFILE"]
    bound = subprocess.run(
        ["prlimit", f"--nofile={nofile}:{nofile}", "--", sys.executable, "-c",
         "from exporter.config import DEFAULT_MAX_CONNECTIONS as wanted\n"
         "from exporter.webserver import connection_bound\nprint(connection_bound(wanted), wanted)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    got, wanted = bound.stdout.split()
    assert got == wanted, "the unit's LimitNOFILE lowers the default connection bound"
    (exec_start,) = settings["ExecStart"]
    assert exec_start.split()[1:] == ["run", "--config.file=/etc/gmail-rejection-exporter/config.yml"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
        )

    # The exporter is not installed where the unit expects it: verify a copy whose ExecStart is /bin/true (every
    # other line unchanged), and check that the original's only complaint is that missing binary.
    copy = tmp_path / UNIT.name
    copy.write_text(re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text(), flags=re.MULTILINE))
    result = verify(copy)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    original = verify(UNIT)
    (exec_start,) = unit_settings()["ExecStart"]
    binary = exec_start.split()[0]
    if Path(binary).exists():
        assert (original.returncode, original.stdout + original.stderr) == (0, "")
    else:
        assert original.returncode != 0
        assert (original.stdout + original.stderr).strip().splitlines() == [
            f"{UNIT.name}: Command {binary} is not executable: No such file or directory"
        ]
