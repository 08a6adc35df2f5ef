"""Container runtimes' log files: the envelope each runtime wraps around a line that a process in a container wrote
to its stdout or stderr, taken off so that the MTA formats see the line the MTA wrote.

- Docker's json-file driver (`/var/lib/docker/containers/<id>/<id>-json.log`) writes one JSON object a line,
  `{"log":"<text>\\n","stream":"stdout","time":"<RFC 3339>"}` (an `attrs` object may stand before `time`), with
  `<`, `>`, `&` and control characters escaped. A line longer than the driver's buffer is split into several
  objects, all but the last without the final `\\n` in their text.
- The CRI format of Kubernetes (containerd, CRI-O; `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`) writes
  `<RFC 3339 time> <stream> <tags> <text>`, the tags `F` for a full line or `P` for a part that the next lines of
  the same stream go on with, up to the one tagged `F`.

Parts are joined per stream (stdout and stderr interleave), across blocks, rotations and restarts (the part held
is saved with the stream's position), and never held longer than the analyser's line limit: a longer line is
passed on cut, so that the analyser skips it as too long, and the rest of it is dropped. A line without a time of
its own (an MTA logging to stdout without a syslog prefix) takes the runtime's time of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from exporter import patterns
from exporter.mta import ENVELOPES
from exporter.timestamps import log_lead

DOCKER, CRI = ENVELOPES

_DOCKER_STARTS: Final = (b'{"log":', b'{"stream":')
"""How the json-file driver starts every line (its keys come in a fixed order; `log` is left out when empty).
A plain log of JSON events starts otherwise, and stays plain text."""
_CRI_TAGS: Final = patterns.compile(rb"[A-Z](?::[A-Z])*")
_SIGNS: Final = (*_DOCKER_STARTS, b" stdout ", b" stderr ")
"""One of which a block holds when a line of it can be in a container envelope: a block of plain log lines
costs a few C-speed searches."""
_STREAMS: Final = ("stdout", "stderr")
_STREAM_NAMES: Final = {b"stdout": "stdout", b"stderr": "stderr"}
_OTHER_STREAM: Final = ""
"""Where parts of a stream that is neither stdout nor stderr are joined (a damaged or hand-written file): the
memory stays bounded whatever the file names."""


Found = tuple[str, bytes, bool, bytes]
"""What an enveloped line holds: its stream, its text (a line or a part of one), whether the text ends the line,
and the runtime's time of it."""


def cri_fields(line: bytes) -> Found | None:
    """The fields of a CRI line, `<RFC 3339 time> <stdout|stderr> <tags> <text>`; None for any other line."""
    if not (line[:4].isdigit() and line[4:5] == b"-" and line[10:11] == b"T"):
        return None
    fields = line.split(b" ", 3)
    if len(fields) < 3:
        return None
    stamp, stream, tags = fields[0], _STREAM_NAMES.get(fields[1]), fields[2]
    if stream is None or not (stamp.endswith(b"Z") or stamp[-6:-5] in (b"+", b"-")):
        return None
    if tags == b"F":
        whole = True
    elif tags == b"P":
        whole = False
    elif _CRI_TAGS.fullmatch(tags):
        whole = b"P" not in tags.split(b":")
    else:
        return None
    return stream, fields[3] if len(fields) == 4 else b"", whole, stamp


_LOG_START: Final = b'{"log":"'
_STREAM_KEY: Final = b'","stream":"'
"""Where the text of a json-file line ends: a quote inside the text is escaped, so the first of these is it."""
_TIME_KEY: Final = b'"time":"'
_COMMON_ESCAPES: Final = (
    (b"\\u003c", b"<"),
    (b"\\u003e", b">"),
    (b"\\u0026", b"&"),
    (b'\\"', b'"'),
    (b"\\u0009", b"\t"),
)
"""What the driver escapes in a mail log's lines, as it writes it: undone by replacing, without a JSON parser."""


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


NOT_DOCKER: Final[Found] = ("", b"", True, b"")
"""What docker_fields() says of a JSON object that starts like the driver's but is not one: it has no `time`
(an application's own JSON log line, read as plain text)."""


