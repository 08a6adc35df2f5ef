"""Security with real clients (curl and Python's ssl), beyond tests/test_web_security.py: TLS 1.2 minimum, client
certificates and basic auth as curl sees them; the systemd unit's exposure score; a non-root container image."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from daemon_harness import REPO, Exporter
from test_web_security import _self_signed, https_exporter

UNIT = REPO / "deploy" / "systemd" / "gmail-rejection-exporter.service"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
EXPOSURE_BOUND = 2.5
"""systemd-analyze rates 0-10 (lower is better); up to 3.9 is "OK"."""

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture
def tls_exporter(tmp_path: Path) -> Iterator[tuple[Exporter, Path, Path, Path]]:
    """An exporter with TLS (client certificates required) and basic auth: (exporter, CA, client cert, key)."""
    cert, key = _self_signed(tmp_path, "server")
    client_cert, client_key = _self_signed(tmp_path, "client")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=6)).decode()
    web = (
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {client_cert}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.load_cert_chain(str(client_cert), str(client_key))
    with https_exporter(tmp_path, web, context, auth=("prometheus", "s3cret")) as exporter:
        yield exporter, cert, client_cert, client_key


def _curl(exporter: Exporter, *args: str) -> tuple[int, str]:
    """curl's exit status and the HTTP status it printed."""
    result = subprocess.run(
        ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--max-time", "10", *args,
         f"{exporter.base}/metrics"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout


@needs_curl
def test_curl_sees_401_for_a_wrong_password_and_needs_a_client_certificate(
    tls_exporter: tuple[Exporter, Path, Path, Path],
) -> None:
    exporter, ca, cert, key = tls_exporter
    with_cert = ("--cacert", str(ca), "--cert", str(cert), "--key", str(key))
    assert _curl(exporter, *with_cert, "--user", "prometheus:s3cret") == (0, "200")
    assert _curl(exporter, *with_cert, "--user", "prometheus:wrong") == (0, "401")
    assert _curl(exporter, *with_cert) == (0, "401")
    status, code = _curl(exporter, "--cacert", str(ca), "--user", "prometheus:s3cret")
    # The server ends the handshake: curl fails in it (35) or on its first write or read (55, 56); no HTTP at all.
    assert status in (35, 55, 56) and code == "000"
    assert _curl(exporter, *with_cert, "--user", "prometheus:s3cret", "--tlsv1.2", "--tls-max", "1.2") == (
        0,
        "200",
    )
    status, code = _curl(exporter, *with_cert, "--user", "prometheus:s3cret", "--tlsv1.1", "--tls-max", "1.1")
    assert status == 35 and code == "000"


def _handshake(exporter: Exporter, ca: Path, cert: Path, key: Path, version: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    with warnings.catch_warnings():  # Python deprecates TLS 1.1; offering it is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with (
        socket.create_connection(("127.0.0.1", exporter.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def test_tls_1_2_and_1_3_are_accepted_and_1_1_is_refused(
    tls_exporter: tuple[Exporter, Path, Path, Path],
) -> None:
    exporter, ca, cert, key = tls_exporter
    assert _handshake(exporter, ca, cert, key, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert _handshake(exporter, ca, cert, key, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(
        ssl.SSLError, match=r"(?i)protocol version|no protocols available|unsupported protocol"
    ):
        _handshake(exporter, ca, cert, key, ssl.TLSVersion.TLSv1_1)
    assert exporter.get("/-/healthy") == (200, b"Healthy\n")  # a refused handshake does not hurt the server


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_exposure_score_is_low() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    score, verdict = float(found[1]), found[2]
    print(f"\nsystemd-analyze security: exposure {score} {verdict}")
    assert score <= EXPOSURE_BOUND and verdict == "OK"


def test_container_runs_as_a_non_root_user_from_start_to_end() -> None:
    """Checked in the Dockerfile; tests/test_container.py runs the image where a container engine answers."""
    final_stage = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.MULTILINE)
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0 and (not group or int(group) > 0)
    after_user = final_stage.split(f"USER {users[-1]}", 1)[1]
    assert not re.search(r"^(RUN|USER)\b", after_user, re.MULTILINE)  # nothing runs as root afterwards
    entrypoint = re.search(r"^ENTRYPOINT\s+(.*)$", final_stage, re.MULTILINE)
    assert entrypoint and not re.search(r"\b(su|sudo|gosu|su-exec|setpriv)\b", entrypoint[1])
    assert re.search(rf"useradd[^\n]*--uid {user}\b", final_stage)
