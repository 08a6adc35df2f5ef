"""The tools a user would pick instead, installed from Debian: mtail with a Gmail program, and
prometheus-postfix-exporter following the log."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

from bench import promtext
from bench.generate import Truth
from bench.measure import Check, Counts, Measure, append_and_wait, as_ints, file_lines, fresh
from bench.procs import Server, free_port, memory_kb, run_timed

MTAIL_PROGS: Final = Path(__file__).resolve().parent / "mtail"
MTAIL_CATEGORIES: Final = ("authentication", "mailbox_full", "rate_limit", "recipient", "spam")
"""The categories bench/mtail/gmail.mtail tells apart; the rest it calls "other"."""
POSTFIX_EXPORTER: Final = "prometheus-postfix-exporter"
DELAY_STAGES: Final = 4
"""postfix_exporter observes each outcome line's four `delays=` parts in one histogram."""


def version(package: str) -> str | None:
    """The installed Debian package version, or None."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    return out.stdout.strip() or None


def _mtail_values(data: dict[str, Any], name: str) -> dict[tuple[str, ...], int]:
    values: dict[tuple[str, ...], int] = {}
    for metric in data.get(name, []):
        for entry in metric.get("LabelValues", []):
            key = tuple(entry.get("Labels", []))
            values[key] = values.get(key, 0) + int(entry["Value"]["Value"])
    return values


def mtail_one_shot(path: Path, truth: Truth, repeat: int) -> Measure:
    """`mtail --one_shot` with bench/mtail/gmail.mtail over the Postfix file."""
    lines = file_lines(path)
    measure = Measure("mtail --one_shot", "lines/s")
    if shutil.which("mtail") is None:
        measure.note = "mtail is not installed"
        return measure
    rss: list[int] = []
    data: dict[str, Any] = {}
    for _ in range(repeat):
        argv = [
            "mtail",
            "--one_shot",
            "--one_shot_format=json",
            f"--progs={MTAIL_PROGS}",
            f"--logs={path}",
            "--logtostderr",
            # One-shot mode still opens its HTTP listener: keep it on loopback, off the default port.
            "--address=127.0.0.1",
            f"--port={free_port()}",
        ]
        done = run_timed(argv)
        if done.returncode != 0:
            raise RuntimeError(
                f"mtail failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
            )
        data = json.loads(done.stdout)
        measure.samples.append(lines / done.seconds)
        rss.append(done.max_rss_kb)
    by_status = {k[0]: v for k, v in _mtail_values(data, "gmail_deliveries_total").items()}
    by_code = {" ".join(k): v for k, v in _mtail_values(data, "gmail_rejections_total").items()}
    by_category = {k[0]: v for k, v in _mtail_values(data, "gmail_rejections_by_category_total").items()}
    expected_status = as_ints({k: v for k, v in truth.deliveries.items() if k != "expired"})
    measure.checks = [
        Check(
            "deliveries by status (no expired: needs a queue-id join)", expected_status, as_ints(by_status)
        ),
        Check("rejections by code and enhanced code", as_ints(truth.codes), as_ints(by_code)),
    ]
    expected_categories = {c: truth.categories.get(c, 0) for c in MTAIL_CATEGORIES}
    expected_categories["other"] = sum(v for k, v in truth.categories.items() if k not in MTAIL_CATEGORIES)
    wrong = sum(abs(by_category.get(k, 0) - v) for k, v in expected_categories.items()) // 2
    measure.extra = {
        "lines": lines,
        "peak_rss_mb": max(rss) / 1024,
        "version": version("mtail"),
        "categories": {"expected": expected_categories, "got": by_category},
        "misfiled_refusals_at_least": wrong,
    }
    return measure


def _postfix_exporter_counts(text: str) -> Counts:
    delays = promtext.total(text, "postfix_smtp_delivery_delay_seconds_count")
    return {
        "smtp outcome lines": delays / DELAY_STAGES,
        "deferred": promtext.total(text, "postfix_smtp_status_deferred"),
    }


def postfix_exporter_follow(
    workdir: Path, corpus: Path, truth: Truth, repeat: int, *, timeout: float
) -> Measure:
    """prometheus-postfix-exporter follows an empty file while the corpus is appended; lines/s until its smtp
    counters show every outcome line (it counts all providers alike: it cannot tell Google apart)."""
    lines = file_lines(corpus)
    measure = Measure("postfix_exporter follow", "lines/s")
    if shutil.which(POSTFIX_EXPORTER) is None:
        measure.note = f"{POSTFIX_EXPORTER} is not installed"
        return measure
    expected = {
        "smtp outcome lines": sum(truth.smtp_outcomes.values()),
        "deferred": truth.smtp_outcomes["deferred"],
    }
    hwm: list[int] = []
    target = workdir / "follow-peer" / "followed.log"
    run = workdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    for _ in range(repeat):
        port = free_port()
        argv = [
            POSTFIX_EXPORTER,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--postfix.logfile_path={fresh(target)}",
            # No Postfix runs here; a missing showq socket only costs a log line per scrape.
            f"--postfix.showq_path={run / 'no-showq'}",
        ]
        with open(run / f"postfix-exporter-{port}.out", "wb") as out, Server(argv, port, out) as server:
            server.wait_ready()
            followed = append_and_wait(
                server, corpus, target, _postfix_exporter_counts, expected, timeout=timeout
            )
            hwm.append(memory_kb(server.pid, "VmHWM"))
        measure.samples.append(lines / followed.seconds)
        measure.checks = [
            Check("smtp outcome lines (all providers) and deferrals", expected, followed.counts)
        ]
        if not followed.complete:
            measure.note = "stalled short of the expected counts; lines/s up to its last change"
    target.unlink(missing_ok=True)
    measure.extra = {"lines": lines, "peak_rss_mb": max(hwm) / 1024, "version": version(POSTFIX_EXPORTER)}
    return measure
