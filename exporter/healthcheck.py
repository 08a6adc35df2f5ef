"""The `healthcheck` command: asks the exporter that a config file and flags describe whether it is healthy.

Given the same config file and flags as `run`, it finds the exporter where it listens, over TLS when the web config
has a certificate, and answers basic auth and client-certificate checks with the credentials it is given. A
container's HEALTHCHECK runs it, so the probe follows the exporter wherever its settings move it.
"""

from __future__ import annotations

import argparse
import base64
import ssl
import sys
import urllib.error
import urllib.request
from typing import Final

from exporter import config, webconfig
from exporter.errors import ConfigError

HEALTHY: Final = 0
UNHEALTHY: Final = 1
"""Every failure, a config it cannot use included: a container engine reserves the other statuses."""
TIMEOUT_SECONDS: Final = 5.0
HEALTH_PATH: Final = "/-/healthy"


def probe_url(cfg: config.Config, tls: bool) -> str:
    """Where the exporter of `cfg` answers on this host: an address that means every address is asked on
    loopback."""
    host, port = config.parse_listen_address(cfg.web.listen_address)
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}{HEALTH_PATH}"


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    # The server is this host's own exporter at the address its config names; its certificate is issued for the
    # name clients use, which loopback is not, so it is not checked.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if args.cert_file:
        context.load_cert_chain(args.cert_file, args.key_file)
    return context


def _request(args: argparse.Namespace, url: str) -> urllib.request.Request:
    request = urllib.request.Request(url)
    if args.user is not None:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.read().rstrip("\r\n")
        token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def healthcheck(args: argparse.Namespace) -> int:
    """Exit status 0 when /-/healthy answers 200, else 1, with a line saying what was asked and what came back."""
    if (args.user is None) != (args.password_file is None) or (args.cert_file is None) != (
        args.key_file is None
    ):
        print(
            "gmail-rejection-exporter healthcheck: give --healthcheck.user with --healthcheck.password-file, "
            "and --healthcheck.cert-file with --healthcheck.key-file",
            file=sys.stderr,
        )
        return UNHEALTHY
    try:
        cfg = config.load(args)
        security = webconfig.load(cfg.web.config_file)
        url = probe_url(cfg, security.tls is not None)
        request = _request(args, url)
        context = _tls_context(args) if security.tls is not None else None
    except (ConfigError, OSError, ssl.SSLError) as err:
        print(f"gmail-rejection-exporter healthcheck: {err}", file=sys.stderr)
        return UNHEALTHY
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as response:
            print(f"healthy: {url}: {response.status} {response.read(200).decode(errors='replace').strip()}")
            return HEALTHY
    except urllib.error.HTTPError as err:
        hint = ""
        if err.code == 401:
            hint = (
                " (basic auth is on: give --healthcheck.user and --healthcheck.password-file)"
                if args.user is None
                else " (wrong user or password)"
            )
        print(f"unhealthy: {url}: {err.code} {err.read(200).decode(errors='replace').strip()}{hint}")
    except (urllib.error.URLError, OSError) as err:
        print(f"unhealthy: {url}: {getattr(err, 'reason', None) or err}")
    return UNHEALTHY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `healthcheck` command: those of `run` (the same config file or flags find the same exporter)
    and the credentials its web config asks for."""
    config.add_flags(parser)
    a = parser.add_argument
    a(
        "--healthcheck.user",
        dest="user",
        metavar="USER",
        help="basic auth user, when the web config has users",
    )
    a(
        "--healthcheck.password-file",
        dest="password_file",
        metavar="FILE",
        help="file holding that user's password",
    )
    a(
        "--healthcheck.cert-file",
        dest="cert_file",
        metavar="FILE",
        help="client certificate, when the web config asks for one",
    )
    a("--healthcheck.key-file", dest="key_file", metavar="FILE", help="the client certificate's key")
    parser.set_defaults(handler=healthcheck)
