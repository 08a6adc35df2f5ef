"""Deployment files: Kubernetes manifests, systemd unit, example config and Dockerfile agree with each other."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
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
INSTALLED_BINARY = "/opt/gmail-rejection-exporter/bin/gmail-rejection-exporter"
"""Where README's install puts the exporter (a venv made from the wheel of `make dist`)."""

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


def only(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


NODE = ("DaemonSet", EXPORTER)
"""The DaemonSet that reads the node's own mail log."""
POD_LOGS = ("DaemonSet", f"{EXPORTER}-pod-logs")
"""The DaemonSet that reads the container logs of MTA pods."""


def exporter_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == EXPORTER]
    return container


def test_every_yaml_file_under_deploy_parses() -> None:
    paths = sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) == 16
    for path in paths:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None], path


def test_kubernetes_manifests_have_the_expected_kinds_and_api_versions() -> None:
    kinds = sorted(doc["kind"] for doc in manifests())
    assert kinds == sorted([*API_VERSIONS, "DaemonSet"])
    for doc in manifests():
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], doc["kind"]
        assert doc["metadata"]["name"]


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_exporter_containers_expose_the_metrics_port_and_run_unprivileged(kind: str) -> None:
    workload = only(kind, EXPORTER if kind == "DaemonSet" else None)
    container = exporter_container(workload)
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    security = container["securityContext"]
    # What Pod Security's "restricted" level asks of a container.
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
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


def test_sidecar_never_takes_the_mta_out_of_its_service() -> None:
    # A pod is in its Services only while every container is ready; the exporter is not ready while it reads
    # what was logged during a restart.
    pod = only("Deployment")["spec"]["template"]["spec"]
    exporter = exporter_container(only("Deployment"))
    assert "readinessProbe" not in exporter and "startupProbe" not in exporter
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert [c["name"] for c in pod["containers"]] == ["postfix", EXPORTER]
    assert "readinessProbe" in only(*NODE)["spec"]["template"]["spec"]["containers"][0]  # in no Service


