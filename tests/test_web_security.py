"""TLS and basic auth from an exporter-toolkit web config: wrong or missing credentials get 401."""

from __future__ import annotations

import base64
import ssl
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from daemon_harness import Exporter

from exporter import webconfig
from exporter.webconfig import WebSecurity


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def https_exporter(
    tmp_path: Path,
    web_config: str,
    context: ssl.SSLContext,
    *args: str,
    auth: tuple[str, str] | None = None,
    kind: type[Exporter] = Exporter,
) -> Exporter:
    """An exporter following an empty log and serving HTTPS as `web_config` (the text of its web.yml) says,
    with more flags `args`."""
    web = tmp_path / "web.yml"
    web.write_text(web_config)
    log = tmp_path / "mail.log"
    log.touch()
    return kind(
        tmp_path, "--log.path", str(log), "--web.config.file", str(web), *args,
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


def _median_failure_seconds(security: WebSecurity, users: list[str], rounds: int) -> dict[str, float]:
    """The median time of a failed check with a wrong password, per user, the users taking turns so that
    whatever else runs on the machine slows each of them alike."""
    times: dict[str, list[float]] = {user: [] for user in users}
    for _ in range(rounds):
        for user in users:
            start = time.perf_counter()
            assert not security.authorised(_basic(user, "wrong password")["Authorization"])
            times[user].append(time.perf_counter() - start)
    return {user: statistics.median(seconds) for user, seconds in times.items()}


def test_a_wrong_password_takes_as_long_for_an_unknown_user_as_for_an_existing_one(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=12)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    medians = _median_failure_seconds(webconfig.load(str(web)), ["prometheus", "nobody"], rounds=5)
    print(f"\nwrong password: {medians}")
    assert 0.6 <= medians["prometheus"] / medians["nobody"] <= 1.6


def test_a_user_with_a_cheaper_hash_takes_as_long_to_fail_as_an_unknown_one(tmp_path: Path) -> None:
    """A file mixing costs: checking the cheaper user alone would tell that user from an unknown name."""
    web = tmp_path / "web.yml"
    strong = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=11)).decode()
    cheap = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=7)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{strong}'\n  legacy: '{cheap}'\n")
    security = webconfig.load(str(web))
    medians = _median_failure_seconds(security, ["legacy", "nobody"], rounds=5)
    print(f"\nwrong password: {medians}")
    assert 0.6 <= medians["legacy"] / medians["nobody"] <= 1.6
    assert security.authorised(_basic("legacy", "s3cret")["Authorization"])
    assert security.authorised(_basic("prometheus", "s3cret")["Authorization"])
