"""Cutting a byte stream into lines, with a bound on how much of one line is ever held."""

from __future__ import annotations


class LineSplitter:
    """Cuts bytes into lines without their newline; holds back an unterminated tail until its newline arrives.

    A line longer than `max_line_bytes` is cut to `max_line_bytes + 1` bytes (so the analyser can tell it was
    too long) and the rest of it is dropped up to its newline, never buffered.
    """

    __slots__ = ("_limit", "discarding", "partial")

    def __init__(self, max_line_bytes: int, *, discarding: bool = False) -> None:
        self._limit = max_line_bytes + 1
        self.partial = b""
        """The unterminated tail, shorter than the cut length."""
        self.discarding = discarding
        """True while dropping the rest of an overlong line."""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete lines that `data` finishes."""
        if self.discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data = data[newline + 1 :]
            self.discarding = False
        if self.partial:
            data = self.partial + data
        lines = data.split(b"\n")
        tail = lines.pop()
        limit = self._limit
        if len(data) > limit:
            lines = [line if len(line) <= limit else line[:limit] for line in lines]
        if len(tail) >= limit:
            lines.append(tail[:limit])
            self.partial = b""
            self.discarding = True
        else:
            self.partial = tail
        return lines

    def flush(self) -> list[bytes]:
        """The unterminated tail as a last line (the stream ended): zero or one line."""
        tail, self.partial = self.partial, b""
        self.discarding = False
        return [tail] if tail else []
