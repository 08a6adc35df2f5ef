"""Config trouble beyond tests/test_config.py and test_reload.py: the exact message at start for YAML syntax, rules
and web config errors; on reload (POST /-/reload and SIGHUP) each keeps the running config and its counters."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from daemon_harness import Exporter, append, bounced, deferred, run_exporter, sent_lines

PROG = "gmail-rejection-exporter"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "exporter.yml",
            "log:\n  paths: [mail.log]\n  format: postfix\n    bad: indent\n",
            "{file}:4: invalid YAML: mapping values are not allowed here",
        ),
        (
            "mine.yml",
            'rules:\n  - {reason: my_rule, category: spam, phrases: ["ab"]}\n',
            "{file}:2: phrases: 'ab' is too short to match reliably (3+ letters)",
        ),
        (
            "mine.yml",
            'rules:\n  - {reason: my_rule, category: spam, phrase: ["abc"]}\n',
            "{file}:2: phrase: unknown rule key; expected one of: reason, category, code, enhanced_code, origin, "
            "phrases, comment",
        ),
        (
            "web.yml",
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "{file}:1: tls_server_config: cannot use certificate or key: [Errno 2] No such file or directory",
        ),
        (
            "web.yml",
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS14\n",
            "{file}:4: tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13",
        ),
    ],
)
def test_bad_file_at_start_exits_2_with_the_exact_message(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    bad = tmp_path / name
    bad.write_text(text)
    args = {
        "exporter.yml": ["--config.file", str(bad)],
        "mine.yml": ["--log.path", "mail.log", "--rules.file", str(bad)],
        "web.yml": ["--log.path", "mail.log", "--web.config.file", str(bad)],
    }[name]
    result = run_exporter("run", *args, "--state.file", str(tmp_path / "state.json"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"{PROG}: {message.format(file=bad)}\n"
    assert not (tmp_path / "state.json").exists()


BROKEN = {
    "invalid YAML": ("config", "log:\n  paths: [{log}]\n  format: [postfix\n", "{config}:4: invalid YAML"),
    "bad rule": (
        "rules",
        'rules:\n  - {{reason: x_y, category: spam, phrases: ["ab"]}}\n',
        "{rules}:2: phrases:",
    ),
    "bad web config": ("web", "basic_auth_users:\n  alice: plaintext\n", "{web}:2: basic_auth_users.alice:"),
}


@pytest.mark.parametrize("how", ["POST", "SIGHUP"])
@pytest.mark.parametrize("what", sorted(BROKEN))
def test_failed_reload_keeps_running_with_the_old_config_and_counters(
    tmp_path: Path, how: str, what: str
) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    files = {"config": tmp_path / "exporter.yml", "rules": tmp_path / "mine.yml", "web": tmp_path / "web.yml"}
    files["rules"].write_text(
        "rules:\n  - {reason: my_rate_limit, category: rate_limit, enhanced_code: [4.2.1], "
        'phrases: ["receiving mail", "quickly"]}\n'
    )
    files["web"].write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    files["config"].write_text(
        f"log:\n  paths: [{log}]\nrules:\n  files: [{files['rules']}]\nweb:\n  config_file: {files['web']}\n"
    )
    with Exporter(tmp_path, "--config.file", str(files["config"])) as exporter:
        append(log, sent_lines(0, 3) + deferred(3) + bounced(4))
        exporter.wait_for("gmail_rejections_total", 1, reason="my_rate_limit")
        before = exporter.scrape()

        key, text, message = BROKEN[what]
        files[key].write_text(text.format(log=log))
        expected_error = message.format(**{k: str(v) for k, v in files.items()})
        if how == "POST":
            status, body = exporter.get("/-/reload", method="POST")
            assert status == 500 and body.decode().startswith(f"Reload failed: {expected_error}"), body
        else:
            assert exporter.proc is not None
            exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until(
            lambda: exporter.value("gmail_exporter_config_last_reload_successful") == 0, 10, "a failed reload"
        )
        after = exporter.scrape()
        for name in ("gmail_deliveries_total", "gmail_rejections_total", "gmail_exporter_lines_total"):
            assert any(v for k, v in before.items() if k[0] == name)
            assert {k: v for k, v in after.items() if k[0] == name} == {
                k: v for k, v in before.items() if k[0] == name
            }
        success = ("gmail_exporter_config_last_reload_success_timestamp_seconds", frozenset())
        assert after[success] == before[success]
        append(log, deferred(5))  # the old rules still classify
        exporter.wait_for("gmail_rejections_total", 2, reason="my_rate_limit")
        assert exporter.proc is not None and exporter.proc.poll() is None
        status, _ = exporter.get("/-/healthy")
        assert status == 200
        output = exporter.output()
    assert f"ERROR exporter: reload failed, keeping the running configuration: {expected_error}" in output
