"""The production install as README describes it: `make dist` builds a wheel and an sdist, the wheel installs into a
fresh venv, and the systemd unit runs that venv's binary."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_harness import REPO, free_port, parse_metrics
from test_deploy_files import needs_systemd_analyze, systemd_verify, unit_with_binary

from exporter import __version__

FIXTURE_LOG = REPO / "tests" / "fixtures" / "logs" / "postfix.log"
SYSTEMD_CONFIG = REPO / "deploy" / "systemd" / "config.yml"
DEPENDENCIES = ("prometheus_client", "watchdog", "yaml", "bcrypt")
"""The runtime dependencies' import names (pyproject.toml lists them)."""


@dataclass(frozen=True)
class Installed:
    """A venv with the built wheel installed, and the distribution files `make dist` made."""

    venv: Path
    wheel: Path
    sdist: Path

    @property
    def binary(self) -> Path:
        return self.venv / "bin" / "gmail-rejection-exporter"

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        # Not from the checkout: nothing there may be what the installed exporter imports.
        return subprocess.run(
            [str(self.binary), *args],
            input=stdin,
            cwd=self.venv,
            capture_output=True,
            timeout=120,
            check=False,
        )


def make_dist(out: Path) -> None:
    """`make dist` into `out`, with this interpreter's environment as the venv the Makefile would create."""
    build = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "-o", ".venv/.installed-test", "dist",
         f"DIST={out}", f"BIN={Path(sys.executable).parent}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr


def fresh_venv(path: Path, wheel: Path) -> None:
    """A venv with only the wheel installed in it; the dependencies come from this environment through a .pth
    file, so the install needs no package index and no download."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    found = subprocess.run(
        [sys.executable, "-c", "import importlib, os, sys\n"
         "for name in sys.argv[1:]:\n"
         "    print(os.path.dirname(os.path.dirname(importlib.import_module(name).__file__)))", *DEPENDENCIES],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    Path(site_packages, "test-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(set(found))))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    make_dist(root / "dist")
    (wheel,) = (root / "dist").glob("*.whl")
    (sdist,) = (root / "dist").glob("*.tar.gz")
    fresh_venv(root / "venv", wheel)
    return Installed(root / "venv", wheel, sdist)


def test_make_dist_builds_a_wheel_and_an_sdist_of_this_version(installed: Installed) -> None:
    assert installed.wheel.name == f"gmail_rejection_exporter-{__version__}-py3-none-any.whl"
    assert installed.sdist.name == f"gmail_rejection_exporter-{__version__}.tar.gz"


def test_the_wheel_holds_every_module_and_the_bundled_rules(installed: Installed) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "exporter"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        rules = wheel.read("exporter/data/rules.yml")
    assert set(tracked) <= names
    # exporter/data/rules.yml is a link in the checkout: the wheel holds the file it points to.
    assert rules == (REPO / "config" / "rules.yml").read_bytes()


def test_the_installed_binary_runs_from_the_venv_with_its_own_rules(installed: Installed) -> None:
    version = installed.run("--version")
    assert (version.returncode, version.stdout.decode()) == (0, f"gmail-rejection-exporter {__version__}\n")
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c",
         "import exporter, exporter.rules\nprint(exporter.__file__)\nprint(exporter.rules.builtin_rules_path())"],
        cwd=installed.venv, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(path).is_relative_to(installed.venv) for path in where), where
    check = installed.run("check-config", "--config.file", str(SYSTEMD_CONFIG))
    assert check.returncode == 0, check.stderr
    assert check.stdout.decode().startswith(f"{SYSTEMD_CONFIG}: OK (")
    assert check.stdout.decode().rstrip().endswith(f"from {where[1]})")
    rules = installed.run("check-rules")
    assert rules.returncode == 0 and rules.stdout.decode().rstrip().endswith(f"from {where[1]}")


def from_checkout(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, timeout=120, check=False
    )


@pytest.mark.parametrize("command", [["classify"], ["report", "--format", "json"]])
def test_the_installed_offline_commands_print_what_the_checkout_prints(
    installed: Installed, command: list[str]
) -> None:
    got = installed.run(*command, str(FIXTURE_LOG))
    expected = from_checkout(*command, str(FIXTURE_LOG))
    assert (got.returncode, expected.returncode) == (0, 0), got.stderr + expected.stderr
    assert got.stdout == expected.stdout
    assert b'"category": "authentication"' in got.stdout


@pytest.fixture
def installed_demo(installed: Installed) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(installed.binary), "demo", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=installed.venv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_the_installed_demo_serves_its_page_and_metrics(
    installed_demo: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, base = installed_demo
    deadline = time.monotonic() + 30
    sent = ("gmail_deliveries_total", frozenset({("status", "sent")}))
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    while time.monotonic() < deadline and not samples.get(sent):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                samples = parse_metrics(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet, or 503 while it reads the demo log's history
        time.sleep(0.1)
    assert samples.get(sent), "no delivery counted"
    with urllib.request.urlopen(f"{base}/", timeout=10) as response:
        page = response.read().decode()
    assert "<h1>Mail to Gmail</h1>" in page
    (stylesheet,) = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page)
    with urllib.request.urlopen(f"{base}{stylesheet}", timeout=10) as response:
        assert response.status == 200 and response.headers.get_content_type() == "text/css"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@needs_systemd_analyze
def test_the_systemd_unit_verifies_with_the_installed_binary(installed: Installed, tmp_path: Path) -> None:
    result = systemd_verify(unit_with_binary(tmp_path, str(installed.binary)))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_installed_binary_does_not_need_the_checkout(installed: Installed) -> None:
    """The venv's metadata names the wheel's files only: nothing points back into the source tree."""
    dist_info = next(
        (installed.venv / "lib").glob("python3*/site-packages/gmail_rejection_exporter-*.dist-info")
    )
    recorded = (dist_info / "RECORD").read_text()
    assert "__editable__" not in recorded and str(REPO) not in recorded
    assert json.loads((dist_info / "direct_url.json").read_text())["url"].endswith(installed.wheel.name)
    assert os.access(installed.binary, os.X_OK)
