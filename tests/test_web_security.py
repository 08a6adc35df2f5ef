"""TLS and basic auth from an exporter-toolkit web config: wrong or missing credentials get 401."""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from daemon_harness import Exporter


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def https_exporter(
    tmp_path: Path, web_config: str, context: ssl.SSLContext, auth: tuple[str, str] | None = None
) -> Exporter:
    """An exporter following an empty log and serving HTTPS as `web_config` (the text of its web.yml) says."""
    web = tmp_path / "web.yml"
    web.write_text(web_config)
    log = tmp_path / "mail.log"
    log.touch()
    return Exporter(
        tmp_path, "--log.path", str(log), "--web.config.file", str(web),
        scheme="https", ssl_context=context, auth=auth,
    )  # fmt: skip


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_tls_and_basic_auth(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "server")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=6)).decode()
    web = (
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    client = ssl.create_default_context(cafile=str(cert))
    with https_exporter(tmp_path, web, client, auth=("prometheus", "s3cret")) as exporter:
        status, body = exporter.get("/metrics")
        assert status == 200 and b"gmail_deliveries_total" in body
        exporter.auth = None
        assert exporter.get("/metrics")[0] == 401
        assert exporter.get("/metrics", headers=_basic("prometheus", "wrong"))[0] == 401
        assert exporter.get("/", headers=_basic("nobody", "s3cret"))[0] == 401
        assert exporter.get("/-/reload", method="POST", headers=_basic("prometheus", "nope"))[0] == 401
        request = urllib.request.Request(exporter.base + "/-/healthy", headers=_basic("prometheus", "s3cret"))
        with urllib.request.urlopen(request, context=client, timeout=5) as response:
            assert response.headers["X-Frame-Options"] == "deny"
        with pytest.raises(OSError):  # plain HTTP to the TLS port gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/-/healthy", timeout=5)
        with pytest.raises(OSError):  # a client that does not trust the certificate
            urllib.request.urlopen(
                exporter.base + "/-/healthy", context=ssl.create_default_context(), timeout=5
            )


def test_client_certificate_required(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "server")
    client_cert, client_key = _self_signed(tmp_path, "client")
    web = (
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {client_cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS12\n"
    )
    with_cert = ssl.create_default_context(cafile=str(cert))
    with_cert.load_cert_chain(str(client_cert), str(client_key))
    with https_exporter(tmp_path, web, with_cert) as exporter:
        assert exporter.get("/-/healthy") == (200, b"Healthy\n")
        without = ssl.create_default_context(cafile=str(cert))
        with pytest.raises(OSError):
            urllib.request.urlopen(exporter.base + "/-/healthy", context=without, timeout=5).read()
