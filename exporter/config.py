"""The exporter's configuration: a YAML file and flags, merged into one immutable Config.

Flags override the file. Relative paths in the file are relative to the file's directory. Every error names the
file, line and key at fault (flags are reported as file "command line").
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from exporter import patterns
from exporter.errors import ConfigError
from exporter.mta import FORMATS
from exporter.queue.programs import MTAS, mta_of_command, split_command

if TYPE_CHECKING:
    import yaml

DEFAULT_PORT: Final = 9791
"""Collides with no common mail-server port (25, 465, 587, 10024-10026, ...) nor with a registered Prometheus
exporter port (postfix_exporter 9154, mtail 3903, node 9100, ...)."""
DEFAULT_LISTEN_ADDRESS: Final = f":{DEFAULT_PORT}"
DEFAULT_TELEMETRY_PATH: Final = "/metrics"
DEFAULT_READ_TIMEOUT: Final = "30s"
DEFAULT_MAX_CONNECTIONS: Final = 512
DEFAULT_RUNBOOK_URL: Final = (
    "https://github.com/gmail-rejection-exporter/gmail-rejection-exporter/blob/main/deploy/runbook.md"
)
"""The project's runbook on its repository host; a deployment that keeps its own copy sets web.runbook_url."""
SYSTEM_STATE_DIR: Final = "/var/lib/gmail-rejection-exporter"
STATE_FILE_NAME: Final = "state.json"
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
FLAGS_FILE: Final = "command line"


@dataclass(frozen=True)
class LogConfig:
    """Files to follow (paths or globs; "-" is standard input) and the MTA format ("auto": per line)."""

    paths: tuple[str, ...] = ()
    format: str = "auto"