def docker_fields(line: bytes) -> Found | None:
    """The fields of a json-file line, None when it is a damaged one, NOT_DOCKER when it is another JSON object.
    The text is decoded on its own when the line has the driver's shape, else the line as JSON."""
    end = (
        line.find(_STREAM_KEY, len(_LOG_START))
        if line.startswith(_LOG_START) and line.endswith(b'"}')
        else -1
    )
    after = end + len(_STREAM_KEY)
    stream = _STREAM_NAMES.get(line[after : line.find(b'"', after)]) if end >= 0 else None
    at = line.rfind(_TIME_KEY, after) if stream is not None else -1
    if at >= 0 and stream is not None:
        stamp = line[at + len(_TIME_KEY) : -2]
        raw = line[len(_LOG_START) : end]
        whole = raw.endswith(b"\\n")
        text = raw[:-2] if whole else raw
        if b"\\" in text:  # what the driver escapes in a mail log's lines, undone at C speed
            for escaped, char in _COMMON_ESCAPES:
                text = text.replace(escaped, char)
        # No backslash left: each one replaced began an escape (the first of an escaped backslash never does).
        if b"\\" not in text and (text.isascii() or _is_utf8(text)):
            return stream, text, whole, stamp
        try:
            text = json.loads(b'"' + raw + b'"')
        except ValueError:  # JSONDecodeError, and UnicodeDecodeError of bytes that are not UTF-8
            return None
        return _text(stream, text, stamp)
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    if "time" not in entry:
        return NOT_DOCKER
    text, name, time = entry.get("log", ""), entry.get("stream", ""), entry["time"]
    if not isinstance(name, str) or not isinstance(time, str):
        return None
    return _text(name, text, time.encode("utf-8", "replace"))


def _text(stream: str, text: object, stamp: bytes) -> Found | None:
    if not isinstance(text, str):
        return None
    whole = text.endswith("\n")
    # An escaped lone surrogate (\ud800) is no character: it becomes U+FFFD, as the driver writes bad bytes.
    return stream, (text[:-1] if whole else text).encode("utf-8", "replace"), whole, stamp


@dataclass
class Unwrapped:
    """What a block of enveloped lines holds."""

    block: bytes
    """The lines the processes wrote, whole, joined by newlines (with a final newline when there is any line)."""
    lines: int
    """How many lines of the file the block had."""
    damaged: list[tuple[int, str]] = field(default_factory=list)
    """The index in the block of each line whose envelope could not be read, and why: `too_long` (the source cut
    it) or `unparseable` (skipped and counted)."""
    origins: list[int] | None = None
    """For each line of `block`, the number of the file's line (counted over the stream) where it began."""
    enveloped: bool = False
    """Whether any line was in an envelope."""
    stamps: dict[int, bytes] = field(default_factory=dict)
    """Where a line of `block` starts -> the runtime's time of it, for each line that has no time of its own (an
    MTA that logs to stdout without a syslog prefix)."""


