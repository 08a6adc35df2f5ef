"""Drive real MTAs against the Gmail look-alike (tests/fixtures/gmail_lookalike.py), on loopback only.

Building blocks, each a context manager that undoes exactly what it did:

* :func:`hosts_entries` maps Google's host names to loopback addresses in /etc/hosts.
* :func:`lookalike` runs the look-alike SMTP server in-process.
* :class:`SyslogReceiver` runs rsyslogd on /dev/log, writing traditional ``Mon dd hh:mm:ss host prog[pid]:`` lines.
* :class:`Postfix` is a private Postfix instance (own config, queue and data directories; no listener) that
  delivers gmail.com through the look-alike and logs to ``maillog_file`` or, when none is given, to syslog.

Everything needs root (binding port 25 on 127.0.0.x, /etc/hosts, starting Postfix).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
REPLIES_TSV = TESTS_DIR / "data" / "replies.tsv"
HOSTS_MARKER = "# gmail-lookalike"

# 127.0.0.4 deliberately has no listener: deliveries there log "Connection refused".
GOOGLE_HOSTS: dict[str, str] = {
    "gmail-smtp-in.l.google.com": "127.0.0.2",
    "aspmx.l.google.com": "127.0.0.3",
    "alt1.gmail-smtp-in.l.google.com": "127.0.0.3",
    "alt2.gmail-smtp-in.l.google.com": "127.0.0.4",
    "smtp.gmail.com": "127.0.0.5",
}
MX_LISTENERS = (("127.0.0.2", 25), ("127.0.0.3", 25))
AUTH_LISTENERS = (("127.0.0.5", 587),)


def _load_lookalike() -> ModuleType:
    # Loaded by path so the harness works whether or not tests/ is a package.
    name = "gmail_lookalike"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS_DIR / "fixtures" / "gmail_lookalike.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gmail_lookalike = _load_lookalike()


# -- one user of the loopback addresses at a time -----------------------------------------------------------
_lock_depth = 0
_lock_fh: Any = None


@contextlib.contextmanager
def loopback_lock(timeout: float = 900.0) -> Iterator[None]:
    """Serialise processes that use the look-alike addresses and the /etc/hosts lines (port 25 is exclusive).

    Re-entrant within a process, so :func:`hosts_entries` and :func:`lookalike` can nest in either order.
    """
    global _lock_depth, _lock_fh
    if _lock_depth == 0:
        fh = open(os.path.join(tempfile.gettempdir(), "gmail-lookalike.lock"), "w")  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.close()
                    raise TimeoutError("another process holds the Gmail look-alike addresses") from None
                time.sleep(0.5)
        _lock_fh = fh
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0:
            _lock_fh.close()
            _lock_fh = None


# -- /etc/hosts ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def hosts_entries(
    mapping: Mapping[str, str] = GOOGLE_HOSTS, hosts_file: str = "/etc/hosts"
) -> Iterator[None]:
    """Add ``ip name`` lines that are missing; on exit remove only the lines this call added.

    The file is rewritten in place (not replaced) because /etc/hosts is often a bind mount.
    """
    with loopback_lock():
        yield from _hosts_entries(mapping, hosts_file)


def _hosts_entries(mapping: Mapping[str, str], hosts_file: str) -> Iterator[None]:
    added: list[str] = []
    with open(hosts_file + ".gmail-lookalike.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = Path(hosts_file).read_text()
        known = {
            (f[0], name)
            for f in (ln.split("#")[0].split() for ln in text.splitlines())
            if f
            for name in f[1:]
        }
        for name, ip in mapping.items():
            if not all((ip, n) in known for n in name.split()):
                added.append(f"{ip} {name} {HOSTS_MARKER}")
        if added:
            with open(hosts_file, "r+") as fh:
                body = fh.read()
                fh.seek(0)
                fh.write(body + ("" if body.endswith("\n") or not body else "\n") + "\n".join(added) + "\n")
                fh.truncate()
    try:
        yield
    finally:
        if added:
            with open(hosts_file + ".gmail-lookalike.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with open(hosts_file, "r+") as fh:
                    lines = fh.read().splitlines(keepends=True)
                    for line in added:
                        with contextlib.suppress(ValueError):
                            lines.remove(line + "\n")
                    fh.seek(0)
                    fh.write("".join(lines))
                    fh.truncate()


# -- the look-alike -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def lookalike(
    mx: tuple[tuple[str, int], ...] = MX_LISTENERS,
    auth: tuple[tuple[str, int], ...] = AUTH_LISTENERS,
    replies: Path = REPLIES_TSV,
    bind_timeout: float = 300.0,
) -> Iterator[Any]:
    """Run the look-alike in this process; yields the server (``.arm(row_id, address)``, ``.served``)."""
    listeners = [gmail_lookalike.Listener(h, p) for h, p in mx]
    listeners += [gmail_lookalike.Listener(h, p, auth=True) for h, p in auth]
    with loopback_lock():
        deadline = time.monotonic() + bind_timeout
        while True:
            server = gmail_lookalike.GmailLookalike(replies, listeners)
            try:
                server.start()
                break
            except OSError as exc:
                # A process that predates the lock may still hold the port for a little while.
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        try:
            yield server
        finally:
            server.stop()


# -- log helpers --------------------------------------------------------------------------------------------
def wait_for(
    path: Path, pattern: str | re.Pattern[str], count: int = 1, timeout: float = 30.0
) -> list[re.Match[str]]:
    """Wait until ``path`` holds at least ``count`` lines matching ``pattern``; return the matches."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    matches: list[re.Match[str]] = []
    while True:
        if path.exists():
            text = path.read_text(errors="replace")
            matches = [m for m in (regex.search(ln) for ln in text.splitlines()) if m]
            if len(matches) >= count:
                return matches
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{path}: {len(matches)}/{count} lines match {regex.pattern!r} after {timeout}s"
            )
        time.sleep(0.1)


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