@dataclass(frozen=True)
class JournalConfig:
    """The systemd journal as a source, optionally only some units or syslog identifiers."""

    enabled: bool = False
    units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    """Where and how metrics are served."""

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = DEFAULT_TELEMETRY_PATH
    config_file: str | None = None
    """An exporter-toolkit web config: TLS, basic auth, headers."""
    read_timeout: float = 30.0
    """Seconds a client may take for a TLS handshake or a request, or stay idle between requests."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    runbook_url: str = DEFAULT_RUNBOOK_URL
    """The runbook the landing page links to (its sections are appended as #fragments)."""


DEFAULT_QUEUE_INTERVAL: Final = "60s"


@dataclass(frozen=True)
class QueueConfig:
    """The MTA whose queue is listed ("auto": the one installed; "none": no queue reader), how often, and the
    listing command to run instead of the MTA's own (already split like a shell would; never run by one)."""

    mta: str = "auto"
    interval: float = 60.0
    """Seconds between the end of one listing and the start of the next; also each listing's timeout."""
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs, read once per start or reload."""

    log: LogConfig = field(default_factory=LogConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    state_file: str = ""
    web: WebConfig = field(default_factory=WebConfig)
    rules_files: tuple[str, ...] = ()
    google_hosts: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    queue: QueueConfig = field(default_factory=QueueConfig)
    from_beginning: bool = False
    log_level: str = "info"
    file: str | None = None
    """The config file read, if any."""


# The YAML layout: section -> key -> how to read its value.
_STR, _BOOL, _LIST, _OPT_STR = "a string", "true or false", "a list of strings", "a string or null"
_INT = "an integer"
SCHEMA: Final[dict[str, dict[str, str]]] = {
    "log": {"paths": _LIST, "format": _STR},
    "journal": {"enabled": _BOOL, "units": _LIST, "identifiers": _LIST},
    "state": {"file": _STR},
    "web": {
        "listen_address": _STR,
        "telemetry_path": _STR,
        "config_file": _OPT_STR,
        "read_timeout": _STR,
        "max_connections": _INT,
        "runbook_url": _STR,
    },
    "rules": {"files": _LIST},
    "google": {"hosts": _LIST},
    "metrics": {"sender_domains": _LIST},
    "queue": {"mta": _STR, "interval": _STR, "command": _OPT_STR},
}


def typed_value(file: str, node: yaml.Node, key: str, kind: str) -> Any:
    """A YAML value checked against `kind` (one of the schema's kinds)."""
    from yaml.constructor import ConstructorError, SafeConstructor

    from exporter.yamlfile import line_of

    try:
        value = SafeConstructor().construct_object(node, deep=True)
    except ConstructorError as err:
        raise ConfigError(file, line_of(node), key, f"invalid value: {err.problem}") from err
    ok = {
        _STR: isinstance(value, str),
        _OPT_STR: value is None or isinstance(value, str),
        _BOOL: isinstance(value, bool),
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _LIST: isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        raise ConfigError(file, line_of(node), key, f"must be {kind}, not {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list with a non-string item" if value else "a list"
    return f"{type(value).__name__} {value!r}"


def _read_file(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The file's values as {"section.key": value} and the line of each."""
    import yaml  # only for a file to read: PyYAML's import is a tenth of a command's start

    from exporter.yamlfile import compose, items, line_of

    root = compose(path)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if root is None:
        return values, lines
    for section, key_node, section_node in items(path, root, ""):
        keys = SCHEMA.get(section)
        if keys is None:
            raise ConfigError(
                path, line_of(key_node), section, f"unknown section; expected one of {_list(SCHEMA)}"
            )
        if isinstance(section_node, yaml.ScalarNode) and section_node.tag == "tag:yaml.org,2002:null":
            continue
        for name, name_node, value_node in items(path, section_node, section):
            dotted = f"{section}.{name}"
            kind = keys.get(name)
            if kind is None:
                raise ConfigError(
                    path, line_of(name_node), dotted, f"unknown key; expected one of {_list(keys)}"
                )
            values[dotted] = typed_value(path, value_node, dotted, kind)
            lines[dotted] = line_of(value_node)
    return values, lines


_DURATION: Final = patterns.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS: Final = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str) -> float:
    """Seconds in a duration written as Prometheus writes them (`30s`, `1m`, `1h30m`, units y w d h m s ms, largest
    first); raises ValueError for anything else, and for zero."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 1m or 1h30m")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"{text!r}: the interval must be longer than zero")
    return float(seconds)


def _list(names: Any) -> str:
    return ", ".join(sorted(names))


def default_state_file() -> str:
    """$STATE_DIRECTORY (systemd StateDirectory=), else /var/lib/... when writable, else the user's state dir."""
    if os.environ.get("STATE_DIRECTORY"):
        return os.path.join(os.environ["STATE_DIRECTORY"].split(":")[0], STATE_FILE_NAME)
    parent = os.path.dirname(SYSTEM_STATE_DIR)
    if os.access(SYSTEM_STATE_DIR, os.W_OK) or (
        not os.path.exists(SYSTEM_STATE_DIR) and os.access(parent, os.W_OK)
    ):
        return os.path.join(SYSTEM_STATE_DIR, STATE_FILE_NAME)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "gmail-rejection-exporter", STATE_FILE_NAME)


def add_analysis_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that say how lines are analysed, shared by `run`, `check-config`, `classify` and `report`
    (defaults None: unset flags leave the file's value, or the default)."""
    a = parser.add_argument
    a(
        "--log.format",
        dest="log_format",
        metavar="FORMAT",
        help=f"force an MTA or container log format instead of detecting it per line: one of {', '.join(FORMATS)}",
    )
    a(
        "--rules.file",
        dest="rules_files",
        action="append",
        metavar="FILE",
        help="extra rules file, merged before the bundled rules (repeatable)",
    )
    a(
        "--google.host",
        dest="google_hosts",
        action="append",
        metavar="HOST",
        help="another relay host name that is Google's (repeatable)",
    )


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that set configuration (defaults None: unset flags leave the file's value)."""
    a = parser.add_argument
    a("--config.file", dest="config_file", metavar="FILE", help="YAML configuration file")
    a(
        "--log.path",
        dest="log_paths",
        action="append",
        metavar="PATH",
        help="log file or glob to follow, - for stdin (repeatable)",
    )
    add_analysis_flags(parser)
    a("--journal", dest="journal", action="store_true", default=None, help="read the systemd journal")
    a(
        "--journal.unit",
        dest="journal_units",
        action="append",
        metavar="UNIT",
        help="only this systemd unit (repeatable)",
    )
    a(
        "--journal.identifier",
        dest="journal_identifiers",
        action="append",
        metavar="ID",
        help="only this syslog identifier (repeatable)",
    )
    a(
        "--state.file",
        dest="state_file",
        metavar="FILE",
        help=f"state file (default: {SYSTEM_STATE_DIR}/{STATE_FILE_NAME} or a user state dir)",
    )
    a(
        "--from-beginning",
        dest="from_beginning",
        action="store_true",
        default=None,
        help="without state, read existing log content instead of starting at its end",
    )
    a(
        "--web.listen-address",
        dest="listen_address",
        metavar="[HOST]:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN_ADDRESS})",
    )
    a(
        "--web.telemetry-path",
        dest="telemetry_path",
        metavar="PATH",
        help=f"path of the metrics (default {DEFAULT_TELEMETRY_PATH})",
    )
    a(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="exporter-toolkit web config: TLS, basic auth, headers",
    )
    a(
        "--web.read-timeout",
        dest="read_timeout",
        metavar="DURATION",
        help=f"longest TLS handshake, request read or idle keep-alive connection (default {DEFAULT_READ_TIMEOUT})",
    )
    a(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        metavar="N",
        help=f"most connections open at once (default {DEFAULT_MAX_CONNECTIONS})",
    )
    a(
        "--web.runbook-url",
        dest="runbook_url",
        metavar="URL",
        help="runbook the landing page links to (default: the project's, on its repository host)",
    )
    a(
        "--queue.mta",
        dest="queue_mta",
        metavar="MTA",
        help=f"whose queue to list: {', '.join(MTAS)} (default auto: the one installed)",
    )
    a(
        "--queue.interval",
        dest="queue_interval",
        metavar="DURATION",
        help=f"time between queue listings, e.g. 30s, 1m (default {DEFAULT_QUEUE_INTERVAL})",
    )
    a(
        "--queue.command",
        dest="queue_command",
        metavar="COMMAND",
        help="listing command to run instead, split like a shell would, e.g. 'sudo -n postqueue -j'",
    )
    a("--log.level", dest="log_level", choices=LOG_LEVELS, help="logging level (default info)")  # fmt: skip


def load(args: argparse.Namespace, *, sources_required: bool = True) -> Config:
    """Reads the config file named by the flags (if any) and applies the flags over it. The offline commands,
    which name their files as arguments, pass sources_required=False."""
    path: str | None = getattr(args, "config_file", None)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path:
        values, lines = _read_file(path)
        base = os.path.dirname(os.path.abspath(path))
        for key in ("log.paths", "rules.files"):
            if key in values:
                values[key] = [_relative(base, p) for p in values[key]]
        for key in ("state.file", "web.config_file"):
            if values.get(key):
                values[key] = _relative(base, values[key])

    def where(key: str) -> tuple[str, int | None]:
        return (path, lines.get(key)) if path and key in lines else (FLAGS_FILE, None)

    def pick(flag: str, key: str, default: Any) -> Any:
        flag_value = getattr(args, flag, None)
        if flag_value is not None:
            lines.pop(key, None)
            return flag_value
        return values.get(key, default)

    read_timeout = pick("read_timeout", "web.read_timeout", DEFAULT_READ_TIMEOUT)
    try:
        read_seconds = parse_duration(read_timeout)
    except ValueError as err:
        raise ConfigError(
            *where("web.read_timeout"),
            "web.read_timeout",
            f"must be a duration such as 30s or 2m, not {read_timeout!r}",
        ) from err
    queue_mta = pick("queue_mta", "queue.mta", "auto")
    if queue_mta not in MTAS:
        raise ConfigError(*where("queue.mta"), "queue.mta", f"{queue_mta!r} is not one of {', '.join(MTAS)}")
    try:
        queue_interval = parse_duration(pick("queue_interval", "queue.interval", DEFAULT_QUEUE_INTERVAL))
    except ValueError as err:
        raise ConfigError(*where("queue.interval"), "queue.interval", str(err)) from err
    queue_command: str | None = pick("queue_command", "queue.command", None)
    try:
        queue_argv = () if queue_command is None else tuple(split_command(queue_command))
    except ValueError as err:
        raise ConfigError(
            *where("queue.command"), "queue.command", f"{err}: give a command like 'sudo -n postqueue -j'"
        ) from err
    if queue_mta == "auto" and queue_argv and mta_of_command(queue_argv) is None:
        raise ConfigError(
            *where("queue.command"),
            "queue.command",
            "cannot tell which MTA it lists: set queue.mta (--queue.mta) to postfix, exim, sendmail or opensmtpd",
        )

    config = Config(
        log=LogConfig(
            paths=tuple(pick("log_paths", "log.paths", ())),
            format=pick("log_format", "log.format", "auto"),
        ),
        journal=JournalConfig(
            enabled=bool(pick("journal", "journal.enabled", False)),
            units=tuple(pick("journal_units", "journal.units", ())),
            identifiers=tuple(pick("journal_identifiers", "journal.identifiers", ())),
        ),
        state_file=pick("state_file", "state.file", "") or default_state_file(),
        web=WebConfig(
            listen_address=pick("listen_address", "web.listen_address", DEFAULT_LISTEN_ADDRESS),
            telemetry_path=pick("telemetry_path", "web.telemetry_path", DEFAULT_TELEMETRY_PATH),
            config_file=pick("web_config_file", "web.config_file", None),
            read_timeout=read_seconds,
            max_connections=pick("max_connections", "web.max_connections", DEFAULT_MAX_CONNECTIONS),
            runbook_url=pick("runbook_url", "web.runbook_url", DEFAULT_RUNBOOK_URL),
        ),
        rules_files=tuple(pick("rules_files", "rules.files", ())),
        google_hosts=tuple(h.lower() for h in pick("google_hosts", "google.hosts", ())),
        sender_domains=tuple(d.lower() for d in pick("sender_domains", "metrics.sender_domains", ())),
        queue=QueueConfig(mta=queue_mta, interval=queue_interval, command=queue_argv),
        from_beginning=bool(getattr(args, "from_beginning", None)),
        log_level=getattr(args, "log_level", None) or "info",
        file=path,
    )
    _validate(config, where, sources_required=sources_required)
    return config


def _relative(base: str, path: str) -> str:
    if path == "-" or os.path.isabs(path):
        return path
    return os.path.join(base, os.path.expanduser(path))


def parse_listen_address(address: str) -> tuple[str, int]:
    """(host, port) from "[host]:port"; an empty host means every address. Raises ValueError."""
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]{1,5})", address)
    if not match or int(match["port"]) > 65535:
        raise ValueError(
            f"{address!r} is not [host]:port, e.g. {DEFAULT_LISTEN_ADDRESS} or 127.0.0.1:{DEFAULT_PORT}"
        )
    return match["v6"] or match["host"] or "", int(match["port"])


_CHECKS: Final[list[tuple[str, str, Callable[[Config], bool]]]] = [
    ("log.format", f"must be one of {', '.join(FORMATS)}", lambda c: c.log.format in FORMATS),
    ("web.telemetry_path", "must be an absolute URL path other than / and /-/...", lambda c: c.web.telemetry_path.startswith("/") and c.web.telemetry_path != "/" and not c.web.telemetry_path.startswith("/-/")),
    ("web.max_connections", "must be at least 1", lambda c: c.web.max_connections >= 1),
    ("web.runbook_url", "must be an http:// or https:// URL without a #fragment, e.g. https://wiki.example.com/runbook", lambda c: re.fullmatch(r"https?://[^\s\"'<>#`\\]+", c.web.runbook_url) is not None),
    ("metrics.sender_domains", "must be domain names like example.com", lambda c: all(re.fullmatch(r"[a-z0-9.-]+\.[a-z0-9-]+", d) for d in c.sender_domains)),
    ("google.hosts", "must be host names", lambda c: all(re.fullmatch(r"[a-z0-9*-]+(?:\.[a-z0-9*-]+)*\.?", h) for h in c.google_hosts)),
    ("log.paths", "standard input (-) can be named only once", lambda c: list(c.log.paths).count("-") <= 1),
]  # fmt: skip


def _validate(
    config: Config, where: Callable[[str], tuple[str, int | None]], *, sources_required: bool
) -> None:
    try:
        parse_listen_address(config.web.listen_address)
    except ValueError as err:
        raise ConfigError(*where("web.listen_address"), "web.listen_address", str(err)) from err
    for key, message, check in _CHECKS:
        if not check(config):
            raise ConfigError(*where(key), key, message)
    if sources_required and not config.log.paths and not config.journal.enabled:
        raise ConfigError(
            config.file or FLAGS_FILE,
            None,
            "log.paths",
            "nothing to read: give log.paths (--log.path) or --journal",
        )
