"""A line stamped far in the future (a forged line, a host with a wrong clock) must not pin the "last" gauges:
gmail_last_rejection_timestamp_seconds and gmail_last_delivery_timestamp_seconds would otherwise stay there until
2099, hiding every real rejection from an alert on their age. Nor may a state file restore such a time."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon_harness import Exporter, append, bounced

CATEGORY = "authentication"  # what Google's DMARC refusal (5.7.26) is classified as
YEAR_2100 = 4102444800.0


def bounced_at(when: float, n: int) -> str:
    """A DMARC refusal stamped in RFC 3339, as rsyslog's high-precision template writes it."""
    stamp = datetime.fromtimestamp(when, tz=UTC).isoformat(timespec="seconds")
    return bounced(n).replace("Nov 29 21:32:49", stamp, 1)


def _last_rejection(exporter: Exporter) -> float:
    return exporter.value("gmail_last_rejection_timestamp_seconds", category=CATEGORY)


def test_a_rejection_stamped_2099_does_not_pin_the_last_rejection_gauge(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        before = time.time()
        append(log, bounced_at(datetime(2099, 6, 1, 12, tzinfo=UTC).timestamp(), 1))
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        after = time.time()
        pinned = _last_rejection(exporter)
        assert before <= pinned <= after  # remembered when it was read, not in 2099
        assert before <= exporter.value("gmail_last_delivery_timestamp_seconds") <= after
        # A normal rejection logged a little later moves both gauges to its own time.
        later = float(int(after) + 2)
        while time.time() < later:
            time.sleep(0.1)
        append(log, bounced_at(later, 2))
        exporter.wait_for("gmail_deliveries_total", 2, status="bounced")
        assert _last_rejection(exporter) == later
        assert exporter.value("gmail_last_delivery_timestamp_seconds") == later
        assert exporter.stop() == 0
    with Exporter(tmp_path, "--log.path", str(log)) as again:
        assert _last_rejection(again) == later
        assert again.stop() == 0


def test_a_state_file_with_last_times_far_ahead_of_the_clock_does_not_restore_them(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    state = tmp_path / "state.json"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        append(log, bounced(1))
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.stop() == 0
    for generation in (state, Path(f"{state}.1")):
        if generation.exists():
            data = json.loads(generation.read_text())
            data["metrics"]["last_rejection"][CATEGORY] = YEAR_2100
            data["metrics"]["last_delivery"] = YEAR_2100
            for recent in data["metrics"]["recent"]:
                recent[0] = YEAR_2100
            generation.write_text(json.dumps(data))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1  # the counters are kept
        assert _last_rejection(exporter) == 0
        assert exporter.value("gmail_last_delivery_timestamp_seconds") == 0
        now = float(int(time.time()))
        append(log, bounced_at(now, 2))
        exporter.wait_for("gmail_deliveries_total", 2, status="bounced")
        assert _last_rejection(exporter) == now
        assert exporter.value("gmail_last_delivery_timestamp_seconds") == now
        status, page = exporter.get("/")
        assert status == 200 and "2100-01-01" not in page.decode()
        assert exporter.stop() == 0
