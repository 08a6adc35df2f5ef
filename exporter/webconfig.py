"""The web config file in the Prometheus exporter-toolkit format: TLS, basic auth users, response headers.

Python's ssl module verifies every client certificate it asks for, so RequestClientCert and
RequireAnyClientCert behave like VerifyClientCertIfGiven and RequireAndVerifyClientCert (client_ca_file needed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Final

import bcrypt
import yaml

from exporter import patterns
from exporter.config import typed_value
from exporter.errors import ConfigError
from exporter.yamlfile import compose, items, line_of

CLIENT_AUTH_TYPES: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
ALLOWED_HEADERS: Final = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
_TLS_KEYS: Final = {
    "cert_file": "a string",
    "key_file": "a string",
    "client_ca_file": "a string",
    "client_auth_type": "a string",
    "min_version": "a string",
    "max_version": "a string",
}


BCRYPT_HASH: Final = patterns.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
"""A bcrypt hash: $2a$, $2b$ or $2y$, the cost (4-31), 22 characters of salt and 31 of hash."""


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def _dummy_hash(cost: int) -> bytes:
    """A well-formed hash of `cost` that no password matches; checking one costs what checking a real one does.

    Made from a fresh salt without hashing anything: bcrypt.checkpw reads only the cost and salt of what it
    compares against, so the 31 characters of hash can be any.
    """
    return bcrypt.gensalt(rounds=cost) + b"." * 31


@dataclass(frozen=True)
class TLSConfig:
    """Server certificate and client-certificate policy."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context for the server side; raises OSError or ssl.SSLError on unusable files."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        return ctx


@dataclass
class WebSecurity:
    """What the web config asks of every request."""

    tls: TLSConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    """User name -> bcrypt hash."""
    headers: dict[str, str] = field(default_factory=dict)
    _verified: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._names = [
            (hashlib.sha256(name.encode()).digest(), hashed) for name, hashed in self.users.items()
        ]
        costs = [_cost(hashed) for hashed in self.users.values()]
        self._top_cost = max(costs, default=4)
        self._dummies = {cost: _dummy_hash(cost) for cost in range(min(costs, default=4), self._top_cost + 1)}

    def _hash_of(self, user: str) -> bytes | None:
        """The user's hash; every configured name is compared, each in constant time, so that the time taken
        says nothing about which names exist or how much of one matched."""
        digest = hashlib.sha256(user.encode()).digest()
        found = None
        for name, hashed in self._names:
            if hmac.compare_digest(name, digest):
                found = hashed
        return found

    def authorised(self, authorization: str | None) -> bool:
        """Whether an Authorization header passes basic auth (always, when no users are configured).

        A failed check takes the time of checking one hash of the highest cost in the file, whether the user
        exists or not: an unknown user is checked against a dummy hash of that cost, and a user whose hash costs
        less is also checked against dummies of each cost from theirs to just below the highest, since bcrypt's
        work doubles with each step of cost (2^c + 2^c + ... + 2^(top-1) = 2^top).
        """
        if not self.users:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._hash_of(user)
        # bcrypt is slow on purpose; remember credentials that passed, keyed by a digest, never the password.
        digest = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed or b""))).digest()
        with self._lock:
            if digest in self._verified:
                return True
        secret = password.encode()
        try:
            if hashed is None:
                bcrypt.checkpw(secret, self._dummies[self._top_cost])
                return False
            if not bcrypt.checkpw(secret, hashed):
                for cost in range(_cost(hashed), self._top_cost):
                    bcrypt.checkpw(secret, self._dummies[cost])
                return False
        except ValueError:  # a password over bcrypt's 72 bytes, refused before any hashing whoever the user
            return False
        with self._lock:
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified.add(digest)
        return True


def load(path: str | None) -> WebSecurity:
    """Reads and checks a web config file; None gives plain HTTP without auth."""
    if not path:
        return WebSecurity()
    root = compose(path)
    if root is None:
        return WebSecurity()
    tls: TLSConfig | None = None
    users: dict[str, bytes] = {}
    headers: dict[str, str] = {}
    tls_line = None
    for section, key_node, node in items(path, root, ""):
        if section == "tls_server_config":
            tls = _tls(path, node)
            tls_line = line_of(key_node)
        elif section == "basic_auth_users":
            for user, _, hash_node in items(path, node, section):
                value = typed_value(path, hash_node, f"{section}.{user}", "a string")
                if not BCRYPT_HASH.fullmatch(value):
                    raise ConfigError(
                        path,
                        line_of(hash_node),
                        f"{section}.{user}",
                        "must be a bcrypt hash ($2y$, a cost from 04 to 31, $, 53 characters)",
                    )
                users[user] = value.encode()
        elif section == "http_server_config":
            for name, name_node, value_node in items(path, node, section):
                if name == "headers":
                    headers = _headers(path, value_node)
                elif name == "http2":
                    typed_value(path, value_node, f"{section}.{name}", "true or false")
                else:
                    raise ConfigError(
                        path,
                        line_of(name_node),
                        f"{section}.{name}",
                        "unknown key; expected headers or http2",
                    )
        else:
            raise ConfigError(
                path,
                line_of(key_node),
                section,
                "unknown key; expected tls_server_config, basic_auth_users or http_server_config",
            )
    if tls is not None:
        try:
            tls.context()
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                path, tls_line, "tls_server_config", f"cannot use certificate or key: {err}"
            ) from err
    return WebSecurity(tls=tls, users=users, headers=headers)


def _tls(path: str, node: yaml.Node) -> TLSConfig:
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for name, name_node, value_node in items(path, node, "tls_server_config"):
        key = f"tls_server_config.{name}"
        if name not in _TLS_KEYS:
            raise ConfigError(
                path, line_of(name_node), key, f"unknown key; expected one of {', '.join(_TLS_KEYS)}"
            )
        values[name] = typed_value(path, value_node, key, _TLS_KEYS[name])
        lines[name] = line_of(value_node)
    for required in ("cert_file", "key_file"):
        if required not in values:
            raise ConfigError(path, line_of(node), f"tls_server_config.{required}", "is required")
    checks = (
        ("client_auth_type", CLIENT_AUTH_TYPES),
        ("min_version", TLS_VERSIONS),
        ("max_version", TLS_VERSIONS),
    )
    for name, allowed in checks:
        if name in values and values[name] not in allowed:
            raise ConfigError(
                path, lines[name], f"tls_server_config.{name}", f"must be one of {', '.join(allowed)}"
            )
    needs_ca = values.get("client_auth_type", "NoClientCert") != "NoClientCert"
    if needs_ca and not values.get("client_ca_file"):
        raise ConfigError(
            path,
            lines["client_auth_type"],
            "tls_server_config.client_ca_file",
            "is required with client certificates",
        )
    base = os.path.dirname(os.path.abspath(path))
    for name in ("cert_file", "key_file", "client_ca_file"):
        if name in values and not os.path.isabs(values[name]):
            values[name] = os.path.join(base, values[name])
    return TLSConfig(**values)


def _headers(path: str, node: yaml.Node) -> dict[str, str]:
    headers = {}
    for name, name_node, value_node in items(path, node, "http_server_config.headers"):
        key = f"http_server_config.headers.{name}"
        canonical = {h.lower(): h for h in ALLOWED_HEADERS}.get(name.lower())
        if canonical is None:
            raise ConfigError(
                path, line_of(name_node), key, f"not a settable header; one of {', '.join(ALLOWED_HEADERS)}"
            )
        headers[canonical] = typed_value(path, value_node, key, "a string")
    return headers
