"""The queue reader under measurement: how long it takes, and how much memory, to read and classify a
100,000-message listing of each MTA's format (bench/queue_listings.py), run as the daemon runs it: a listing
command (`cat` of the generated file) streamed through QueueReader, Exim's message logs read from a directory.

`python -m bench.queue [--messages N]` prints the table alone; bench/run.py includes it in the full bench."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Final

from bench import queue_listings as generated
from bench.generate import REPO
from bench.measure import Check, Measure
from bench.procs import run_timed

MESSAGES: Final = 100_000


def write_listing(mta: str, messages: int, work: Path) -> tuple[Path, Path | None]:
    """The listing file (and for Exim the msglog directory) of `messages` generated messages."""
    work.mkdir(parents=True, exist_ok=True)
    listing = work / f"{mta}-{messages}.txt"
    msglogs = work / f"exim-msglog-{messages}" if mta == "exim" else None
    chunks = generated.exim(messages) if mta == "exim" else getattr(generated, mta)(messages)
    with open(listing, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    if msglogs is not None and not (msglogs / "done").exists():
        msglogs.mkdir(exist_ok=True)
        for i in range(messages):
            message_id = generated.exim_id(i)
            (msglogs / message_id).write_bytes(generated.exim_msglog(message_id) or b"")
        (msglogs / "done").touch()
    return listing, msglogs


def read_once(mta: str, listing: Path, msglogs: Path | None, now: float) -> dict[str, object]:
    """One QueueReader listing of the file: its duration and counts (run in a process of its own)."""
    from exporter.google import GoogleHosts
    from exporter.queue.classify import QueueClassifier
    from exporter.queue.domains import GoogleDomains
    from exporter.queue.reader import QueueReader
    from exporter.rules import load_rules

    classifier = QueueClassifier(load_rules(), GoogleHosts(), GoogleDomains())
    reader = QueueReader(
        mta,
        ["cat", str(listing)],
        classifier,
        interval=3600.0,
        clock=lambda: now,
        msglog_directory=None if msglogs is None else str(msglogs),
    )
    start = time.perf_counter()
    snap = reader.scrape()
    seconds = time.perf_counter() - start
    counts = {k: v for k, v in (*snap.recipients.items(), *snap.unanswered.items()) if v}
    return {"success": snap.success, "error": snap.error, "seconds": seconds, "counts": counts}


def measure(mta: str, messages: int, work: Path, repeat: int = 3) -> Measure:
    """Time (median of `repeat`) and peak RSS to read one listing, checked against what it holds."""
    listing, msglogs = write_listing(mta, messages, work)
    empty, empty_logs = write_listing(mta, 0, work)
    now = float(generated.START + messages)
    measure = Measure(f"queue listing ({mta}, {messages:,} messages)", "s")
    rss: list[int] = []
    result: dict[str, object] = {}
    for files in [(empty, empty_logs)] + [(listing, msglogs)] * repeat:
        argv = [
            sys.executable,
            "-m",
            "bench.queue",
            "--read",
            mta,
            str(files[0]),
            str(files[1] or ""),
            str(now),
        ]
        done = run_timed(argv, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(
                f"queue read failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
            )
        result = json.loads(done.stdout)
        if files[0] == empty:
            baseline_kb = done.max_rss_kb
            continue
        if not result["success"]:
            raise RuntimeError(f"queue read failed: {result['error']}")
        measure.samples.append(float(str(result["seconds"])))
        rss.append(done.max_rss_kb)
    counts = result["counts"]
    assert isinstance(counts, dict)
    measure.checks = [
        Check("queued recipients by category and kind", generated.expected(mta, messages), counts)
    ]
    measure.extra = {
        "messages": messages,
        "messages_per_second": messages / measure.value if measure.value else None,
        "peak_rss_mb": max(rss) / 1024,
        "peak_rss_above_empty_listing_mb": (max(rss) - baseline_kb) / 1024,
    }
    return measure


def table(measures: dict[str, Measure]) -> str:
    lines = [
        "| Queue listing | Messages | Read time (s) | Messages/s | Peak RSS (MB) | Above an empty listing (MB) | Counts |",
        "|---|---|---|---|---|---|---|",
    ]
    for mta, m in measures.items():
        extra = m.extra
        lines.append(
            f"| {mta} | {extra['messages']:,} | {m.value:.2f} | {extra['messages_per_second']:,.0f} | "
            f"{extra['peak_rss_mb']:.1f} | {extra['peak_rss_above_empty_listing_mb']:.1f} | "
            f"{'exact' if m.counts_ok else 'MISCOUNTS'} |"
        )
    return "\n".join(lines)


def measure_all(work: Path, messages: int = MESSAGES, repeat: int = 3) -> dict[str, Measure]:
    return {mta: measure(mta, messages, work / "queues", repeat) for mta in generated.MTAS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument(
        "--read", nargs=4, metavar=("MTA", "LISTING", "MSGLOGS", "NOW"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.read:
        mta, listing, msglogs, now = args.read
        result = read_once(mta, Path(listing), Path(msglogs) if msglogs else None, float(now))
        json.dump(result, sys.stdout)
        return 0
    measures = measure_all(args.out / "work", args.messages, args.repeat)
    print(table(measures))
    (args.out / "queue-results.json").write_text(
        json.dumps({k: v.as_json() for k, v in measures.items()}, indent=2) + "\n"
    )
    return 0 if all(m.counts_ok for m in measures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