class Unwrapper:
    """Takes the envelope off the lines of one stream; keeps the parts of lines still to be joined.

    `only` names the one envelope every line must be in (others are damaged); None takes each line's envelope
    as its first bytes tell, and passes plain lines on as they are."""

    def __init__(self, only: str | None, max_line_bytes: int) -> None:
        if only is not None and only not in ENVELOPES:
            raise ValueError(f"unknown container log format {only!r}; one of {', '.join(ENVELOPES)}")
        self.only = only
        self._limit = max_line_bytes + 1
        self._parts: dict[str, bytes] = {}
        """stream -> the part of a line read so far (shorter than the cut length)."""
        self._first: dict[str, tuple[int, bytes]] = {}
        """stream -> the number of the file's line where its held part began, and the runtime's time of it."""
        self._dropping: set[str] = set()
        """Streams whose line grew too long: the rest of it is dropped up to its last part."""
        self.seen = 0
        """The file's lines read so far, over the stream (for line numbers)."""

    def wrapped(self, blob: bytes, *, syslog: bool = False) -> bool:
        """Whether a block may hold an enveloped line (else it is passed on as it is). `syslog` says that every
        line of it starts with a classic syslog stamp, which no envelope does: then no search is needed."""
        if self.only is not None or self._parts or self._dropping:
            return True
        return not syslog and any(sign in blob for sign in _SIGNS)

    def unwrap(self, blob: bytes, *, numbered: bool = False) -> Unwrapped:
        """The lines inside a block of whole lines (a final newline is allowed)."""
        lines = blob.split(b"\n") if blob else []
        if blob.endswith(b"\n"):
            lines.pop()
        out: list[bytes] = []
        times: list[bytes] = []
        """The runtime's time of each line of `out` without a time of its own, else b""."""
        damaged: list[tuple[int, str]] = []
        origins: list[int] | None = [] if numbered else None
        base = self.seen
        only = self.only
        enveloped = False
        limit, parts, dropping = self._limit, self._parts, self._dropping
        for index, line in enumerate(lines):
            found: Found | None = None
            if line.startswith(_DOCKER_STARTS):
                found = docker_fields(line)
                kind: str | None = None if found is NOT_DOCKER else DOCKER
            else:
                found = cri_fields(line)
                kind = None if found is None else CRI
            if kind is None and only is None:
                out.append(line)
                times.append(b"")
                if origins is not None:
                    origins.append(base + index)
                continue
            enveloped = True
            if len(line) >= limit:
                damaged.append((index, "too_long"))
                continue
            if kind != only and only is not None:
                found = None
            if found is None:
                damaged.append((index, "unparseable"))
                continue
            stream, text, whole, stamp = found
            if whole and not parts and not dropping and b"\n" not in text:  # most lines: nothing to join
                out.append(text)
                times.append(b"" if log_lead(text, 0) else stamp)
                if origins is not None:
                    origins.append(base + index)
                continue
            self._join(stream, text, whole, (base + index, stamp), out, times, origins)
        self.seen = base + len(lines)
        return _unwrapped(out, times, len(lines), damaged, origins, enveloped=enveloped)

    def flush(self, *, numbered: bool = False) -> Unwrapped:
        """The parts still held as lines of their own (the stream ended before their last part)."""
        held = [(part, self._first[s]) for s, part in self._parts.items() if part]
        self._parts.clear()
        self._first.clear()
        self._dropping.clear()
        out = [part for part, _ in held]
        times = [b"" if log_lead(part, 0) else stamp for part, (_, stamp) in held]
        origins = [number for _, (number, _) in held] if numbered else None
        return _unwrapped(out, times, 0, [], origins, enveloped=True)

    def _join(
        self,
        stream: str,
        text: bytes,
        whole: bool,
        first: tuple[int, bytes],
        out: list[bytes],
        times: list[bytes],
        origins: list[int] | None,
    ) -> None:
        """Adds a part to its stream's line; a whole line goes out, one that grew too long goes out cut. `first`:
        the number of the file's line of this part, and the runtime's time of it."""
        if stream not in _STREAMS:
            stream = _OTHER_STREAM
        if stream in self._dropping:
            if whole:
                self._dropping.discard(stream)
            return
        if not whole and not text:
            return  # an empty part (json-file leaves `log` out when it is empty) adds nothing to join
        held = self._parts.pop(stream, None)
        first = self._first.pop(stream, first)
        line = held + text if held else text
        if len(line) >= self._limit:
            line = line[: self._limit]
            if not whole:
                self._dropping.add(stream)
            whole = True
        if not whole:
            self._parts[stream] = line
            self._first[stream] = first
            return
        number, stamp = first
        # An escaped newline inside a line: the lines it makes, each from the same line of the file.
        pieces = line.split(b"\n") if b"\n" in line else [line]
        out.extend(pieces)
        times.extend(b"" if log_lead(piece, 0) else stamp for piece in pieces)
        if origins is not None:
            origins.extend([number] * len(pieces))

    def state(self) -> dict[str, Any]:
        """The parts held and the streams dropping a line too long, JSON-able, saved with the stream's position:
        a line split by a restart is joined as if nothing happened. Empty when there is none."""
        if not self._parts and not self._dropping:
            return {}
        return {
            "parts": {s: p.decode("utf-8", "surrogateescape") for s, p in self._parts.items()},
            "times": {s: t.decode("ascii", "replace") for s, (_, t) in self._first.items()},
            "dropping": sorted(self._dropping),
        }

    def restore(self, data: Any) -> None:
        """Continues from a saved state; raises ValueError (and changes nothing) when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"containers: expected a mapping, got {type(data).__name__}")
        parts, times, dropping = data.get("parts", {}), data.get("times", {}), data.get("dropping", [])
        names = (*_STREAMS, _OTHER_STREAM)
        if not isinstance(parts, dict) or not all(
            s in names and isinstance(p, str) for s, p in parts.items()
        ):
            raise ValueError("containers.parts: expected stdout, stderr or '' mapped to a line's start")
        try:
            restored = {s: p.encode("utf-8", "surrogateescape") for s, p in parts.items()}
        except UnicodeEncodeError as err:
            raise ValueError(f"containers.parts: not a saved line: {err}") from None
        if any(len(p) >= self._limit for p in restored.values()):
            raise ValueError(f"containers.parts: a line's start longer than {self._limit - 1} bytes")
        if not isinstance(times, dict) or not all(
            s in names and isinstance(t, str) and len(t) <= 64 and t.isascii() for s, t in times.items()
        ):
            raise ValueError("containers.times: expected stdout, stderr or '' mapped to a time")
        if not isinstance(dropping, list) or not all(s in names for s in dropping):
            raise ValueError("containers.dropping: expected a list of stdout, stderr or ''")
        self._parts = {s: p for s, p in restored.items() if p}
        self._first = {s: (self.seen, times.get(s, "").encode()) for s in self._parts}
        self._dropping = set(dropping)


def _unwrapped(
    out: list[bytes],
    times: list[bytes],
    lines: int,
    damaged: list[tuple[int, str]],
    origins: list[int] | None,
    *,
    enveloped: bool,
) -> Unwrapped:
    stamps: dict[int, bytes] = {}
    if any(times):
        at = 0
        for text, stamp in zip(out, times, strict=True):
            if stamp:
                stamps[at] = stamp
            at += len(text) + 1
    block = b"\n".join(out) + b"\n" if out else b""
    return Unwrapped(block, lines, damaged, origins, enveloped, stamps)
