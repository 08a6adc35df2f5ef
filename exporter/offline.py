"""The offline commands: `classify` (one JSON object per line about Google), `report` (a postmaster's
summary of log files) and `check-rules`."""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from exporter import config, heap
from exporter.analyse import MAX_LINE_BYTES, Analyser, Skipped
from exporter.compressed import READ_ERRORS, open_log
from exporter.errors import ConfigError, WorkerError
from exporter.events import STATUSES, Event, Reply, Verdict
from exporter.fastpath import Accepted, Refused
from exporter.labels import code_label, enhanced_label, reason_key
from exporter.redact import redact, shorten, template
from exporter.rules import CATEGORIES, UNMATCHED_REASON, Rules, load_rules, rule_stub
from exporter.sources.lines import READ_BYTES, BlockSplitter, LineSplitter

LARGE_INPUT_BYTES: Final = 16 << 20
"""An input file this large makes `report` keep freed memory for its next blocks (see heap.py)."""
EXAMPLE_CHARS: Final = 300
"""Longest example reply `report` prints per reason, the ellipsis included."""


def add_classify_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_analysis_flags(parser)
    parser.add_argument("--unclassified", action="store_true",
                        help="print only Google refusals that no rule matched (reason unknown)")  # fmt: skip
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="log files (plain or compressed); stdin when none"
    )
    parser.set_defaults(handler=run_classify)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_analysis_flags(parser)
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="log files, oldest first (plain or compressed)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="processes that read plain files at once (default: the number of cores; one for small or "
        "compressed files and stdin); the report is the same whatever N",
    )
    parser.set_defaults(handler=run_report)


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes, 1 or more, not {text!r}")
    return jobs


def add_check_rules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="rules files (default: the bundled rules)")
    parser.set_defaults(handler=run_check_rules)


def _analyser(args: argparse.Namespace) -> Analyser:
    """The analyser the flags ask for, checked as `run` checks them; raises ConfigError."""
    cfg = config.load(args, sources_required=False)
    return Analyser.for_config(cfg, load_rules(cfg.rules_files))


