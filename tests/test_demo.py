"""`make run`'s demo: the exporter on a growing demo log, with a demo queue the writer keeps as `postqueue -j` would
list it."""

from __future__ import annotations

import subprocess
import sys
import time

from daemon_harness import REPO, free_port, parse_metrics


def test_the_demo_serves_the_log_and_the_queue_it_writes() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "demo",
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--rate",
            "300",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        samples: dict = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    samples = parse_metrics(response.read().decode())
            except OSError:
                time.sleep(0.2)
                continue
            queued = sum(v for (n, _), v in samples.items() if n == "gmail_queue_recipients")
            if queued > 0 and samples.get(("gmail_exporter_queue_scrape_success", frozenset()), 0) == 1:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the demo queue never showed: {sorted(n for n, _ in samples)[:20]}")
        categories = {
            dict(labels)["category"]
            for (n, labels), v in samples.items()
            if n == "gmail_queue_recipients" and v
        }
        assert categories <= {"rate_limit", "mailbox_full"}  # what the demo defers with
        assert sum(v for (n, _), v in samples.items() if n == "gmail_deliveries_total") > 0
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0, output
