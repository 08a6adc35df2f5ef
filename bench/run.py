"""The benchmark: generate the corpus, measure our exporter and its peers on the same files, check every
count against the generator's ground truth, and write the table, results.json and the chart."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench import containers, ours, peers, queue
from bench.chart import Bar, throughput_svg
from bench.generate import DEFAULT_SEED, REPO, generate
from bench.measure import Measure

RESULTS: Final = Path(__file__).resolve().parent / "results"
GOOGLE_OUTCOME: Final = re.compile(
    rb"postfix/smtp\[\d+\]: [0-9A-F]+: to=<[^>]*>, relay=[^,\[]*\.(?:google|googlemail)\.com\[.*status=(?:sent|deferred|bounced) "
)
RSS_LIMIT_MB: Final = 40.0
FLAT_MB: Final = 1.0
"""Growth of resident memory over the second half of the long run that still counts as flat. The daemon's
memory rises in a few steps of 2 MB or less over its first 16 M lines (the bounded maps and caches filling, the
allocator's pools settling) and is level after that, so a leak shows as growth over the second half of a 30 M-line
run, three times what it would over 10 M."""
QUEUE_KEYS: Final = tuple(f"queue_{mta}" for mta in ("postfix", "exim", "sendmail", "opensmtpd"))
REPORT_RATIO: Final = {1: 6.0, 2: 10.0}
"""`report --jobs N`'s lines/s over mtail --one_shot's, by N, measured in the same rounds."""
DAEMON_RATIO: Final = 4.0
"""The daemon's lines/s over prometheus-postfix-exporter's."""


@dataclass(frozen=True)
class Sizes:
    lines: int
    repeat: int
    appends: int
    rate: float
    idle_seconds: float
    scrapes: int
    long_factor: int


def sizes(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(
            lines=50_000, repeat=1, appends=200, rate=50.0, idle_seconds=10.0, scrapes=30, long_factor=3
        )
    return Sizes(
        lines=args.lines,
        repeat=args.repeat,
        appends=1000,
        rate=50.0,
        idle_seconds=60.0,
        scrapes=200,
        long_factor=args.long_factor,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--lines", type=int, default=1_000_000, help="Postfix lines to generate (default 1,000,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds per throughput measure; the median is reported"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (about a minute)")
    parser.add_argument("--long-factor", type=int, default=30,
                        help="feed one daemon the corpus this many times over for its memory curve (0: skip)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "out", help="output folder"
    )
    return parser.parse_args(argv)


def step(title: str) -> Callable[[], None]:
    """Print what is being measured now; the returned function prints how long it took."""
    start = time.perf_counter()
    print(f"-- {title} ...", flush=True)

    def done() -> None:
        print(f"   done in {time.perf_counter() - start:.1f} s", flush=True)

    return done


def google_outcome_lines(path: Path, limit: int) -> list[bytes]:
    """Outcome lines at Google from the Postfix corpus: what the latency measure appends one at a time."""
    found: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            if GOOGLE_OUTCOME.search(line):
                found.append(line)
                if len(found) >= limit:
                    break
    return found


def revision() -> str | None:
    """The commit measured, with "+dirty" when exporter/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "exporter"], cwd=REPO, capture_output=True, text=True
        )
    except FileNotFoundError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "revision": revision(),
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "mtail": peers.version("mtail"),
        "prometheus_postfix_exporter": peers.version(peers.POSTFIX_EXPORTER),
    }


def side_by_side(measures: dict[str, Callable[[], Measure]], rounds: int) -> dict[str, Measure]:
    """Each measure once per round, in turn, so that every tool meets the same load from other work on the
    machine; their samples gathered per measure."""
    out: dict[str, Measure] = {}
    for _ in range(rounds):
        for key, measure in measures.items():
            one = measure()
            if key in out:
                out[key].absorb(one)
            else:
                out[key] = one
    return out


def ratio(ours_value: float | None, theirs: float | None) -> float | None:
    if not ours_value or not theirs:
        return None
    return ours_value / theirs


