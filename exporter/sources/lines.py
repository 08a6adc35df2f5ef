"""Cutting a byte stream into lines, with a bound on how much of one line is ever held."""

from __future__ import annotations

from typing import Final

READ_BYTES: Final = 1 << 18
"""How much of a file `report` and the daemon read at once: the most a block handed to the analyser holds besides
the partial line before it. Smaller reads cost a follower more per byte (at 64 KiB, four times the look, the
checks that the file was not cut, the hand-over and the metrics' lock per MiB)."""


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


class BlockSplitter:
    """Cuts a byte stream into blocks of whole lines (each block ends with a newline), for readers that
    analyse a block at once instead of line by line. The same bound as LineSplitter: an unterminated line that
    grows past `max_line_bytes` is emitted cut to `max_line_bytes + 1` bytes and the rest of it is dropped up
    to its newline. A long line that arrives whole inside one read stays in its block (the analyser skips it)."""

    __slots__ = ("_limit", "discarding", "partial")

    def __init__(self, max_line_bytes: int, *, discarding: bool = False) -> None:
        self._limit = max_line_bytes + 1
        self.partial = b""
        """The unterminated tail, shorter than the cut length."""
        self.discarding = discarding
        """True while dropping the rest of an overlong line."""

    def feed(self, data: bytes) -> bytes:
        """The complete lines that `data` finishes, as one block (empty when none)."""
        if self.discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return b""
            data = data[newline + 1 :]
            self.discarding = False
        last = data.rfind(b"\n")
        if last < 0:
            self.partial += data
            if len(self.partial) < self._limit:
                return b""
            cut, self.partial, self.discarding = self.partial[: self._limit], b"", True
            return cut + b"\n"
        if self.partial:  # one copy: a slice first would copy the block twice
            block = b"".join((self.partial, memoryview(data)[: last + 1]))
        else:
            block = data if last == len(data) - 1 else data[: last + 1]
        tail = data[last + 1 :]
        self.partial = b""
        if len(tail) >= self._limit:
            block += tail[: self._limit] + b"\n"
            self.discarding = True
        else:
            self.partial = tail
        return block

    def flush(self) -> bytes:
        """The unterminated tail as a last block (the stream ended)."""
        tail, self.partial = self.partial, b""
        self.discarding = False
        return tail + b"\n" if tail else b""