def _open(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else open_log(path)


def read_batches(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """Lines of a stream without their newline, a chunk's worth at a time; an overlong line is cut, never
    held whole."""
    splitter = LineSplitter(MAX_LINE_BYTES)
    read = stream.read
    while chunk := read(READ_BYTES):
        yield splitter.feed(chunk)
    yield splitter.flush()


def read_blocks(stream: IO[bytes], limit: int | None = None) -> Iterator[bytes]:
    """Whole lines of a stream, a chunk's worth at a time, joined by newlines; no more than `limit` bytes."""
    splitter = BlockSplitter(MAX_LINE_BYTES)
    read = stream.read
    if limit is None:
        while chunk := read(READ_BYTES):
            yield splitter.feed(chunk)
    else:
        while limit > 0 and (chunk := read(min(READ_BYTES, limit))):
            limit -= len(chunk)
            yield splitter.feed(chunk)
    yield splitter.flush()


def read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of a stream without their newline."""
    for batch in read_batches(stream):
        yield from batch


def classified(analyser: Analyser, stream: IO[bytes]) -> Iterator[tuple[int, Event]]:
    """The events of a stream with the number of the line each starts on (an entry of free text can span
    several lines)."""
    seen = 0
    blocks = read_blocks(stream)
    while True:
        block = next(blocks, None)
        lines: list[int] = []
        count, results = analyser.analyse_block(block, lines) if block is not None else analyser.flush(lines)
        for index, result in zip(lines, results, strict=True):
            if isinstance(result, Event):
                yield seen + index + 1, result
        seen += count
        if block is None:
            return


def event_json(number: int, event: Event) -> dict[str, Any]:
    """The `classify` contract: one object per line about a delivery to Google."""
    d, reply, verdict = event.delivery, event.reply, event.verdict
    return {
        "line": number,
        "mta": d.mta,
        "scope": d.scope,
        "status": d.status,
        "code": code_label(reply.code) if reply else None,
        "enhanced_code": enhanced_label(reply.enhanced_code) if reply else None,
        "category": verdict.category if verdict else None,
        "reason": verdict.reason if verdict else None,
        "severity": verdict.severity if verdict else None,
        "origin": reply.origin if reply else None,
        "google_host": d.google_host,
        "timestamp": d.timestamp,
        "queue_id": d.queue_id,
        "recipient_domain": d.recipient_domain,
        "connection_error": d.connection_error,
        "text": redact(reply.text) if reply else None,
    }


def _reader_gone() -> None:
    """Stdout's reader has gone (`report log | head`): the command stops writing and exits as it would have, and
    what is still buffered goes to /dev/null, so that the interpreter's last flush does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run_classify(args: argparse.Namespace) -> int:
    try:
        analyser = _analyser(args)
    except ConfigError as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return 2
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", write_through=False)
    try:
        for path in args.files or ["-"]:
            stream = _open(path)
            try:
                for number, event in classified(analyser, stream):
                    if args.unclassified and not (event.verdict and event.verdict.reason == UNMATCHED_REASON):
                        continue
                    out.write(json.dumps(event_json(number, event), separators=(", ", ": ")) + "\n")
            finally:
                if stream is not sys.stdin.buffer:
                    stream.close()
        out.flush()
    except BrokenPipeError:
        _reader_gone()
    except READ_ERRORS as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return 1
    finally:
        out.detach()
    return 0


@dataclass
class ReasonSummary:
    """Counts of one (category, reason, code, enhanced code) with an example reply."""

    category: str
    reason: str
    code: str | None
    enhanced_code: str | None
    severity: str
    count: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    example: str = ""


MAX_TEMPLATES: Final = 200
"""Templates of unmatched replies `report` lists at most; the replies of further ones are only counted."""


@dataclass
class UnmatchedTemplate:
    """Google refusals that no rule matched and that share a template (see redact.template): what Gmail says
    that the rules do not know yet, with a rule stub for the user's own rules file."""

    code: str | None
    enhanced_code: str | None
    template: str
    rule: str | None
    """A rule for the user's rules file (rules.rule_stub), None when the template gives nothing to match on."""
    example: str
    count: int = 0
    first_seen: float | None = None
    last_seen: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "enhanced_code": self.enhanced_code,
            "template": self.template,
            "count": self.count,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "example": self.example,
            "rule": self.rule,
        }


@dataclass
class Report:
    """What `report` accumulates; its size depends on the rules (and MAX_TEMPLATES), not on the log."""

    lines: int = 0
    files: list[str] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    categories: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    reasons: dict[tuple[str, str, str | None, str | None], ReasonSummary] = field(default_factory=dict)
    connection_errors: dict[str, int] = field(default_factory=dict)
    connection_scope_replies: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None
    rules: Rules | None = None
    """The rules the log is classified with: rule stubs guess their category from them."""
    unmatched: dict[tuple[str | None, str | None, str], UnmatchedTemplate] = field(default_factory=dict)
    unmatched_not_listed: int = 0
    """Unmatched replies past the MAX_TEMPLATES templates listed."""
    _unmatched_codes: set[tuple[str | None, str | None]] = field(default_factory=set)

    def add_accepted(self, run: Accepted) -> None:
        """Counts a run of mail Google accepted, as add() would count each of its events."""
        self.deliveries["sent"] += run.count
        first, last = run.first, run.last
        if first is not None and last is not None:
            self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
            self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    def add_refused(self, refused: Refused) -> None:
        """Counts a refusal the fast path read, as add() would count its event, by its template."""
        template, when = refused.template, refused.when
        if when is not None:
            self.first_seen = when if self.first_seen is None else min(self.first_seen, when)
            self.last_seen = when if self.last_seen is None else max(self.last_seen, when)
        self.deliveries[template.status] += 1
        if template.verdict is not None:
            self._add_verdict(template.verdict, template.reply, when, True, template.reason)

    def add(self, event: Event) -> None:
        d = event.delivery
        when = d.timestamp
        if when is not None:
            self.first_seen = when if self.first_seen is None else min(self.first_seen, when)
            self.last_seen = when if self.last_seen is None else max(self.last_seen, when)
        recipient = d.scope == "recipient"
        if recipient and d.status in self.deliveries:
            self.deliveries[d.status] += 1
        if d.connection_error is not None and recipient:
            self.connection_errors[d.connection_error] = self.connection_errors.get(d.connection_error, 0) + 1
        if event.verdict is not None:
            self._add_verdict(event.verdict, event.reply, when, recipient)

    def _add_verdict(
        self,
        verdict: Verdict,
        reply: Reply | None,
        when: float | None,
        recipient: bool,
        reason: tuple[str, str, str | None, str | None] | None = None,
    ) -> None:
        """Counts a classified reply: a refusal of one recipient (Event.is_rejection) under its reason_key(),
        which the caller may know already."""
        if verdict.reason == UNMATCHED_REASON and reply is not None:
            self._add_unmatched(reply, when)
        if not recipient:
            self.connection_scope_replies += 1
            return
        self.categories[verdict.category] = self.categories.get(verdict.category, 0) + 1
        key = reason or reason_key(verdict, reply)
        summary = self.reasons.get(key)
        if summary is None:
            example = shorten(redact(reply.text), EXAMPLE_CHARS) if reply else ""
            summary = self.reasons[key] = ReasonSummary(*key, verdict.severity, example=example)
        summary.count += 1
        if when is not None:
            summary.first_seen = when if summary.first_seen is None else min(summary.first_seen, when)
            summary.last_seen = when if summary.last_seen is None else max(summary.last_seen, when)

    def _add_unmatched(self, reply: Reply, when: float | None) -> None:
        code, enhanced = code_label(reply.code), enhanced_label(reply.enhanced_code)
        full = len(self.unmatched) >= MAX_TEMPLATES
        if full and (code, enhanced) not in self._unmatched_codes:
            self.unmatched_not_listed += 1  # no listed template has these codes: spare making its template
            return
        shape = template(reply.text)
        key = (code, enhanced, shape)
        found = self.unmatched.get(key)
        if found is None:
            if full:
                self.unmatched_not_listed += 1
                return
            self._unmatched_codes.add((code, enhanced))
            stub = rule_stub(self.rules, code, enhanced, shape) if self.rules is not None else None
            found = self.unmatched[key] = UnmatchedTemplate(
                code, enhanced, shape, stub, shorten(redact(reply.text), EXAMPLE_CHARS)
            )
        found.count += 1
        if when is not None:
            found.first_seen = when if found.first_seen is None else min(found.first_seen, when)
            found.last_seen = when if found.last_seen is None else max(found.last_seen, when)

    def merge(self, later: Report) -> None:
        """Adds the summary of the lines that follow this report's: the same as add() of each of their events."""
        self.lines += later.lines
        for counts, more in (
            (self.deliveries, later.deliveries),
            (self.categories, later.categories),
            (self.connection_errors, later.connection_errors),
            (self.skipped, later.skipped),
        ):
            for name, n in more.items():
                counts[name] = counts.get(name, 0) + n
        self.connection_scope_replies += later.connection_scope_replies
        self.first_seen, self.last_seen = _span(
            self.first_seen, self.last_seen, later.first_seen, later.last_seen
        )
        for key, summary in later.reasons.items():
            mine = self.reasons.get(key)
            if mine is None:
                self.reasons[key] = summary
            else:
                _add_counted(mine, summary)
        for shape, unmatched in later.unmatched.items():
            listed = self.unmatched.get(shape)
            if listed is not None:
                _add_counted(listed, unmatched)
            elif len(self.unmatched) >= MAX_TEMPLATES:
                self.unmatched_not_listed += unmatched.count
            else:
                self.unmatched[shape] = unmatched
                self._unmatched_codes.add((unmatched.code, unmatched.enhanced_code))
        self.unmatched_not_listed += later.unmatched_not_listed

    def sorted_unmatched(self) -> list[UnmatchedTemplate]:
        return sorted(self.unmatched.values(), key=lambda u: (-u.count, u.code or "", u.template))

    def as_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "deliveries": self.deliveries,
            "rejections_by_category": {k: v for k, v in self.categories.items() if v},
            "rejections": [
                {
                    "category": s.category,
                    "reason": s.reason,
                    "code": s.code,
                    "enhanced_code": s.enhanced_code,
                    "severity": s.severity,
                    "count": s.count,
                    "first_seen": _iso(s.first_seen),
                    "last_seen": _iso(s.last_seen),
                    "example": s.example,
                }
                for s in self.sorted_reasons()
            ],
            "connection_errors": self.connection_errors,
            "connection_scope_replies": self.connection_scope_replies,
            "unmatched_replies": [u.as_json() for u in self.sorted_unmatched()],
            "unmatched_replies_not_listed": self.unmatched_not_listed,
            "skipped_lines": self.skipped,
        }

    def sorted_reasons(self) -> list[ReasonSummary]:
        return sorted(self.reasons.values(), key=lambda s: (-s.count, s.category, s.reason))

    def as_text(self) -> str:
        out: list[str] = []
        w = out.append
        w(f"Files: {', '.join(self.files)}")
        w(
            f"Lines read: {self.lines}    Period: {_iso(self.first_seen) or '-'} .. {_iso(self.last_seen) or '-'}"
        )
        w("")
        w("Deliveries to Google (per recipient)")
        total = sum(self.deliveries.values())
        for status in STATUSES:
            n = self.deliveries[status]
            share = f"{100 * n / total:5.1f} %" if total else "    -"
            w(f"  {status:<10} {n:>10}  {share}")
        w("")
        w("Rejections by category")
        rejected = sum(self.categories.values())
        if not rejected:
            w("  none")
        for category, n in sorted(self.categories.items(), key=lambda kv: -kv[1]):
            if n:
                w(f"  {category:<16} {n:>10}")
        if self.reasons:
            w("")
            w("Rejections by reason and code")
            header = f"  {'count':>8}  {'category':<15} {'reason':<32} {'code':<4} {'enhanced':<8}  first seen .. last seen"
            w(header)
            for s in self.sorted_reasons():
                w(
                    f"  {s.count:>8}  {s.category:<15} {s.reason:<32} {s.code or '-':<4} {s.enhanced_code or '-':<8}"
                    f"  {_iso(s.first_seen) or '-'} .. {_iso(s.last_seen) or '-'}"
                )
            w("")
            w("Example reply per reason (addresses redacted)")
            seen: set[str] = set()
            for s in self.sorted_reasons():
                if s.reason in seen:
                    continue
                seen.add(s.reason)
                w(f"  {s.reason}: {s.example or '(the MTA logged no reply text)'}")
        if self.unmatched:
            w("")
            w(
                "Google refusals no rule matched, by template (has Gmail reworded something? check the category and"
            )
            w("add the rule to your own rules file, --rules.file)")
            for u in self.sorted_unmatched():
                w(
                    f"  {u.count:>8}  {u.code or '-':<4} {u.enhanced_code or '-':<8}"
                    f"  {_iso(u.first_seen) or '-'} .. {_iso(u.last_seen) or '-'}"
                )
                w(f"            {u.template}")
                w(f"            {u.rule or '(nothing to match on: no codes and no fixed words)'}")
            if self.unmatched_not_listed:
                w(f"  {self.unmatched_not_listed:>8}  more, of templates past the first {MAX_TEMPLATES}")
        if self.connection_errors:
            w("")
            w("Deferrals without a reply from Google (connection errors)")
            for kind, n in sorted(self.connection_errors.items(), key=lambda kv: -kv[1]):
                w(f"  {kind:<16} {n:>10}")
        if self.skipped:
            w("")
            w("Skipped lines")
            for reason, n in sorted(self.skipped.items()):
                w(f"  {reason:<16} {n:>10}")
        return "\n".join(out) + "\n"


