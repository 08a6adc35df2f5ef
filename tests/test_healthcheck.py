"""`healthcheck` against a real exporter: it finds it through the same config and flags as `run` (another port,
TLS, basic auth, client certificates) and exits 0 only when /-/healthy answers 200."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
from daemon_harness import REPO, Exporter, free_port
from test_web_security import _self_signed, https_exporter


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "healthcheck", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def same_flags(exporter: Exporter) -> list[str]:
    """The flags the exporter runs with (after `python -m exporter run`)."""
    command = exporter.command()
    assert command[1:4] == ["-m", "exporter", "run"]
    return command[4:]


@pytest.fixture
def secured(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A web config with TLS and a basic auth user, a file with that user's password, and a client certificate
    and key the web config trusts: (web config, password file, client cert, client key)."""
    cert, key = _self_signed(tmp_path, "server")
    client_cert, client_key = _self_signed(tmp_path, "client")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=6)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {client_cert}\n"
        f"  client_auth_type: VerifyClientCertIfGiven\nbasic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    return web, password, client_cert, client_key


def test_healthcheck_finds_an_exporter_with_tls_and_basic_auth_on_another_port(
    tmp_path: Path, secured: tuple[Path, Path, Path, Path]
) -> None:
    web, password, client_cert, client_key = secured
    context = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
    with https_exporter(tmp_path, web.read_text(), context, auth=("prometheus", "s3cret")) as exporter:
        url = f"https://127.0.0.1:{exporter.port}/-/healthy"
        flags = same_flags(exporter)
        ok = healthcheck(
            *flags, "--healthcheck.user", "prometheus", "--healthcheck.password-file", str(password)
        )
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"healthy: {url}: 200 Healthy\n", "")
        with_cert = healthcheck(
            *flags, "--healthcheck.user", "prometheus", "--healthcheck.password-file", str(password),
            "--healthcheck.cert-file", str(client_cert), "--healthcheck.key-file", str(client_key),
        )  # fmt: skip
        assert (with_cert.returncode, with_cert.stdout) == (0, f"healthy: {url}: 200 Healthy\n")
        anonymous = healthcheck(*flags)
        assert (anonymous.returncode, anonymous.stdout) == (
            1,
            f"unhealthy: {url}: 401 Unauthorized (basic auth is on: give --healthcheck.user and "
            "--healthcheck.password-file)\n",
        )
        password.write_text("guess\n")
        wrong = healthcheck(
            *flags, "--healthcheck.user", "prometheus", "--healthcheck.password-file", str(password)
        )
        assert (wrong.returncode, wrong.stdout) == (
            1,
            f"unhealthy: {url}: 401 Unauthorized (wrong user or password)\n",
        )
        exporter.stop()
    gone = healthcheck(
        *flags, "--healthcheck.user", "prometheus", "--healthcheck.password-file", str(password)
    )
    assert gone.returncode == 1
    assert gone.stdout.startswith(f"unhealthy: {url}: ") and "refused" in gone.stdout


def test_healthcheck_reads_the_config_file_run_reads(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "exporter.yml"
    config.write_text(
        f"log:\n  paths: [mail.log]\nstate:\n  file: state.json\nweb:\n  listen_address: ':{port}'\n"
    )
    (tmp_path / "mail.log").touch()
    down = healthcheck("--config.file", str(config))
    assert (down.returncode, down.stdout.split(": ")[0]) == (1, "unhealthy")
    with subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--config.file", str(config)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            up = healthcheck("--config.file", str(config))
            while up.returncode != 0 and time.monotonic() < deadline:
                assert proc.poll() is None, "the exporter exited"
                time.sleep(0.2)
                up = healthcheck("--config.file", str(config))
            assert (up.returncode, up.stdout) == (
                0,
                f"healthy: http://127.0.0.1:{port}/-/healthy: 200 Healthy\n",
            )
        finally:
            proc.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log.path", "x", "--web.listen-address", "nowhere"], "command line: web.listen_address: 'nowhere' is not"),
        (["--log.path", "x", "--healthcheck.user", "prometheus"], "give --healthcheck.user with --healthcheck.password-file"),
        (["--log.path", "x", "--web.config.file", "/nonexistent/web.yml"], "/nonexistent/web.yml: cannot read"),
    ],
)  # fmt: skip
def test_a_config_healthcheck_cannot_use_is_unhealthy_not_a_reserved_status(
    args: list[str], message: str
) -> None:
    result = healthcheck(*args)
    assert result.returncode == 1
    assert message in result.stderr
