"""Hostile log content through the running daemon: bounded series, bounded memory, near-normal throughput, and
no address, local part or client IP in any label value or on the landing page."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from daemon_harness import GOOGLE, Exporter, parse_metrics
from fault_load import MIX, Totals, block, line, vm_hwm_kib

from bench.procs import cpu_seconds
from exporter.analyse import MAX_LINE_BYTES
from exporter.metrics import MAX_REJECTION_SERIES

ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]+")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6_SHAPE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def ipv6s(text: str) -> list[str]:
    """IPv6 addresses in a text (a clock time like 21:32:49 has the same characters, not '::' or 5 colons)."""
    found = _IPV6_SHAPE.findall(text)
    return [m for m in found if re.search(r"[0-9A-Fa-f]", m) and ("::" in m or m.count(":") >= 5)]


SERIES_BOUND = {
    "gmail_rejections_total": MAX_REJECTION_SERIES + 16 * 2 * 2,
    "gmail_deliveries_total": 4,
    "gmail_connection_errors_total": 6,
}
RSS_BOUND_KIB = 100 * 1024


def hostile_block(start: int, count: int) -> bytes:
    """Refusals with a distinct enhanced code, recipient domain, local part and client IP on every line, with
    backtracking baits, NUL bytes and invalid UTF-8 mixed in."""
    out = []
    for n in range(start, start + count):
        kind = n % 10
        if kind == 7:
            out.append(b"Nov 29 21:32:49 mx1 postfix/smtp[1]: A: host " + b"host x[" * 3000 + b" gsmtp")
            continue
        if kind == 8:
            out.append(b"Nov 29 21:32:49 mx1 postfix/smtp[1]: \x00\x00 to=<a@gmail.com> \xff\xfe gsmtp")
            continue
        if kind == 9:
            out.append(
                b"Nov 29 21:32:49 mx1 postfix/smtp[1]: 1A: to=<\xc3\x28@gmail.com> status=bounced \xff gsmtp"
            )
            continue
        code = 550 + n % 5
        enhanced = f"5.{n // 10 % 8}.{n // 80 % 100}" if kind < 4 else f"5.{n % 1000}.{n}"
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        reply = (
            f"{code}-{enhanced} victim{n}@d{n}.example refused from [{ip}] and 2001:db8::{n:x} {code} {enhanced} "
            f"x{n}.1 - gsmtp"
        )
        out.append(
            f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {n:010X}: to=<victim{n}@d{n}.example>, relay={GOOGLE}, "
            f"delay=1, delays=0/0/0/1, dsn={enhanced}, status=bounced (host gmail-smtp-in.l.google.com"
            f"[142.250.27.26] said: {reply} (in reply to RCPT TO command))".encode()
        )
    return b"\n".join(out) + b"\n"


def _ingest(
    tmp_path: Path, name: str, lines: int, make: object, *, scrape_when_idle: bool = False
) -> tuple[float, int, dict, str, float]:
    """A fresh exporter reads `lines` lines appended at once; (seconds, peak RSS KiB, samples, landing page, CPU
    seconds the exporter spent meanwhile).

    `scrape_when_idle`: /metrics is asked whether all lines are counted only once the exporter's CPU time has
    stopped growing (it is done, or starved), or a second after the last time: the CPU seconds are then those of
    reading, not of rendering /metrics 20 times a second for the wait (a page of a hundred series or more for
    distinct replies, 5-10 ms of the exporter's CPU each time, asked as often as the machine is slow)."""
    assert callable(make)
    directory = tmp_path / name
    directory.mkdir()
    log = directory / "mail.log"
    content = [make(start, min(50_000, lines - start)) for start in range(0, lines, 50_000)]
    log.touch()
    with Exporter(directory, "--log.path", str(log)) as exporter:
        assert exporter.proc is not None
        pid = exporter.proc.pid
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        with open(log, "ab") as f:
            for data in content:
                f.write(data)
        last_cpu, last_scrape = cpu_before, started

        def all_read() -> bool:
            nonlocal last_cpu, last_scrape
            if scrape_when_idle:
                cpu, now = cpu_seconds(pid), time.monotonic()
                busy, last_cpu = cpu > last_cpu, cpu
                if busy and now - last_scrape < 1.0:
                    return False
                last_scrape = now
            return exporter.value("gmail_exporter_lines_total") >= lines

        exporter.wait_until(all_read, 30 + lines / 2000, f"{lines} lines read")
        seconds = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
        status, body = exporter.get("/metrics")
        assert status == 200
        landing = exporter.get("/")[1].decode()
        rss = vm_hwm_kib(pid)
    return seconds, rss, parse_metrics(body.decode()), landing, cpu


def _hostile_run(tmp_path: Path, lines: int) -> tuple[float, float]:
    """Asserts bounded series, bounded memory and no personal data; returns (normal, hostile) lines/s."""
    normal_s, normal_rss, _, _, _ = _ingest(tmp_path, "normal", lines, block)
    hostile_s, hostile_rss, samples, landing, _ = _ingest(tmp_path, "hostile", lines, hostile_block)
    series = Counter(name for name, _ in samples)
    refusals = sum(v for (name, _), v in samples.items() if name == "gmail_rejections_total")
    skipped = {
        dict(ls)["reason"]: v for (n, ls), v in samples.items() if n == "gmail_exporter_lines_skipped_total"
    }
    print(
        f"\nhostile input: {lines} lines in {hostile_s:.1f} s ({lines / hostile_s:.0f}/s) vs normal {normal_s:.1f} s "
        f"({lines / normal_s:.0f}/s); peak RSS {hostile_rss // 1024} MiB (normal {normal_rss // 1024} MiB); "
        f"series {dict((k, series[k]) for k in SERIES_BOUND)}; skipped {skipped}"
    )
    source = frozenset({("source", str(tmp_path / "hostile" / "mail.log"))})
    assert samples[("gmail_exporter_lines_total", source)] == lines
    assert refusals == lines * 7 // 10
    assert skipped == {"not_text": lines // 10 * 2, "too_long": 0, "unparseable": lines // 10}
    for name, bound in SERIES_BOUND.items():
        assert series[name] <= bound, (name, series[name])
    assert hostile_rss < RSS_BOUND_KIB
    exposed = [
        f"{name}{{{label}={value!r}}}"
        for (name, labels), _ in samples.items()
        for label, value in labels
        if label != "source" and (ADDRESS.search(value) or IPV4.search(value) or ipv6s(value))
    ]
    assert exposed == []
    assert "victim" not in landing and ADDRESS.findall(landing) == [] and IPV4.findall(landing) == []
    assert ipv6s(landing) == [] and "***@d" in landing  # the replies are there, redacted
    return lines / normal_s, lines / hostile_s


def test_hostile_lines_keep_series_and_memory_bounded_and_show_nothing_personal(tmp_path: Path) -> None:
    _hostile_run(tmp_path, 50_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_million_hostile_lines(tmp_path: Path) -> None:
    _hostile_run(tmp_path, 1_000_000)


def refusals_block(start: int, count: int) -> bytes:
    """Gmail's refusals as a busy relay logs them again and again (fault_load's refusal kinds)."""
    return "".join(line(1 + n % 6, n) for n in range(start, start + count)).encode()


_DSN = re.compile(r"dsn=(\d\.\d+\.\d+)")


def _distinct(text: str, n: int) -> str:
    """A line made new to every cache: a distinct recipient domain and local part and, in a refusal, a distinct
    fake enhanced code (half of them beyond RFC 3463's shape) and an address and client IP inside the reply."""
    for domain in ("gmail.com", "googlemail.com"):
        text = text.replace(f"user{n}@{domain}", f"victim{n}@d{n}.example")
    if " said: " in text:
        real = _DSN.search(text)
        assert real is not None
        code = real.group(1)
        fake = f"{code[0]}.{n // 7 % 8}.{n % 1000}" if n % 2 else f"{code[0]}.{n % 1000}.{n}"
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        text = text.replace(code, fake).replace(" - gsmtp", f" victim{n}@d{n}.example [{ip}] - gsmtp")
    return text


def distinct_block(start: int, count: int) -> bytes:
    """fault_load's busy-relay mix with every line about Google made distinct."""
    return "".join(_distinct(line(MIX[n % len(MIX)], n), n) for n in range(start, start + count)).encode()


def distinct_refusals_block(start: int, count: int) -> bytes:
    """refusals_block with every line made distinct: the worst case, a log of nothing but new refusals."""
    return "".join(_distinct(line(1 + n % 6, n), n) for n in range(start, start + count)).encode()


def _rejections(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items() if name == "gmail_rejections_total")


def _best_of_3(
    tmp_path: Path, lines: int, makes: dict[str, object]
) -> dict[str, tuple[float, int, dict, str, float]]:
    """For each named log, _ingest three times, each time into a fresh exporter, the logs taking turns (a spell of
    load on the machine then slows runs of each, not all the runs of one): the run that took the least CPU, as
    benchmarks take the minimum (noise only ever adds time)."""
    runs: dict[str, list[tuple[float, int, dict, str, float]]] = {name: [] for name in makes}
    for n in (1, 2, 3):
        for name, make in makes.items():
            runs[name].append(_ingest(tmp_path, f"{name}-{n}", lines, make, scrape_when_idle=True))
    return {name: min(found, key=lambda run: run[4]) for name, found in runs.items()}


def test_distinct_fake_codes_and_domains_keep_throughput_within_3x(tmp_path: Path) -> None:
    """A busy relay's log in which every line about Google carries a distinct fake enhanced code, recipient domain,
    local part and client IP, against the same log as Gmail really answers: within 3x. The worst case, a log of
    nothing but new refusals, is held within 8x of the same refusals repeated.

    A distinct reply misses the classification cache by design (its text is normalised and matched against the
    rules), which alone costs about twice a cached line; and the fast path classifies a reply it has seen once,
    so repeated refusals cost a quarter of new ones (26.5 against 103.5 us per line). The bounds leave room for a
    busy machine and catch what they are for: work that grows with the number of distinct values (a scan of a
    growing table, an unbounded cache), which costs tens of times more.

    Compared in the exporter's CPU time per line, which is what its throughput is while it reads a backlog (it is
    CPU-bound), measured without the 50 ms granularity of polling /metrics for the end and without the CPU of
    answering that polling (see _ingest), the two logs taking turns."""
    lines = 100_000
    busy_relay = _best_of_3(tmp_path, lines, {"normal": block, "hostile": distinct_block})
    normal_s, _, normal, _, normal_cpu = busy_relay["normal"]
    hostile_s, rss, hostile, landing, hostile_cpu = busy_relay["hostile"]
    few = 40_000
    refusals = _best_of_3(tmp_path, few, {"repeated": refusals_block, "new": distinct_refusals_block})
    repeated_s, _, repeated, _, repeated_cpu = refusals["repeated"]
    new_s, _, new, _, new_cpu = refusals["new"]
    print(
        f"\ndistinct Google lines: {lines / hostile_s:.0f} lines/s ({hostile_cpu / lines * 1e6:.1f} us CPU per line) "
        f"vs {lines / normal_s:.0f} lines/s ({normal_cpu / lines * 1e6:.1f} us): {hostile_cpu / normal_cpu:.2f}x; "
        f"nothing but new refusals: {few / new_s:.0f} lines/s ({new_cpu / few * 1e6:.1f} us) vs the same refusals "
        f"repeated {few / repeated_s:.0f} lines/s ({repeated_cpu / few * 1e6:.1f} us): {new_cpu / repeated_cpu:.2f}x; "
        f"peak RSS {rss // 1024} MiB"
    )
    expected = Totals()
    for start in range(0, lines, 50_000):
        expected.add(block(start, min(50_000, lines - start)))
    assert _rejections(normal) == _rejections(hostile) == sum(expected.rejections.values())
    assert _rejections(repeated) == _rejections(new) == few
    for samples in (normal, hostile):
        statuses = {dict(ls)["status"]: v for (n, ls), v in samples.items() if n == "gmail_deliveries_total"}
        assert statuses == {s: expected.deliveries.get(s, 0) for s in statuses}
    series = Counter(name for name, _ in hostile) + Counter(name for name, _ in new)
    assert series["gmail_rejections_total"] <= 2 * SERIES_BOUND["gmail_rejections_total"]
    assert "victim" not in landing
    assert hostile_cpu <= 3 * normal_cpu
    assert new_cpu <= 8 * repeated_cpu


def test_baits_and_garbage_keep_byte_throughput_within_2x(tmp_path: Path) -> None:
    """Backtracking baits (21 KB each), NUL bytes and invalid UTF-8 cost per byte, not per line: one bait is as many
    bytes as 90 normal lines, so bytes/s is the measure that compares."""
    lines = 20_000
    normal_s, _, _, _, _ = _ingest(tmp_path, "normal", lines, block)
    hostile_s, _, _, _, _ = _ingest(tmp_path, "hostile", lines, hostile_block)
    normal_bytes = sum(len(block(s, min(50_000, lines - s))) for s in range(0, lines, 50_000))
    hostile_bytes = sum(len(hostile_block(s, min(50_000, lines - s))) for s in range(0, lines, 50_000))
    normal_rate, hostile_rate = normal_bytes / normal_s, hostile_bytes / hostile_s
    print(
        f"\nhostile mix: {hostile_rate / 1e6:.1f} MB/s ({lines / hostile_s:.0f} lines/s) vs normal mix "
        f"{normal_rate / 1e6:.1f} MB/s ({lines / normal_s:.0f} lines/s)"
    )
    assert hostile_rate * 2 >= normal_rate


def test_a_100_mb_line_without_newline_costs_one_skipped_line(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        assert exporter.proc is not None
        baseline = vm_hwm_kib(exporter.proc.pid)
        chunk = b"A" * (1 << 20)
        with open(log, "ab") as f:
            for _ in range(100):
                f.write(chunk)
                f.flush()
        # Cut at the limit and counted as one skipped line at once; the rest is dropped up to its newline.
        exporter.wait_for("gmail_exporter_lines_skipped_total", 1, reason="too_long")
        assert exporter.value("gmail_exporter_lines_total") == 1
        with open(log, "ab") as f:
            f.write(b" gsmtp\n" + block(0, 28))
        exporter.wait_for("gmail_exporter_lines_total", 29)
        assert exporter.value("gmail_exporter_bytes_total") == log.stat().st_size
        assert exporter.value("gmail_exporter_lines_skipped_total", reason="too_long") == 1
        assert exporter.value("gmail_deliveries_total", status="sent") == 4
        peak = vm_hwm_kib(exporter.proc.pid)
    print(f"\n100 MB line: peak RSS {peak // 1024} MiB (at start {baseline // 1024} MiB)")
    assert peak - baseline < 8 * MAX_LINE_BYTES // 1024 + 16 * 1024