def targets(m: dict[str, Measure], ratios: dict[str, float | None]) -> list[dict[str, Any]]:
    """Each target of the issue, with the number that decides it."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, unit: str, met: bool | None) -> None:
        out.append({"target": name, "value": value, "unit": unit, "met": met})

    for jobs, goal in REPORT_RATIO.items():
        report_ratio = ratios.get(f"report_jobs{jobs}_vs_mtail_best")
        add(
            f"report --jobs {jobs} >= {goal:g}x mtail --one_shot (best rounds, side by side)",
            report_ratio,
            "x",
            None if report_ratio is None else report_ratio >= goal,
        )
    daemon_ratio = ratios.get("daemon_vs_postfix_exporter")
    add(
        f"daemon >= {DAEMON_RATIO:g}x postfix_exporter",
        daemon_ratio,
        "x",
        None if daemon_ratio is None else daemon_ratio >= DAEMON_RATIO,
    )
    p99 = m["latency"].extra.get("p99_ms") if "latency" in m else None
    add("append-to-metric p99 <= 100 ms", p99, "ms", None if p99 is None else p99 <= 100)
    idle = m["idle"].value if "idle" in m else None
    add("idle CPU < 0.5 % of one core", idle, "%", None if idle is None else idle < 0.5)
    peaks = [
        m[k].extra["peak_rss_mb"]
        for k in ("report_postfix", "report_postfix_jobs2", "daemon", "long")
        if k in m
    ]
    peak = max(peaks) if peaks else None
    add("RSS <= 40 MB (report, daemon, long run)", peak, "MB", None if peak is None else peak <= RSS_LIMIT_MB)
    if "long" in m:
        growth = m["long"].extra["growth_mb_second_half"]
        add(
            f"RSS flat over {m['long'].extra['lines']:,} lines (second-half growth <= {FLAT_MB} MB)",
            growth,
            "MB",
            growth <= FLAT_MB,
        )
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "lines/s":
        return f"{value:,.0f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.2f}"


def table(m: dict[str, Measure], ratios: dict[str, float | None], goals: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (it reads as plain text too)."""
    rows: list[tuple[str, str, str, str]] = []

    def mark(measure: Measure | None) -> str:
        if measure is None or not measure.checks:
            return ""
        return "exact" if measure.counts_ok else "MISCOUNTS"

    def get(key: str) -> Measure | None:
        return m.get(key)

    def val(key: str, extra: str | None = None, unit: str = "") -> str:
        measure = get(key)
        if measure is None:
            return "-"
        if extra is not None:
            return _fmt(measure.extra.get(extra), unit)
        return _fmt(measure.value, measure.unit)

    def best(key: str) -> str:
        measure = get(key)
        return "-" if measure is None else _fmt(measure.best, measure.unit)

    for key, jobs in (("report_postfix", 1), ("report_postfix_jobs2", 2)):
        what = f"`report --jobs {jobs}`, Postfix log (lines/s, median / best)"
        rows.append((what, f"{val(key)} / {best(key)}", mark(get(key)), ""))
    rows.append(("`report`, Exim mainlog (lines/s)", val("report_exim"), mark(get("report_exim")), ""))
    rows.append(
        (
            "`report`, Postfix log as a CRI container log (lines/s)",
            val("report_cri"),
            mark(get("report_cri")),
            "",
        )
    )
    rows.append(
        (
            "`report`, Postfix log as a json-file container log (lines/s)",
            val("report_docker"),
            mark(get("report_docker")),
            "",
        )
    )
    what = "mtail `--one_shot`, Postfix log (lines/s, median / best)"
    rows.append((what, f"{val('mtail')} / {best('mtail')}", mark(get("mtail")), ""))
    if "mtail" in m and "misfiled_refusals_at_least" in m["mtail"].extra:
        wrong = m["mtail"].extra["misfiled_refusals_at_least"]
        refused = sum(m["mtail"].extra["categories"]["expected"].values())
        rows.append(("mtail: refusals in a wrong category", f"≥ {wrong:,} of {refused:,}", "", ""))
    for jobs, goal in REPORT_RATIO.items():
        median, top = (
            ratios.get(f"report_jobs{jobs}_vs_mtail"),
            ratios.get(f"report_jobs{jobs}_vs_mtail_best"),
        )
        what = f"ratio `report --jobs {jobs}` / mtail (medians / best rounds)"
        rows.append((what, f"{_fmt(median, 'x')} / {_fmt(top, 'x')}", "", f"≥ {goal:g}x"))
    rows.append(
        ("pure-Python floor: read + prefilter, no parsing (lines/s)", val("floor"), mark(get("floor")), "")
    )
    rows.append(("ratio floor / mtail", _fmt(ratios.get("floor_vs_mtail"), "x"), "", ""))
    rows.append(("daemon following the file (lines/s)", val("daemon"), mark(get("daemon")), ""))
    rows.append(
        (
            "postfix_exporter following the file (lines/s)",
            val("postfix_exporter"),
            mark(get("postfix_exporter")),
            "",
        )
    )
    rows.append(
        (
            "ratio daemon / postfix_exporter",
            _fmt(ratios.get("daemon_vs_postfix_exporter"), "x"),
            "",
            f"≥ {DAEMON_RATIO:g}x",
        )
    )
    rows.append(("append → metric p50 (ms)", val("latency", "p50_ms"), mark(get("latency")), ""))
    rows.append(("append → metric p99 (ms)", val("latency", "p99_ms"), "", "≤ 100 ms"))
    rows.append(("idle CPU (% of one core)", val("idle"), "", "< 0.5 %"))
    rows.append(("idle CPU, scheduler's ns accounting (%)", val("idle", "scheduler_percent"), "", ""))
    rows.append(("peak RSS, `report` (MB)", val("report_postfix", "peak_rss_mb"), "", "≤ 40 MB"))
    rows.append(("peak RSS, daemon (MB)", val("daemon", "peak_rss_mb"), "", "≤ 40 MB"))
    rows.append(("peak RSS, mtail one-shot (MB)", val("mtail", "peak_rss_mb"), "", ""))
    rows.append(("peak RSS, postfix_exporter (MB)", val("postfix_exporter", "peak_rss_mb"), "", ""))
    if "long" in m:
        long = m["long"]
        rows.append((f"RSS after {long.extra['lines']:,} lines (MB)", val("long"), "", "≤ 40 MB"))
        rows.append(
            ("RSS growth over the second half (MB)", val("long", "growth_mb_second_half"), "", "≤ 1 MB")
        )
    rows.append(("scrape `/metrics` p50 (ms)", val("scrape"), "", ""))
    rows.append(("scrape `/metrics` p99 (ms)", val("scrape", "p99_ms"), "", ""))
    if "scrape" in m:
        s = m["scrape"].extra
        rows.append(
            ("series on `/metrics` (rejection series)", f"{s['series']} ({s['rejection_series']})", "", "")
        )
        covered = f"{s['reasons_with_counts']} of {s['reasons_in_rules']}"
        rows.append(("reasons with a non-zero series (of the rules' reasons)", covered, "", ""))
    for key in QUEUE_KEYS:
        if key in m:
            listing = m[key].extra
            what = f"queue listing, {key.removeprefix('queue_')}, {listing['messages']:,} messages"
            rows.append((f"{what}: read time (s)", val(key), mark(get(key)), ""))
            rows.append((f"{what}: peak RSS (MB)", val(key, "peak_rss_mb"), "", ""))
    header = ("Measure", "Value", "Counts", "Target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(header)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |" for r in rows]
    lines.append("")
    for goal in goals:
        met = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        unit = "" if goal["unit"] == "x" else f" {goal['unit']}"
        lines.append(f"- {goal['target']}: {_fmt(goal['value'], goal['unit'])}{unit} → {met}")
    return "\n".join(lines)


