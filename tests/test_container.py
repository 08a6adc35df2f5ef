"""The container image as README runs it: built and run where a container engine answers (`docker info`), skipped
with the reason where none does. Without an engine, tests/test_deploy_files.py checks the Dockerfile, the build
context and the build stage's wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO, append, bounced, parse_metrics, sent

STATE_DIR = "/var/lib/gmail-rejection-exporter"


def engine_problem() -> str | None:
    """Why no image can be built and run here, or None."""
    if shutil.which("docker") is None:
        return "no container engine: docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no container engine answers `docker info`: {last}"
    return None


PROBLEM = engine_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    tag = f"gmail-rejection-exporter:test-{uuid.uuid4().hex[:12]}"
    docker("build", "-f", str(REPO / "deploy" / "docker" / "Dockerfile"), "-t", tag, str(REPO), timeout=1200)
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120, check=False)


class Container:
    """One `docker run -d` of the image, with README's mounts: the host's log directory read-only at /var/log and
    a named state volume."""

    def __init__(self, image: str, log_dir: Path, volume: str) -> None:
        self.name = f"gmail-rejection-exporter-test-{uuid.uuid4().hex[:12]}"
        docker("run", "-d", "--name", self.name, "-v", f"{log_dir}:/var/log:ro", "-v", f"{volume}:{STATE_DIR}",
               "-p", "127.0.0.1::9791", image)  # fmt: skip
        address = docker("port", self.name, "9791/tcp").stdout.split()[0]
        self.base = f"http://{address}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.2)
        logs = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, timeout=60)
        raise AssertionError(f"timed out waiting for {what}:\n{logs.stdout}{logs.stderr}")

    def counted(self, status: str) -> float | None:
        """gmail_deliveries_total of a status; None while /metrics is not served (503 while catching up)."""
        code, body = self.get("/metrics")
        if code != 200:
            return None
        return parse_metrics(body.decode()).get(
            ("gmail_deliveries_total", frozenset({("status", status)})), 0.0
        )

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=120, check=False)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A host log directory whose mail.log is root:adm 0640, as Debian's."""
    directory = tmp_path / "log"
    directory.mkdir()
    directory.chmod(0o755)
    log = directory / "mail.log"
    log.touch()
    if os.geteuid() == 0:
        os.chown(log, 0, 4)
    log.chmod(0o640)
    return directory


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"gmail-rejection-exporter-test-{uuid.uuid4().hex[:12]}"
    docker("volume", "create", name)
    yield name
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, timeout=120, check=False)


def test_the_image_follows_a_host_log_and_resumes_from_its_named_volume(
    image: str, log_dir: Path, volume: str
) -> None:
    log = log_dir / "mail.log"
    first = Container(image, log_dir, volume)
    try:
        first.wait("ready", lambda: first.get("/-/ready")[0] == 200)
        assert docker("exec", first.name, "id", "-u").stdout == "10001\n"
        assert "4" in docker("exec", first.name, "id", "-G").stdout.split()  # adm: reads root:adm 0640
        append(log, sent(1) + bounced(2))
        first.wait("two deliveries", lambda: first.counted("sent") == 1 and first.counted("bounced") == 1)
        # The image's own health check, as the engine runs it.
        test = json.loads(
            docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", first.name).stdout
        )
        assert test[0] == "CMD"
        health = docker("exec", first.name, *test[1:])
        assert health.stdout == "healthy: http://127.0.0.1:9791/-/healthy: 200 Healthy\n"
        docker("stop", first.name)  # SIGTERM writes the state
    finally:
        first.remove()
    append(log, bounced(3))
    second = Container(image, log_dir, volume)
    try:
        second.wait("ready", lambda: second.get("/-/ready")[0] == 200)
        second.wait("the line logged while down", lambda: second.counted("bounced") == 2)
        assert second.counted("sent") == 1
    finally:
        second.remove()
