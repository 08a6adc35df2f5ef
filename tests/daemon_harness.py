"""Runs the exporter as a separate process, scrapes it over HTTP, and writes realistic Postfix lines."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.procs import free_port

REPO = Path(__file__).resolve().parent.parent
GOOGLE = "gmail-smtp-in.l.google.com[142.250.27.26]:25"
DMARC_REPLY = (
    "550-5.7.26 Unauthenticated email from example.net is not accepted due to domain's 550-5.7.26 DMARC policy. "
    "Please contact the administrator of example.net domain if 550-5.7.26 this was a legitimate mail. To learn "
    "about the DMARC initiative, go 550-5.7.26 to 550 5.7.26  https://support.google.com/mail/?p=DmarcRejection"
)
RATE_REPLY = (
    "450-4.2.1 The user you are trying to contact is receiving mail too 450-4.2.1 quickly. Please resend your "
    "message at a later time. 450 4.2.1 https://support.google.com/mail/?p=ReceivingRate"
)


def sent(n: int) -> str:
    """A Postfix line: Google accepted message n."""
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {n:010X}: to=<user{n}@gmail.com>, relay={GOOGLE}, delay=0.5, "
        f"delays=0/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK  1764451969 abc{n}.{n % 999} - gsmtp)\n"
    )


def bounced(n: int) -> str:
    """A Postfix line: Google refused message n for DMARC (authentication, 5.7.26)."""
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {n:010X}: to=<user{n}@gmail.com>, relay={GOOGLE}, delay=0.5, "
        f"delays=0/0/0.2/0.3, dsn=5.7.26, status=bounced (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
        f"{DMARC_REPLY} abc{n}.{n % 999} - gsmtp (in reply to end of DATA command))\n"
    )


def deferred(n: int) -> str:
    """A Postfix line: Google deferred message n (rate limit, 4.2.1)."""
    return (
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {n:010X}: to=<user{n}@gmail.com>, relay={GOOGLE}, delay=0.5, "
        f"delays=0/0/0.2/0.3, dsn=4.2.1, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
        f"{RATE_REPLY} abc{n}.{n % 999} - gsmtp (in reply to RCPT TO command))\n"
    )


NOISE = "Nov 29 21:32:50 mx1 postfix/qmgr[811]: 0F8D71680EE: removed\n"


def sent_lines(start: int, count: int) -> str:
    return "".join(sent(n) for n in range(start, start + count))


def append(path: Path | str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


class Exporter:
    """The exporter as a child process (`python -m exporter run ...`) on a free loopback port."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        state_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Any = None,
        scheme: str = "http",
        ssl_context: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.state_file = state_file or tmp / "state.json"
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.stdin = stdin
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.ssl_context = ssl_context
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"exporter-{self.port}.log"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "exporter",
            "run",
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
            "--state.file",
            str(self.state_file),
            *no_queue_unless_asked(self.args),
            *self.args,
        ]

    def start(self, *, wait: bool = True) -> Exporter:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=REPO, env=self.env, stdout=log, stderr=log, stdin=self.stdin
            )
        if wait:
            self.wait_ready()
        return self

    def __enter__(self) -> Exporter:
        if self.proc is not None:
            return self
        try:
            return self.start()
        except BaseException:  # never ready: __exit__ will not run, so the process would outlive the test
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(
        self, path: str, *, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers=dict(headers or {}), method=method)
        if self.auth is not None:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.ssl_context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.output()}")
            try:
                status, _ = self.get("/-/ready")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"exporter not ready after {timeout} s:\n{self.output()}")

    def scrape(self) -> Samples:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body.decode())

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.scrape().items() if n == name and wanted <= ls)

    def wait_for(self, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
        """Waits until the metric reaches `expected`, then checks it stays there (no double counting)."""
        seen: list[float] = []

        def reached() -> bool:
            seen.append(self.value(name, **labels))
            return seen[-1] >= expected

        try:
            self.wait_until(reached, timeout, f"{name}{labels} >= {expected}")
        except AssertionError as timed_out:
            # The last values tell a line that was lost (stuck) from a follower that was slow (still rising).
            raise AssertionError(
                f"{name}{labels}: last values {seen[-5:]}, expected {expected}; {timed_out}"
            ) from None
        time.sleep(0.3)
        assert self.value(name, **labels) == expected, (name, labels, self.value(name, **labels), expected)

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


NOBODY = 65534


def no_queue_unless_asked(args: Sequence[str]) -> tuple[str, ...]:
    """`--queue.mta none` unless a test names a queue: the machine's own MTA is not the test's."""
    return () if "--queue.mta" in args else ("--queue.mta", "none")


def as_nobody(command: list[str]) -> list[str]:
    """`command` run as the unprivileged user nobody: root reads every file whatever its mode, a service user
    does not."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


class UnprivilegedExporter(Exporter):
    """The exporter run as nobody (its files must be in a directory nobody can enter: see the shared_dir
    fixture)."""

    def command(self) -> list[str]:
        return as_nobody(super().command())


def _sigterm(exporter: Exporter) -> None:
    assert exporter.stop() == 0


def _kill9(exporter: Exporter) -> None:
    exporter.kill9()


STOPS: dict[str, Callable[[Exporter], None]] = {"SIGTERM": _sigterm, "kill -9": _kill9}
"""The two ways an exporter ends: SIGTERM (it writes its state and exits 0) and kill -9 (the state is what the
last periodic write left). For @pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())."""


def fake_journalctl(tmp_path: Path, script: str, **env: str) -> dict[str, str]:
    """Installs `script` (Python source; {python} and {message}, a Postfix delivery's message, are filled in) as
    journalctl in a directory of its own; the environment that puts it first on PATH, with `env` added."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    message = sent_lines(0, 1).split(": ", 1)[1].strip()
    fake = bin_dir / "journalctl"
    fake.write_text(script.format(python=sys.executable, message=message))
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}


def run_exporter(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Runs a short exporter command (check-config, a run that fails at start) to completion."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
