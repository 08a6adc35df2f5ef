"""Realistic Postfix traffic for the fault and load tests, and the totals the exporter must report for it.

Every Postfix `smtp` line carries its kind in the first two hex digits of its queue id, so the expected totals
of any file can be counted back from the file itself (what the files hold is the truth, not what a writer
meant to write). The refusals are Gmail replies from tests/data/replies.tsv with the category given there.
"""

from __future__ import annotations

import gzip
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conftest import CORPUS

RELAY = "gmail-smtp-in.l.google.com[142.250.27.26]:25"
SAID = "host gmail-smtp-in.l.google.com[142.250.27.26] said:"


@dataclass(frozen=True)
class Kind:
    """One shape of line: what it adds to gmail_deliveries_total and gmail_rejections_total."""

    status: str | None
    category: str | None
    template: str
    """A line with {q} (queue id), {n} (a serial number) and {ip} (a client address)."""


def _refusal(row_id: str) -> Kind:
    row = next(r for r in CORPUS if r.id == row_id)
    status = "deferred" if row.code.startswith("4") else "bounced"
    stage = {"rcpt": "RCPT TO", "data": "end of DATA", "mail": "MAIL FROM"}[row.stage]
    reply = f"{row.code}-{row.enhanced_code} {row.text} {row.code} {row.enhanced_code} x{{n}}.1 - gsmtp"
    return Kind(
        status,
        row.category,
        f"Nov 29 21:32:49 mx1 postfix/smtp[9001]: {{q}}: to=<user{{n}}@gmail.com>, relay={RELAY}, delay=0.5, "
        f"delays=0/0/0.2/0.3, dsn={row.enhanced_code}, status={status} ({SAID} {reply} (in reply to {stage} "
        "command))",
    )


SMTP = "Nov 29 21:32:49 mx1 postfix/smtp[9001]: {q}: "
KINDS: tuple[Kind, ...] = (
    Kind(
        "sent",
        None,
        SMTP + f"to=<user{{n}}@gmail.com>, relay={RELAY}, delay=0.5, delays=0/0/0.2/0.3, dsn=2.0.0, "
        "status=sent (250 2.0.0 OK  1764451969 abc{n}.1 - gsmtp)",
    ),
    _refusal("seed-51"),
    _refusal("seed-07"),
    _refusal("seed-46"),
    _refusal("beyond-10"),
    _refusal("seed-36"),
    _refusal("seed-14"),
    Kind(
        "deferred",
        None,
        SMTP + "to=<user{n}@googlemail.com>, relay=none, delay=30, delays=0/0/30/0, dsn=4.4.1, "
        "status=deferred (connect to gmail-smtp-in.l.google.com[142.250.27.26]:25: Connection timed out)",
    ),
    Kind(
        None,
        None,
        SMTP + "to=<user{n}@example.net>, relay=mx.example.net[198.51.100.7]:25, delay=0.2, "
        "delays=0/0/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Xk{n})",
    ),
    Kind(None, None, "Nov 29 21:32:48 mx1 postfix/smtpd[812]: connect from unknown[{ip}]"),
    Kind(None, None, "Nov 29 21:32:48 mx1 postfix/cleanup[813]: {q}: message-id=<{n}.news@example.org>"),
    Kind(
        None,
        None,
        "Nov 29 21:32:48 mx1 postfix/qmgr[811]: {q}: from=<news{n}@example.org>, size=4211, nrcpt=1 "
        "(queue active)",
    ),
    Kind(None, None, "Nov 29 21:32:50 mx1 postfix/qmgr[811]: {q}: removed"),
)
# A busy relay's mix: mostly other traffic, a fair share of Gmail deliveries, a few refusals of each kind.
MIX: tuple[int, ...] = (
    0,
    8,
    9,
    10,
    11,
    12,
    0,
    1,
    8,
    9,
    11,
    12,
    0,
    2,
    8,
    9,
    10,
    11,
    12,
    0,
    3,
    4,
    8,
    12,
    5,
    6,
    9,
    7,
)
_QUEUE_ID = re.compile(rb"^Nov 29 21:32:\d\d mx1 postfix/smtp\[9001\]: ([0-9A-F]{2})", re.MULTILINE)


def line(kind: int, n: int) -> str:
    """Line number n of a kind, newline included."""
    ip = f"203.0.{(n >> 8) & 255}.{n & 255}"
    return KINDS[kind].template.format(q=f"{kind:02X}{n & 0xFFFFFFFF:08X}", n=n, ip=ip) + "\n"


def block(start: int, count: int) -> bytes:
    """`count` lines of the mix, numbered from `start`."""
    mix = MIX
    return "".join(line(mix[n % len(mix)], n) for n in range(start, start + count)).encode()


@dataclass
class Totals:
    """What the exporter must report for some lines."""

    lines: int = 0
    deliveries: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)

    def add(self, data: bytes) -> None:
        """Counts the complete lines of `data` (an unterminated tail is not a line yet)."""
        self.lines += data.count(b"\n")
        for match in _QUEUE_ID.finditer(data):
            kind = KINDS[int(match.group(1), 16)]
            if kind.status is not None:
                self.deliveries[kind.status] += 1
            if kind.category is not None:
                self.rejections[kind.category] += 1

    def __iadd__(self, other: Totals) -> Totals:
        self.lines += other.lines
        self.deliveries.update(other.deliveries)
        self.rejections.update(other.rejections)
        return self


def count_file(path: Path) -> Totals:
    """The totals of what a plain or gzip-compressed log file holds."""
    totals = Totals()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        totals.add(f.read())
    return totals


def count_files(paths: list[Path]) -> Totals:
    totals = Totals()
    for path in paths:
        totals += count_file(path)
    return totals


def exporter_totals(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> Totals:
    """The same totals as the exporter reports them (sums over every source and finer label)."""
    totals = Totals()
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "gmail_exporter_lines_total":
            totals.lines += int(value)
        elif name == "gmail_deliveries_total" and value:
            totals.deliveries[label["status"]] += int(value)
        elif name == "gmail_rejections_total" and value:
            totals.rejections[label["category"]] += int(value)
    return totals


def as_dict(totals: Totals) -> dict[str, object]:
    return {
        "lines": totals.lines,
        "deliveries": dict(sorted(totals.deliveries.items())),
        "rejections": dict(sorted(totals.rejections.items())),
    }


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a process (VmHWM)."""
    for entry in Path(f"/proc/{pid}/status").read_text().splitlines():
        if entry.startswith("VmHWM:"):
            return int(entry.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


class Deadline:
    """A time bound for a loop that also has a bound on its count."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() >= self.end