def chart(m: dict[str, Measure], lines: int) -> str:
    def bar(key: str, label: str, own: bool) -> list[Bar]:
        measure = m.get(key)
        if measure is None or measure.value is None:
            return []
        return [Bar(label, measure.value, own, measure.counts_ok)]

    groups = [
        (
            "Over a file, start to exit",
            bar("report_postfix", "report --jobs 1 (Postfix log)", True)
            + bar("report_postfix_jobs2", "report --jobs 2 (Postfix log)", True)
            + bar("floor", "floor: read + prefilter only", True)
            + bar("report_exim", "report (Exim mainlog)", True)
            + bar("mtail", "mtail --one_shot (Postfix log)", False),
        ),
        (
            "Following a growing file",
            bar("daemon", "gmail-rejection-exporter run", True)
            + bar("postfix_exporter", "prometheus-postfix-exporter", False),
        ),
    ]
    return throughput_svg(
        f"Throughput on a {lines:,}-line mail log (median, higher is better)",
        groups,
        footnote="Same files, machine and run; every tool's counts checked against the generator. Floor: read and "
        "prefilter, no parsing. Exim mainlog: same traffic, fewer lines.",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = sizes(args)
    out: Path = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = environment()
    timeout = max(120.0, size.lines / 2000)
    # As an installed package has: pip and Debian compile the bytecode at install. An editable install run with
    # PYTHONDONTWRITEBYTECODE would otherwise compile every module again at each start (0.2 s of each `report`).
    compileall.compile_dir(REPO / "exporter", quiet=1)
    # The caches a first command leaves beside the code (the bundled rules, the compiled patterns), as `make` does.
    subprocess.run([*ours.EXPORTER, "report", os.devnull], cwd=REPO, stdout=subprocess.DEVNULL, check=True)

    done = step(f"generating {size.lines:,} Postfix lines and the same traffic as an Exim mainlog")
    postfix_log, exim_log = work / "postfix.log", work / "exim.log"
    truth = generate(postfix_log, exim_log, size.lines, args.seed)
    done()

    m: dict[str, Measure] = {}
    done = step(
        f"report --jobs 1, report --jobs 2 and mtail --one_shot on the Postfix log, side by side, {size.repeat}x"
    )
    m.update(
        side_by_side(
            {
                "report_postfix": lambda: ours.report(postfix_log, truth, 1, "Postfix", jobs=1),
                "report_postfix_jobs2": lambda: ours.report(postfix_log, truth, 1, "Postfix", jobs=2),
                "mtail": lambda: peers.mtail_one_shot(postfix_log, truth, 1),
            },
            size.repeat,
        )
    )
    done()
    done = step(f"pure-Python floor (read + prefilter only) on the Postfix log, {size.repeat}x")
    m["floor"] = ours.floor(postfix_log, size.repeat)
    done()
    done = step(f"report on the Exim mainlog, {size.repeat}x")
    m["report_exim"] = ours.report(exim_log, truth, size.repeat, "Exim")
    done()
    done = step(
        f"report on the Postfix log as Kubernetes (CRI) and Docker (json-file) container logs, {size.repeat}x"
    )
    cri_log, docker_log = work / "postfix-cri.log", work / "postfix-json.log"
    containers.wrap_file(postfix_log, cri_log, containers.cri)
    containers.wrap_file(postfix_log, docker_log, containers.docker)
    m["report_cri"] = ours.report(cri_log, truth, size.repeat, "Postfix, CRI container log")
    m["report_docker"] = ours.report(docker_log, truth, size.repeat, "Postfix, json-file container log")
    done()
    done = step(
        f"daemon and prometheus-postfix-exporter following the Postfix log as it is appended, side by side, "
        f"{size.repeat}x"
    )
    running: list[tuple[ours.Daemon, Path]] = []
    """Our daemon of the last round, kept running for the measures below."""

    def daemon_round() -> Measure:
        if running:
            running.pop()[0].stop()
        measure, daemon, followed = ours.daemon_throughput(work, postfix_log, truth, 1, timeout=timeout)
        running.append((daemon, followed))
        return measure

    m.update(
        side_by_side(
            {
                "daemon": daemon_round,
                "postfix_exporter": lambda: peers.postfix_exporter_follow(
                    work, postfix_log, truth, 1, timeout=timeout
                ),
            },
            size.repeat,
        )
    )
    daemon, followed = running.pop()
    done()
    try:
        done = step(f"append-to-metric latency, {size.appends} appends at {size.rate:g}/s")
        m["latency"] = ours.latency(
            daemon, followed, google_outcome_lines(postfix_log, 1000), size.appends, size.rate
        )
        done()
        done = step(f"/metrics scrape time, {size.scrapes} scrapes")
        m["scrape"] = ours.scrape_time(daemon, size.scrapes)
        done()
        done = step(f"idle CPU over {size.idle_seconds:g} s")
        time.sleep(1.0)
        m["idle"] = ours.idle_cpu(daemon.pid, size.idle_seconds)
        print(f"   per thread: {m['idle'].extra['threads']}")
        done()
    finally:
        daemon.stop()
        followed.unlink(missing_ok=True)
    if size.long_factor > 0:
        done = step(f"daemon memory over {size.long_factor * truth.postfix_lines:,} lines")
        m["long"] = ours.long_rss(work, postfix_log, size.long_factor)
        done()

    done = step(f"queue listings, {queue.MESSAGES:,} messages in each MTA's format, {size.repeat}x")
    for mta, measure in queue.measure_all(work, queue.MESSAGES, size.repeat).items():
        m[f"queue_{mta}"] = measure
    done()

    env["load_average_at_end"] = os.getloadavg()
    ratios = {
        "report_jobs1_vs_mtail": ratio(m["report_postfix"].value, m["mtail"].value),
        "report_jobs2_vs_mtail": ratio(m["report_postfix_jobs2"].value, m["mtail"].value),
        "report_jobs1_vs_mtail_best": ratio(m["report_postfix"].best, m["mtail"].best),
        "report_jobs2_vs_mtail_best": ratio(m["report_postfix_jobs2"].best, m["mtail"].best),
        "floor_vs_mtail": ratio(m["floor"].value, m["mtail"].value),
        "daemon_vs_postfix_exporter": ratio(m["daemon"].value, m["postfix_exporter"].value),
    }
    goals = targets(m, ratios)
    ours_ok = all(
        m[k].counts_ok
        for k in (
            "report_postfix",
            "report_postfix_jobs2",
            "report_exim",
            "report_cri",
            "report_docker",
            "daemon",
            "latency",
            "long",
            *QUEUE_KEYS,
        )
        if k in m
    )
    results = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "parameters": {**size.__dict__, "seed": args.seed, "quick": args.quick},
        "truth": truth.as_json(),
        "measures": {k: v.as_json() for k, v in m.items()},
        "ratios": ratios,
        "targets": goals,
        "our_counts_exact": ours_ok,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "throughput.svg").write_text(chart(m, truth.postfix_lines))
    print()
    print(table(m, ratios, goals))
    for key, measure in m.items():
        for check in measure.checks:
            if not check.ok:
                print(
                    f"{key}: {check.what} differ from the ground truth (expected, got): {check.differences()}"
                )
    if not args.quick and ours_ok:
        RESULTS.mkdir(exist_ok=True)
        shutil.copyfile(out / "results.json", RESULTS / "latest.json")
        shutil.copyfile(out / "throughput.svg", RESULTS / "throughput.svg")
        print(f"\ncopied results.json and throughput.svg to {RESULTS.relative_to(REPO)}/")
    print(f"\nresults: {out / 'results.json'}\nchart:   {out / 'throughput.svg'}")
    if not ours_ok:
        print("FAIL: our counts differ from the ground truth", file=sys.stderr)
        return 1
    return 0
