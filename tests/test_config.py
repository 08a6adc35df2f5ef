"""Invalid config files and flags: exit status 2 and a message naming file, line and key."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
from daemon_harness import run_exporter

from exporter import config


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("log:\n  paths: [/var/log/mail.log]\n  fromat: postfix\n", ":3: log.fromat: unknown key"),
        ("log:\n  paths: /var/log/mail.log\n", ":2: log.paths: must be a list of strings"),
        ("journal:\n  enabled: maybe\n", ":2: journal.enabled: must be true or false"),
        ("logs:\n  paths: []\n", ":1: logs: unknown section"),
        ("log:\n  paths: [a]\nweb:\n  listen_address: 9791\n", ":4: web.listen_address: must be a string"),
        (
            "log:\n  paths: [a]\nweb:\n  listen_address: 'localhost'\n",
            ":4: web.listen_address: 'localhost' is not",
        ),
        ("log:\n  paths: [a]\n  format: qmail\n", ":3: log.format: must be one of auto, postfix"),
        ("log: [\n", ":2: invalid YAML"),
        (
            "log:\n  paths: [a]\nweb:\n  read_timeout: soon\n",
            ":4: web.read_timeout: must be a duration such as 30s or 2m, not 'soon'",
        ),
        ("log:\n  paths: [a]\nweb:\n  read_timeout: 30\n", ":4: web.read_timeout: must be a string"),
        ("log:\n  paths: [a]\nweb:\n  max_connections: 0\n", ":4: web.max_connections: must be at least 1"),
        (
            "log:\n  paths: [a]\nweb:\n  max_connections: many\n",
            ":4: web.max_connections: must be an integer",
        ),
        ("log:\n  paths: [a]\ngoogle:\n  hosts: ['.']\n", ":4: google.hosts: must be host names"),
        (
            "log:\n  paths: [a]\ngoogle:\n  hosts: [relay..example.net]\n",
            ":4: google.hosts: must be host names",
        ),
        (
            "log:\n  paths: [a]\nweb:\n  runbook_url: javascript:alert(1)\n",
            ":4: web.runbook_url: must be an http:// or https:// URL",
        ),
        (
            "log:\n  paths: [a]\nweb:\n  runbook_url: 'https://wiki.example.com/a\"><script>'\n",
            ":4: web.runbook_url: must be an http:// or https:// URL",
        ),
    ],
)
def test_invalid_config_exits_2_naming_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(text)
    for command in ("run", "check-config"):
        result = run_exporter(command, "--config.file", str(config), "--state.file", str(tmp_path / "s.json"))
        assert result.returncode == 2, result
        assert f"{config}{where}" in result.stderr


def test_invalid_web_config_exits_2(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: plaintext\ntls_server_config:\n  cert_file: x\n")
    result = run_exporter("run", "--log.path", "x", "--web.config.file", str(web))
    assert result.returncode == 2
    assert f"{web}:2: basic_auth_users.alice: must be a bcrypt hash" in result.stderr
    web.write_text("basic_auth_users:\n  alice: $2y$10$tooShort\n")  # would never let alice in
    result = run_exporter("check-config", "--log.path", "x", "--web.config.file", str(web))
    assert result.returncode == 2
    assert f"{web}:2: basic_auth_users.alice: must be a bcrypt hash" in result.stderr
    web.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: Sometimes\n"
    )
    result = run_exporter("check-config", "--log.path", "x", "--web.config.file", str(web))
    assert result.returncode == 2
    assert f"{web}:4: tls_server_config.client_auth_type: must be one of NoClientCert" in result.stderr


def test_bad_flag_and_missing_input_exit_2(tmp_path: Path) -> None:
    result = run_exporter("run", "--log.path", "x", "--web.listen-address", "nowhere")
    assert result.returncode == 2
    assert "command line: web.listen_address: 'nowhere' is not [host]:port" in result.stderr
    result = run_exporter("run")
    assert result.returncode == 2
    assert "command line: log.paths: nothing to read" in result.stderr
    result = run_exporter("check-config", "--log.path", "x", "--web.read-timeout", "0s")
    assert result.returncode == 2
    assert "command line: web.read_timeout: must be a duration such as 30s or 2m, not '0s'" in result.stderr


@pytest.mark.parametrize("text", ["", "30", "1s1m", "-1s", "1.5s", "0s"])
def test_what_is_not_a_prometheus_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(text)


def test_valid_config_checks_ok(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(
        "log:\n  paths: [/var/log/mail.log]\n  format: auto\njournal:\n  enabled: false\n"
        "web:\n  listen_address: ':9791'\n  telemetry_path: /metrics\n  config_file: null\n"
        "  read_timeout: 1m30s\n  max_connections: 64\n  runbook_url: https://wiki.example.com/runbook\n"
        "rules:\n  files: []\ngoogle:\n  hosts: []\nmetrics:\n  sender_domains: [example.com]\n"
    )
    result = run_exporter("check-config", "--config.file", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: OK")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("log:\n  paths: [a]\nqueue:\n  mta: qmail\n", ":4: queue.mta: 'qmail' is not one of auto, postfix"),
        ("log:\n  paths: [a]\nqueue:\n  interval: 60\n", ":4: queue.interval: must be a string, not int 60"),
        (
            "log:\n  paths: [a]\nqueue:\n  interval: 1 minute\n",
            ":4: queue.interval: '1 minute' is not a duration",
        ),
        ("log:\n  paths: [a]\nqueue:\n  interval: 30m1h\n", ":4: queue.interval: '30m1h' is not a duration"),
        (
            "log:\n  paths: [a]\nqueue:\n  interval: 0s\n",
            ":4: queue.interval: '0s': the interval must be longer",
        ),
        ("log:\n  paths: [a]\nqueue:\n  mta: postfix\n  command: ''\n", ":5: queue.command: empty command"),
        (
            'log:\n  paths: [a]\nqueue:\n  command: "sudo -n \'postqueue"\n',
            ":4: queue.command: No closing quotation",
        ),
        (
            "log:\n  paths: [a]\nqueue:\n  command: sudo -n mailq\n",
            ":4: queue.command: cannot tell which MTA",
        ),
        ("log:\n  paths: [a]\nqueue:\n  intervall: 30s\n", ":4: queue.intervall: unknown key"),
    ],
)
def test_invalid_queue_settings_exit_2_naming_file_line_and_key(
    tmp_path: Path, text: str, where: str
) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(text)
    result = run_exporter(
        "check-config", "--config.file", str(config), "--state.file", str(tmp_path / "s.json")
    )
    assert result.returncode == 2, result
    assert f"{config}{where}" in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--queue.mta", "exchange"], "command line: queue.mta: 'exchange' is not one of"),
        (["--queue.interval", "90"], "command line: queue.interval: '90' is not a duration like 30s"),
        (["--queue.command", " "], "command line: queue.command: empty command"),
    ],
)
def test_invalid_queue_flags_exit_2(flags: list[str], message: str) -> None:
    result = run_exporter("check-config", "--log.path", "x", *flags)
    assert result.returncode == 2, result
    assert message in result.stderr


def test_queue_settings_from_file_and_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "exporter.yml"
    config_file.write_text(
        "log:\n  paths: [a]\nqueue:\n  mta: exim\n  interval: 1h30m\n  command: docker exec 'mail relay' exim -bpr\n"
    )
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    loaded = config.load(parser.parse_args(["--config.file", str(config_file)]))
    assert loaded.queue == config.QueueConfig(
        mta="exim", interval=5400.0, command=("docker", "exec", "mail relay", "exim", "-bpr")
    )
    flagged = config.load(
        parser.parse_args(
            ["--config.file", str(config_file), "--queue.mta", "none", "--queue.interval", "45s"]
        )
    )
    assert (flagged.queue.mta, flagged.queue.interval) == ("none", 45.0)
    defaults = config.load(parser.parse_args(["--log.path", "x"]))
    assert defaults.queue == config.QueueConfig(mta="auto", interval=60.0, command=())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1500ms", 1.5),
        ("2w", 1209600.0),
        ("500ms", 0.5),
    ],
)
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


def test_check_config_takes_the_file_as_its_argument(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("log:\n  paths: [/var/log/mail.log]\n")
    result = run_exporter("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK")
    bad = tmp_path / "bad.yml"
    bad.write_text("log:\n  pahts: [/var/log/mail.log]\n")
    result = run_exporter("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: log.pahts: unknown key" in result.stderr
    result = run_exporter("check-config", str(path), "--config.file", str(bad))
    assert (result.returncode, result.stderr) == (
        2,
        "gmail-rejection-exporter: give the config file once: FILE or --config.file\n",
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["clasify", "x.log"], "gmail-rejection-exporter: error: unknown command 'clasify' (did you mean classify?)"),
        (["check-rule"], "gmail-rejection-exporter: error: unknown command 'check-rule' (did you mean check-rules?)"),
        (["mail.log"], "gmail-rejection-exporter: error: unknown command 'mail.log' (commands: run, classify, "
                       "report, check-config, check-rules, healthcheck, demo; a log to follow goes after --log.path)"),
        (["--log.pth", "x"], "gmail-rejection-exporter run: error: unrecognized arguments: --log.pth "
                             "(did you mean --log.path?) x"),
        (["check-config", "--log.path", "x", "--web.listen-adress=:1"], "gmail-rejection-exporter check-config: "
         "error: unrecognized arguments: --web.listen-adress=:1 (did you mean --web.listen-address?)"),
        (["report", "--formt", "x.log"], "gmail-rejection-exporter report: error: unrecognized arguments: --formt "
                                         "(did you mean --format?)"),
        (["run", "--zzz"], "gmail-rejection-exporter run: error: unrecognized arguments: --zzz"),
    ],
)  # fmt: skip
def test_a_mistyped_command_or_flag_gets_a_did_you_mean(args: list[str], error: str) -> None:
    result = run_exporter(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: gmail-rejection-exporter")
    assert result.stderr.splitlines()[-1] == error


def test_a_port_in_use_names_the_flag_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_exporter(
            "--log.path", str(tmp_path / "mail.log"), "--state.file", str(tmp_path / "state.json"),
            "--web.listen-address", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"ERROR exporter: cannot listen on 127.0.0.1:{port}: Address already in use; another process listens "
        "there (another exporter?): stop it, or pick a free port with --web.listen-address (web.listen_address "
        "in the config file)"
    )