def _add_counted(mine: ReasonSummary | UnmatchedTemplate, more: ReasonSummary | UnmatchedTemplate) -> None:
    """Adds the count and time span of the same reason or template seen in later lines."""
    mine.count += more.count
    mine.first_seen, mine.last_seen = _span(mine.first_seen, mine.last_seen, more.first_seen, more.last_seen)


def _span(
    first: float | None, last: float | None, other_first: float | None, other_last: float | None
) -> tuple[float | None, float | None]:
    """The first and last time of two spans (None: no time seen)."""
    if other_first is not None:
        first = other_first if first is None else min(first, other_first)
    if other_last is not None:
        last = other_last if last is None else max(last, other_last)
    return first, last


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


class Progress:
    """Bytes read so far, on stderr, when stderr is a terminal."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.enabled = sys.stderr.isatty()
        self.total = sum(os.path.getsize(p) for p in paths if p != "-" and os.path.exists(p))
        self.done = 0
        self._last = 0.0

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if self.enabled and now - self._last > 0.5:
            self._last = now
            share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
            sys.stderr.write(f"\r{self.done / 1e6:,.0f} MB read{share}   ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 40 + "\r")


def summarise(
    report: Report,
    analyser: Analyser,
    path: str,
    *,
    start: int = 0,
    end: int | None = None,
    flush: bool = True,
    end_of_input: bool = True,
    progress: Progress | None = None,
) -> None:
    """Adds the lines of a file (of its plain bytes start..end when given) to the report; flushes the analyser at
    the end unless the next lines go on with it (a container's line still in parts only at the `end_of_input`)."""
    summarise_block = analyser.summarise_block
    skipped = report.skipped
    with _open(path) if start == 0 and end is None else open(path, "rb") as stream:
        if start:
            stream.seek(start)
        last_pos = start
        blocks = read_blocks(stream, None if end is None else end - start)
        while True:
            block = next(blocks, None)
            if block is None and not flush:
                break
            count, results = summarise_block(block) if block is not None else analyser.flush(end=end_of_input)
            report.lines += count
            for result in results:
                if isinstance(result, Refused):
                    report.add_refused(result)
                elif isinstance(result, Accepted):
                    report.add_accepted(result)
                elif isinstance(result, Skipped):
                    skipped[result.reason] = skipped.get(result.reason, 0) + 1
                else:
                    report.add(result)
            if block is None:
                break
            if progress is not None and progress.enabled:  # where the file is read up to, compressed or not
                pos = os.lseek(stream.fileno(), 0, os.SEEK_CUR)
                progress.update(pos - last_pos)
                last_pos = pos


def build_report(paths: Sequence[str], analyser: Analyser, jobs: int = 1) -> Report:
    """Read the files in order (oldest first) and summarise; memory stays bounded whatever their size. With
    jobs > 1, large plain files are cut into pieces read at once by that many processes (see parallel.py).

    The cyclic garbage collector is off meanwhile: what is read makes no cycles (reference counting frees it), the
    collector's passes over the objects kept cost time for nothing, and its writes into them make a forked piece
    copy the parent's pages."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_report(paths, analyser, jobs)
    finally:
        if enabled:
            gc.enable()


def _build_report(paths: Sequence[str], analyser: Analyser, jobs: int) -> Report:
    if any(_size(path) >= LARGE_INPUT_BYTES for path in paths):
        heap.keep_freed_blocks()
    if jobs > 1:
        from exporter import parallel  # it builds on this module

        pieces = parallel.plan(paths, jobs, analyser)
        if pieces is not None:
            progress = Progress(paths)
            report = parallel.build_report(paths, analyser, pieces, jobs, progress)
            progress.finish()
            return report
    report = Report(files=list(paths), rules=analyser.rules)
    progress = Progress(paths)
    for number, path in enumerate(paths, start=1):
        # A container's line in parts may go on in the next file (a rotation split it): held until the last.
        summarise(report, analyser, path, progress=progress, end_of_input=number == len(paths))
    progress.finish()
    return report


def _size(path: str) -> int:
    """A file's size in bytes (0 for stdin and for what cannot be looked at: opening it says why)."""
    try:
        return 0 if path == "-" else os.stat(path).st_size
    except OSError:
        return 0


def run_report(args: argparse.Namespace) -> int:
    try:
        analyser = _analyser(args)
        jobs = args.jobs if args.jobs is not None else len(os.sched_getaffinity(0))
        report = build_report(args.files, analyser, jobs)
    except ConfigError as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return 2
    except (*READ_ERRORS, WorkerError) as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return 1
    try:
        if args.format == "json":
            json.dump(report.as_json(), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(report.as_text())
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()
    # What the report was built from (rules, analysers, kept blocks) makes no cycles: the collector's last pass
    # over all of it as the interpreter ends is 1 % of a report's instructions for nothing.
    atexit.register(gc.freeze)
    return 0


def run_check_rules(args: argparse.Namespace) -> int:
    try:
        rules: Rules = load_rules(args.files)
    except ConfigError as err:
        print(f"gmail-rejection-exporter: {err}", file=sys.stderr)
        return 2
    reasons = len(rules.reasons)
    print(f"OK: {len(rules.rules)} rules, {reasons} reasons, from {', '.join(rules.files)}")
    return 0