def test_sidecar_log_in_the_emptydir_is_rotated_and_old_generations_deleted() -> None:
    (mta,) = [
        c for c in only("Deployment")["spec"]["template"]["spec"]["containers"] if c["name"] != EXPORTER
    ]
    command = mta["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    script = command[2]
    # Rename rotation by Postfix itself (postlogd reopens), in a loop beside Postfix in the foreground.
    assert re.search(r"while sleep \d+; do\s+postfix logrotate\s", script)
    assert "find /var/log/mail -name 'mail.log.*' -mtime +7 -delete" in script
    assert script.rstrip().endswith("exec postfix start-fg")
    shell = shutil.which("sh")
    if shell is not None:
        syntax = subprocess.run([shell, "-n", "-c", script], capture_output=True, text=True, timeout=60)
        assert syntax.returncode == 0, syntax.stderr


def test_daemonset_reads_the_host_log_directory() -> None:
    volumes = {v["name"]: v for v in only(*NODE)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["varlog"]["hostPath"] == {"path": "/var/log", "type": "Directory"}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/gmail-rejection-exporter"


def test_daemonset_says_which_pod_security_level_its_host_paths_need() -> None:
    text = (KUBERNETES / "daemonset.yml").read_text()
    assert "kubectl label namespace mail-monitoring pod-security.kubernetes.io/enforce=privileged" in text
    assert '"privileged" level (baseline and restricted forbid them' in text


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects pods with these labels."""
    if not selector["matchLabels"].items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_daemonsets_select_their_own_pods_only() -> None:
    node, pod_logs = only(*NODE), only(*POD_LOGS)
    assert not selects(node["spec"]["selector"], pod_logs["spec"]["template"]["metadata"]["labels"])
    assert not selects(pod_logs["spec"]["selector"], node["spec"]["template"]["metadata"]["labels"])


def test_pod_logs_daemonset_reads_the_nodes_pod_logs_as_their_owner_and_changes_nothing() -> None:
    workload = only(*POD_LOGS)
    pod = workload["spec"]["template"]["spec"]
    container = exporter_container(workload)
    args = container["args"]
    assert "--config.file=/etc/gmail-rejection-exporter/config.yml" in args
    assert "--log.path=/var/log/pods/mail_*/postfix/*.log" in args
    security = container["securityContext"]
    # containerd writes pod logs root:root 0640, CRI-O 0600: read as their owner, without any capability.
    assert security["runAsUser"] == 0 and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/var/log/pods"]["readOnly"] is True
    assert all(
        mount.get("readOnly") for path, mount in mounts.items() if path != "/var/lib/gmail-rejection-exporter"
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["pods"]["hostPath"] == {"path": "/var/log/pods", "type": "Directory"}
    node_state = {v["name"]: v for v in only(*NODE)["spec"]["template"]["spec"]["volumes"]}["state"]
    assert volumes["state"]["hostPath"]["path"] != node_state["hostPath"]["path"]  # a state file each
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT}]
    text = (KUBERNETES / "daemonset-pod-logs.yml").read_text()
    assert "kubectl label namespace mail-monitoring pod-security.kubernetes.io/enforce=privileged" in text


def test_service_and_monitors_select_the_exporter_on_its_port() -> None:
    service, deployment = only("Service"), only("Deployment")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": PORT, "targetPort": "metrics"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service_monitor = only("ServiceMonitor")["spec"]
    assert service_monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in service_monitor["endpoints"]] == [("metrics", "/metrics")]
    pod_monitor = only("PodMonitor")["spec"]
    for daemonset in (only(*NODE), only(*POD_LOGS)):
        assert selects(pod_monitor["selector"], daemonset["spec"]["template"]["metadata"]["labels"])
        assert daemonset["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == EXPORTER
    assert not selects(pod_monitor["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert [(e["port"], e["path"]) for e in pod_monitor["podMetricsEndpoints"]] == [("metrics", "/metrics")]
    # Both monitors name the job after app.kubernetes.io/name, which the exporter-down alert matches.
    assert service_monitor["jobLabel"] == pod_monitor["jobLabel"] == "app.kubernetes.io/name"
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == EXPORTER


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


def test_configs_name_the_journal_unit_postfix_logs_from_as_readme_does() -> None:
    readme_units = re.findall(r"--journal\.unit (\S+)", (ROOT / "README.md").read_text())
    assert readme_units == ["postfix@-.service"]
    for config in (
        yaml.safe_load(SYSTEMD_CONFIG.read_text()),
        yaml.safe_load(only("ConfigMap")["data"]["config.yml"]),
    ):
        assert config["journal"]["units"] == readme_units
    wrapper = Path("/lib/systemd/system/postfix.service")
    if wrapper.exists() and Path("/lib/systemd/system/postfix@.service").exists():
        # Debian's postfix.service only starts the instances: the daemons (and their log lines) are postfix@-'s.
        assert re.search(r"^ExecStart=/bin/true$", wrapper.read_text(), re.MULTILINE)


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


def dockerfile_instruction(name: str) -> str:
    """The (last) instruction `name` of the final stage, continuation lines joined."""
    final_stage = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1]
    joined = final_stage.replace("\\\n", " ")
    return re.findall(rf"^{name} (.*)$", joined, re.MULTILINE)[-1]


def test_dockerfile_is_small_non_root_with_state_volume_and_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim", "python:3.11-slim"]
    # Group adm (GID 4): a host's /var/log/mail.log is root:adm 0640.
    assert dockerfile_instruction("USER") == "10001:4"
    assert re.search(r"useradd --system --uid 10001 --gid adm ", text)
    assert dockerfile_instruction("VOLUME") == "/var/lib/gmail-rejection-exporter"
    assert dockerfile_instruction("EXPOSE") == str(PORT)
    assert "--no-cache-dir" in text


def test_dockerfile_health_check_reads_the_config_that_run_reads() -> None:
    config = "/etc/gmail-rejection-exporter/config.yml"
    assert dockerfile_instruction("COPY") == f"deploy/systemd/config.yml {config}"
    assert json.loads(dockerfile_instruction("CMD")) == ["run", f"--config.file={config}"]
    assert json.loads(dockerfile_instruction("ENTRYPOINT")) == [EXPORTER]
    health = dockerfile_instruction("HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert json.loads(command) == [EXPORTER, "healthcheck", f"--config.file={config}"]
    assert "127.0.0.1" not in health and str(PORT) not in health
    assert re.fullmatch(r"(--\S+=\S+\s*)+", options.strip())
    image_config = yaml.safe_load(SYSTEMD_CONFIG.read_text())
    assert image_config["state"]["file"].startswith(dockerfile_instruction("VOLUME") + "/")


def docker_context() -> list[str]:
    """The tracked files .dockerignore lets into the build context (its patterns: last match wins, a pattern
    that matches a directory matches what is in it)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in ("", "#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    sent = []
    for path in tracked:
        parents = [str(Path(*Path(path).parts[: i + 1])) for i in range(len(Path(path).parts))]
        included = True
        for pattern in patterns:
            exception = pattern.startswith("!")
            if any(fnmatch.fnmatchcase(p, pattern.lstrip("!")) for p in parents):
                included = exception
        if included:
            sent.append(path)
    return sent


def test_the_build_context_holds_what_the_image_copies_and_nothing_else(tmp_path: Path) -> None:
    sent = docker_context()
    assert not [
        p for p in sent if p.startswith(("tests/", "bench/", "grafana/", ".ci/", "deploy/kubernetes/"))
    ]
    copied = re.findall(r"^COPY (?!--from)(.*) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in sent), source
    # The build stage's `pip wheel .`, on exactly that context (without the dependencies: no download).
    context = tmp_path / "context"
    for path in sent:
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / path).is_symlink():
            target.symlink_to(os.readlink(ROOT / path))
        else:
            shutil.copy2(ROOT / path, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("exporter/data/rules.yml") == (ROOT / "config" / "rules.yml").read_bytes()


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
    assert exec_start.split() == [
        INSTALLED_BINARY,
        "run",
        "--config.file=/etc/gmail-rejection-exporter/config.yml",
    ]


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def systemd_verify(path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of a unit file."""
    return subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def unit_with_binary(directory: Path, binary: str) -> Path:
    """A copy of the unit in `directory` whose ExecStart runs `binary` (its arguments and every other line
    unchanged)."""
    copy = directory / UNIT.name
    copy.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", UNIT.read_text(), count=1, flags=re.MULTILINE)
    )
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # The exporter is not installed where the unit expects it (tests/test_install.py verifies the unit with a
    # freshly installed one): verify a copy whose ExecStart is /bin/true, and check that the original's only
    # complaint is that missing binary.
    result = systemd_verify(unit_with_binary(tmp_path, "/bin/true"))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    original = systemd_verify(UNIT)
    (exec_start,) = unit_settings()["ExecStart"]
    binary = exec_start.split()[0]
    if Path(binary).exists():
        assert (original.returncode, original.stdout + original.stderr) == (0, "")
    else:
        assert original.returncode != 0
        assert (original.stdout + original.stderr).strip().splitlines() == [
            f"{UNIT.name}: Command {binary} is not executable: No such file or directory"
        ]