# -- syslog -------------------------------------------------------------------------------------------------
class SyslogReceiver:
    """rsyslogd owning /dev/log (and any extra sockets), writing mail.* in the traditional file format.

    Refuses to start when another process already serves /dev/log, so it never steals a system logger.
    """

    def __init__(
        self, out: Path, workdir: Path, extra_sockets: tuple[str, ...] = (), iso_out: Path | None = None
    ) -> None:
        self.out, self.workdir, self.extra_sockets, self.iso_out = out, workdir, extra_sockets, iso_out
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SyslogReceiver:
        if shutil.which("rsyslogd") is None:
            raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog)")
        if os.path.exists("/dev/log"):
            import socket

            probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                probe.connect("/dev/log")
                raise RuntimeError("/dev/log is served by another process; stop it or log to a file instead")
            except OSError:
                os.unlink("/dev/log")  # a stale socket left by a dead logger
            finally:
                probe.close()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "rsyslog.conf"
        inputs = "".join(
            f'input(type="imuxsock" Socket="{s}" RateLimit.Interval="0")\n' for s in self.extra_sockets
        )
        conf.write_text(
            f'global(workDirectory="{self.workdir}")\n'
            'module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")\n'
            f"{inputs}"
            f'mail.* action(type="omfile" file="{self.out}" template="RSYSLOG_TraditionalFileFormat")\n'
        )
        if self.iso_out:
            with conf.open("a") as fh:
                fh.write(
                    f'mail.* action(type="omfile" file="{self.iso_out}" template="RSYSLOG_FileFormat")\n'
                )
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(conf), "-i", str(self.workdir / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "rsyslogd.err", "wb"),  # noqa: SIM115 - lives as long as the daemon
        )
        deadline = time.monotonic() + 10
        while not os.path.exists("/dev/log"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rsyslogd did not start: {(self.workdir / 'rsyslogd.err').read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink("/dev/log")
        for s in self.extra_sockets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(s)

    def __enter__(self) -> SyslogReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- Postfix ------------------------------------------------------------------------------------------------
POSTFIX_OUTCOME = re.compile(
    r"\b([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{12,}): to=<([^>]*)>.*status=(\w+)"
)


class Postfix:
    """A private Postfix instance under ``workdir`` that delivers gmail.com to the look-alike.

    ``maillog_file`` set: postlogd writes ISO-8601 lines there. Unset: Postfix logs to syslog (/dev/log).
    ``transport`` entries are added to the transport map (keys: domains or full addresses).
    ``sasl_passwords`` maps a nexthop such as ``[smtp.gmail.com]:587`` to ``user:password``.
    """

    def __init__(
        self,
        workdir: Path,
        maillog_file: Path | None = None,
        transport: Mapping[str, str] | None = None,
        sasl_passwords: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.conf = workdir / "conf"
        self.maillog_file = maillog_file
        self.transport = {"gmail.com": "smtp:[gmail-smtp-in.l.google.com]:25", "example.org": "discard:"}
        self.transport.update(transport or {})
        self.sasl_passwords = dict(sasl_passwords or {})
        self.settings = dict(settings or {})
        self.env = {**os.environ, "MAIL_CONFIG": str(self.conf)}

    def _main_cf(self) -> dict[str, str]:
        w = self.workdir
        cf = {
            "compatibility_level": "3.6",
            "myhostname": "mx1.example.org",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "queue_directory": str(w / "queue"),
            "data_directory": str(w / "data"),
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "",
            "smtp_host_lookup": "native",
            "smtp_dns_support_level": "disabled",
            "transport_maps": f"texthash:{self.conf}/transport",
            # Anything not routed explicitly must never leave the machine.
            "default_transport": "error:not routed by the test configuration",
            # One 421 must not suspend delivery of the next mails to the same look-alike.
            "default_destination_concurrency_failed_cohort_limit": "1000",
            "smtp_connect_timeout": "5s",
            "smtp_tls_security_level": "none",
            "smtp_sasl_auth_enable": "yes" if self.sasl_passwords else "no",
            "smtp_sasl_password_maps": f"texthash:{self.conf}/sasl_passwd",
            "smtp_sasl_security_options": "noanonymous",
            "smtp_sasl_tls_security_options": "noanonymous",
            "smtp_address_preference": "ipv4",
        }
        if self.maillog_file:
            cf["maillog_file"] = str(self.maillog_file)
            cf["maillog_file_prefixes"] = str(self.maillog_file.parent)
        cf.update(self.settings)
        return cf

    def _master_cf(self) -> str:
        # The system master.cf minus the port-25 listener, with chroot off so /etc/hosts needs no copy.
        out = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            f = line.split()
            if line[:1] not in ("", "#", " ", "\t") and len(f) >= 8:
                if f[1] == "inet":
                    continue
                f[4] = "n"
                line = " ".join(f[:8]) + (" " + " ".join(f[8:]) if len(f) > 8 else "")
            out.append(line)
        return "\n".join(out) + "\n"

    def start(self) -> Postfix:
        self.conf.mkdir(parents=True, exist_ok=True)
        (self.workdir / "queue").mkdir(exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        shutil.chown(self.workdir / "data", "postfix")
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in self._main_cf().items()))
        (self.conf / "master.cf").write_text(self._master_cf())
        (self.conf / "transport").write_text("".join(f"{k} {v}\n" for k, v in self.transport.items()))
        pw = self.conf / "sasl_passwd"
        pw.write_text("".join(f"{k} {v}\n" for k, v in self.sasl_passwords.items()))
        pw.chmod(0o600)
        self.workdir.chmod(0o755)
        self._postfix("post-install", "create-missing")
        self._postfix("start")
        return self

    def _postfix(self, *args: str) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.conf), *args], env=self.env, check=True, capture_output=True
        )

    def send(self, recipient: str, sender: str = "news@example.org", subject: str = "test") -> None:
        msg = (
            f"From: <{sender}>\nTo: <{recipient}>\nSubject: {subject}\n"
            f"Message-ID: <{time.time_ns()}@example.org>\n\nfixture mail to {recipient}\n"
        )
        subprocess.run(
            ["sendmail", "-C", str(self.conf), "-N", "never", "-f", sender, recipient],
            input=msg.encode(),
            env=self.env,
            check=True,
        )

    def flush_queue(self) -> None:
        subprocess.run(["postsuper", "-c", str(self.conf), "-d", "ALL"], env=self.env, capture_output=True)

    def stop(self) -> None:
        pidfile = self.workdir / "queue" / "pid" / "master.pid"
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], env=self.env, capture_output=True)
        with contextlib.suppress(FileNotFoundError, ValueError):
            _stop_pid(int(pidfile.read_text().split()[0]))
        self.flush_queue()

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def outcomes(log: Path, predicate: Callable[[re.Match[str]], bool] = lambda m: True) -> list[re.Match[str]]:
    """Postfix ``QUEUEID: to=<…>, … status=…`` lines in ``log`` as matches (queue id, recipient, status)."""
    if not log.exists():
        return []
    return [
        m
        for m in map(POSTFIX_OUTCOME.search, log.read_text(errors="replace").splitlines())
        if m and predicate(m)
    ]


@contextlib.contextmanager
def postfix_to_lookalike(maillog_file: Path, **kw: Any) -> Iterator[tuple[Postfix, Any]]:
    """All three together: hosts entries, the look-alike and a Postfix instance logging to ``maillog_file``."""
    with (
        hosts_entries(),
        lookalike() as server,
        tempfile.TemporaryDirectory(prefix="postfix-") as tmp,
        Postfix(Path(tmp), maillog_file=maillog_file, **kw) as postfix,
    ):
        yield postfix, server
